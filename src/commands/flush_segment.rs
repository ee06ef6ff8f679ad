//! `cdpctl flush-segment`: drain the segment change queue into the audience
//! tables or REST destinations in coalesced batches; `--watch` keeps going.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::segments::{self, FlushOptions, FlushReport, Flusher, SegmentsConfig};
use crate::signals::StopFlag;
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Flush only this segment
    #[arg(long, value_name = "SEGMENT")]
    pub segment: Option<String>,
    /// Requests claimed per batch (one transaction); default segments.batch_size or 50000
    #[arg(long, value_name = "N")]
    pub batch_size: Option<i64>,
    /// Stop after this many batches (the rest stays queued)
    #[arg(long, value_name = "N")]
    pub max_batches: Option<u64>,
    /// Keep flushing every --interval until SIGTERM/Ctrl-C (the current batch finishes first)
    #[arg(long)]
    pub watch: bool,
    /// Pause between rounds of --watch, e.g. 10s, 500ms, 2m; default segments.interval_seconds or 10s
    #[arg(long, value_name = "DURATION", value_parser = segments::parse_interval, requires = "watch")]
    pub interval: Option<Duration>,
    /// Coalesce and report what would be flushed; change and send nothing
    #[arg(long, conflicts_with = "watch")]
    pub dry_run: bool,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let cfg = SegmentsConfig::from_config(&app.config)?;
    let batch_size = args.batch_size.unwrap_or(cfg.batch_size);
    if batch_size < 1 {
        bail!("--batch-size must be at least 1, got {batch_size}");
    }
    let db = app.connect("flush-segment").await?;
    db.require_initialized().await?;
    // No exclusive job lock: several flushers may run; SKIP LOCKED and the
    // per-key ordering check keep them apart.
    let opts = FlushOptions {
        segment: args.segment.clone(),
        batch_size,
        max_batches: args.max_batches,
        dry_run: args.dry_run,
        server_fed_only: false,
    };
    let resolver = segments::resolve::DynamoResolver::new(&app.config);
    let mut flusher = Flusher::new(cfg.clone(), &resolver);
    let report = if args.watch {
        let interval = args
            .interval
            .unwrap_or(Duration::from_secs(cfg.interval_seconds));
        let stop = StopFlag::install();
        let mut total = FlushReport::default();
        let mut db = db;
        let mut backoff = crate::signals::Backoff::default();
        while !stop.is_set() {
            let round = match flusher.run(&db, &opts, Some(&stop)).await {
                Ok(r) => r,
                Err(e) if crate::db::is_connection_lost(&db.client, &e) => {
                    // rows the lost session had claimed were never deleted:
                    // they are still queued; reconnect and go on
                    if let Some(d) =
                        super::reconnect(app, "flush-segment", &stop, &mut backoff, &e).await
                    {
                        db = d;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            backoff.reset();
            if round.read > 0 || !round.failures.is_empty() {
                app.out.info(format!(
                    "flushed {} request(s) in {} batch(es) over {} segment(s); {} still queued",
                    round.read,
                    round.batches,
                    round.segments.len(),
                    round.remaining
                ));
            }
            total.merge(&round);
            stop.sleep(interval).await;
        }
        total
    } else {
        db.cancellable(flusher.run(&db, &opts, None)).await?
    };
    app.out.emit(&report.to_json(), || report.render())?;
    if !report.failures.is_empty() {
        // every message names its segment
        let names: Vec<&str> = report.failures.values().map(String::as_str).collect();
        bail!(
            "{} segment(s) failed, their requests stay queued: {}",
            names.len(),
            names.join("; ")
        );
    }
    Ok(())
}
