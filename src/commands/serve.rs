//! `cdpctl serve`: the HTTP ingest that replaces the mparticle-audiences-batch
//! server (`POST /audiences`, `/ping`, `/uptime`, `/metrics`), with a durable
//! queue and in-process flushing to Split; runs until SIGTERM/Ctrl-C.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::segments::tenants::SecretKey;
use crate::segments::{self, SegmentsConfig};
use crate::serve::{self, ServeConfig, ServeOptions, Server};
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on, e.g. 0.0.0.0:5010 (port 0: any free port); default serve.listen or 127.0.0.1:5010
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Pause between flushes to Split, e.g. 10s, 500ms; default segments.interval_seconds or 10s
    #[arg(long, value_name = "DURATION", value_parser = segments::parse_interval)]
    pub flush_interval: Option<Duration>,
    /// Only queue; leave delivery to `cdpctl flush-segment` (e.g. several serve replicas, one flusher)
    #[arg(long, conflicts_with = "flush_interval")]
    pub no_flush: bool,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let cfg = ServeConfig::from_config(&app.config)?;
    let segments = SegmentsConfig::from_config(&app.config)?;
    let secret = serve::secret_from_env(&cfg)?;
    let key = SecretKey::from_env()?;
    let flush_interval = (!args.no_flush).then(|| {
        args.flush_interval
            .unwrap_or(Duration::from_secs(segments.interval_seconds))
    });
    let listen = args.listen.clone().unwrap_or_else(|| cfg.listen.clone());
    let opts = ServeOptions {
        serve: cfg,
        segments: segments.clone(),
        listen,
        flush_interval,
        secret,
        key,
        out: app.out,
    };
    let server = Server::bind(&app.config, &app.params, opts).await?;
    // the first line on stderr names the bound address (port 0 included)
    eprintln!(
        "serve: listening on {} (POST /audiences, GET /ping /uptime /metrics); database {}; {}",
        server.url(),
        app.params.describe(),
        match flush_interval {
            Some(i) => format!(
                "flushing to {} every {}",
                segments.split.base_url,
                humantime(i)
            ),
            None => "no flushing here (--no-flush): run `cdpctl flush-segment`".to_string(),
        }
    );
    let summary = server.run(crate::signals::interrupted()).await?;
    app.out.emit(&json!(summary), || summary.render())
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
