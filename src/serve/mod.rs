//! `cdpctl serve`: a durable, drop-in replacement for the
//! mparticle-audiences-batch server. The lambda's `POST /audiences` requests
//! are written to the segment queue with group commit ([`writer`]) and
//! answered after COMMIT; an in-process flusher drains the server-fed rows
//! to Split with the flush engine of `cdpctl flush-segment`, per tenant.
//!
//! Tasks: the accept loop (one task per connection, hyper HTTP/1.1 with
//! keep-alive, rustls when configured), the writer, the flusher. Shutdown
//! (SIGTERM/Ctrl-C): stop accepting, answer the requests in flight, let the
//! writer commit what it holds, let the flusher finish its current batch.

pub mod demo;
pub mod handler;
pub mod metrics;
pub mod tls;
pub mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::db::{ConnectParams, Db, PgResultExt};
use crate::output::Output;
use crate::segments::tenants::SecretKey;
use crate::segments::{FlushOptions, Flusher, SegmentsConfig, StaticResolver};
use crate::signals::StopFlag;
use metrics::Metrics;
use writer::{Msg, Writer};

/// The `serve` section of the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on (`--listen` overrides it).
    #[serde(default = "d_listen")]
    pub listen: String,
    /// Environment variable holding the shared secret the lambda sends in
    /// `Authorization` (its `audiencesBatchAuthKey`).
    #[serde(default = "d_auth_env")]
    pub auth_token_env: String,
    /// PEM certificate chain; with `tls_key`, serve HTTPS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Largest accepted request body (413 above).
    #[serde(default = "d_max_body")]
    pub max_body_bytes: usize,
    /// Most keys (`mpids`) in one request.
    #[serde(default = "d_max_keys")]
    pub max_keys_per_request: usize,
    /// Most keys written by one group commit.
    #[serde(default = "d_max_rows")]
    pub max_rows_per_commit: usize,
    /// A write (or a reconnection) slower than this answers 503.
    #[serde(default = "d_write_timeout")]
    pub write_timeout_ms: u64,
    /// On shutdown, how long requests in flight and the current flush batch
    /// may take before the server stops anyway.
    #[serde(default = "d_grace")]
    pub shutdown_grace_seconds: u64,
}

fn d_listen() -> String {
    "127.0.0.1:5010".into()
}
fn d_auth_env() -> String {
    "CDPCTL_SERVE_AUTH_TOKEN".into()
}
fn d_max_body() -> usize {
    256 * 1024
}
fn d_max_keys() -> usize {
    10_000
}
fn d_max_rows() -> usize {
    20_000
}
fn d_write_timeout() -> u64 {
    10_000
}
fn d_grace() -> u64 {
    30
}

impl Default for ServeConfig {
    fn default() -> Self {
        serde_json::from_value(json!({})).expect("serve defaults")
    }
}

impl ServeConfig {
    /// Parses `config.serve`; errors name the key (`serve.…`).
    pub fn from_config(cfg: &Config) -> Result<Self> {
        let value = serde_json::Value::Object(cfg.serve.clone());
        let parsed: ServeConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." || path.is_empty() {
                "serve".to_string()
            } else {
                format!("serve.{path}")
            };
            anyhow!(
                "config: key \"{key}\": {}; see examples/cdpctl.json",
                e.into_inner()
            )
        })?;
        if parsed.tls_cert.is_some() != parsed.tls_key.is_some() {
            bail!("config: keys \"serve.tls_cert\" and \"serve.tls_key\" go together: give both PEM files for HTTPS, or neither for plain HTTP");
        }
        for (key, v) in [
            ("max_body_bytes", parsed.max_body_bytes),
            ("max_keys_per_request", parsed.max_keys_per_request),
            ("max_rows_per_commit", parsed.max_rows_per_commit),
        ] {
            if v == 0 {
                bail!("config: key \"serve.{key}\": must be at least 1");
            }
        }
        if parsed.auth_token_env.is_empty() {
            bail!("config: key \"serve.auth_token_env\": must name an environment variable");
        }
        Ok(parsed)
    }
}

/// Everything `Server::bind` needs besides the database.
pub struct ServeOptions {
    pub serve: ServeConfig,
    pub segments: SegmentsConfig,
    /// `host:port` (port 0: any free port; see [`Server::local_addr`]).
    pub listen: String,
    /// Pause between flush rounds; `None` leaves delivery to
    /// `cdpctl flush-segment`.
    pub flush_interval: Option<Duration>,
    /// The shared secret of `Authorization`.
    pub secret: String,
    pub key: SecretKey,
    pub out: Output,
}

/// What the server did, printed when it stops.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub uptime_seconds: u64,
    /// Answers by HTTP status.
    pub responses: std::collections::BTreeMap<String, u64>,
    pub commits: u64,
    pub requests_committed: u64,
    pub keys_queued: u64,
    pub requests_per_commit: f64,
    pub flushed_requests: u64,
}

impl Summary {
    pub fn render(&self) -> String {
        let answers: Vec<String> = self
            .responses
            .iter()
            .map(|(k, v)| format!("{k}: {}", crate::output::num(*v as i64)))
            .collect();
        format!(
            "served {} ({}); {} key(s) queued in {} group commit(s) ({:.1} requests per commit); {} queued request(s) flushed to Split",
            metrics::uptime_text(Duration::from_secs(self.uptime_seconds)),
            if answers.is_empty() { "no requests".to_string() } else { answers.join(", ") },
            crate::output::num(self.keys_queued as i64),
            crate::output::num(self.commits as i64),
            self.requests_per_commit,
            crate::output::num(self.flushed_requests as i64),
        )
    }
}

/// A bound server, its writer already running.
pub struct Server {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<handler::State>,
    jobs: mpsc::Sender<Msg>,
    writer: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
    config: Config,
    params: ConnectParams,
    opts: ServeOptions,
}

impl Server {
    /// Checks the database, loads TLS, binds the address, starts the writer.
    pub async fn bind(
        config: &Config,
        params: &ConnectParams,
        opts: ServeOptions,
    ) -> Result<Server> {
        {
            let db = Db::connect(config, params, "serve").await?;
            db.require_initialized().await?;
        }
        let tls = match (&opts.serve.tls_cert, &opts.serve.tls_key) {
            (Some(c), Some(k)) => Some(tls::acceptor(c, k)?),
            _ => None,
        };
        let listener = TcpListener::bind(&opts.listen).await.with_context(|| {
            format!(
                "cannot listen on {}; is another server using that port? pick another with --listen or serve.listen",
                opts.listen
            )
        })?;
        let metrics = Arc::new(Metrics::default());
        let (jobs, rx) = mpsc::channel(16_384);
        let writer = Writer {
            config: config.clone(),
            params: params.clone(),
            key: opts.key.clone(),
            metrics: metrics.clone(),
            max_rows: opts.serve.max_rows_per_commit,
            timeout: Duration::from_millis(opts.serve.write_timeout_ms),
            out: opts.out,
        };
        let writer = tokio::spawn(writer.run(rx));
        let state = Arc::new(handler::State {
            secret_digest: {
                use sha2::{Digest, Sha256};
                Sha256::digest(opts.secret.as_bytes()).into()
            },
            max_body_bytes: opts.serve.max_body_bytes,
            max_keys_per_request: opts.serve.max_keys_per_request,
            jobs: jobs.clone(),
            metrics: metrics.clone(),
        });
        Ok(Server {
            listener,
            tls,
            state,
            jobs,
            writer,
            metrics,
            config: config.clone(),
            params: params.clone(),
            opts,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// `http://` or `https://` and the bound address.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls.is_some() { "https" } else { "http" },
            self.local_addr()
        )
    }

    /// Serves until `shutdown` resolves (with the reason, e.g. `SIGTERM`).
    pub async fn run(self, shutdown: impl Future<Output = &'static str>) -> Result<Summary> {
        let Server {
            listener,
            tls,
            state,
            jobs,
            writer,
            metrics,
            config,
            params,
            opts,
        } = self;
        let out = opts.out;
        let stop = StopFlag::default();
        // without flushing the loop still measures the queue for /metrics
        let (flush, interval) = match opts.flush_interval {
            Some(i) => (true, i),
            None => (false, Duration::from_secs(opts.segments.interval_seconds)),
        };
        let flusher = tokio::spawn(flush_loop(
            config.clone(),
            params.clone(),
            opts.segments.clone(),
            opts.key.clone(),
            (flush, interval),
            stop.clone(),
            metrics.clone(),
            out,
        ));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let reason = loop {
            tokio::select! {
                reason = &mut shutdown => break reason,
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((s, _)) => s,
                        Err(e) => {
                            // out of file descriptors and the like: wait, go on
                            out.info(format!("serve: accepting a connection failed: {e}"));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let watcher = graceful.watcher();
                    let st = state.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| handler::handle(req, st.clone()));
                        let mut builder = http1::Builder::new();
                        builder
                            .keep_alive(true)
                            .timer(TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(30));
                        match tls {
                            None => {
                                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                                let _ = watcher.watch(conn).await;
                            }
                            Some(acceptor) => {
                                let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
                                if let Ok(Ok(s)) = hs {
                                    let conn = builder.serve_connection(TokioIo::new(s), svc);
                                    let _ = watcher.watch(conn).await;
                                }
                            }
                        }
                    });
                }
            }
        };
        drop(listener);
        let grace = Duration::from_secs(opts.serve.shutdown_grace_seconds);
        out.info(format!(
            "serve: {reason} received: no new connections; answering the requests in flight (at most {}s)",
            grace.as_secs()
        ));
        drop(state);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            out.info("serve: connections still open after the grace period; closing them (their unanswered requests were not acknowledged)");
        }
        let _ = jobs.send(Msg::Stop).await;
        let _ = writer.await;
        stop.set();
        let mut flusher = flusher;
        if tokio::time::timeout(grace, &mut flusher).await.is_err() {
            flusher.abort();
            out.info("serve: the flush batch in progress did not finish within the grace period; it is rolled back and its keys stay queued");
        }
        let (commits, requests_committed, keys_queued) = metrics.commits();
        Ok(Summary {
            uptime_seconds: metrics.uptime().as_secs(),
            responses: metrics
                .by_status()
                .into_iter()
                .map(|(s, n)| (s.to_string(), n))
                .collect(),
            commits,
            requests_committed,
            keys_queued,
            requests_per_commit: if commits == 0 {
                0.0
            } else {
                (requests_committed as f64 / commits as f64 * 10.0).round() / 10.0
            },
            flushed_requests: metrics.flushed(),
        })
    }
}

/// The in-process flusher: a round of the flush engine over the server-fed
/// rows (when `flush`), a measurement of the queue, then a pause. A failed
/// round (database down, ...) is logged and retried; its keys stay queued.
#[allow(clippy::too_many_arguments)]
async fn flush_loop(
    config: Config,
    params: ConnectParams,
    segments: SegmentsConfig,
    key: SecretKey,
    (flush, interval): (bool, Duration),
    stop: StopFlag,
    metrics: Arc<Metrics>,
    out: Output,
) {
    let resolver = StaticResolver::default();
    let mut flusher = Flusher::new(segments.clone(), &resolver).with_secret_key(key);
    let opts = FlushOptions {
        batch_size: segments.batch_size,
        server_fed_only: true,
        ..Default::default()
    };
    let mut db: Option<Db> = None;
    while !stop.is_set() {
        if db.as_ref().is_none_or(|d| d.client.is_closed()) {
            db = match Db::connect(&config, &params, "serve flush").await {
                Ok(d) => Some(d),
                Err(e) => {
                    if flush {
                        out.info(format!(
                            "serve: flush round skipped: {e:#}; the keys stay queued"
                        ));
                        metrics.flush_round(None);
                    }
                    stop.sleep(interval).await;
                    continue;
                }
            };
        }
        let d = db.as_ref().expect("connected");
        let round = if flush {
            Some(flusher.run(d, &opts, Some(&stop)).await)
        } else {
            None
        };
        match round {
            None => {}
            Some(round) => match round {
                Ok(r) => {
                    metrics.flush_round(Some(&r));
                    if r.read > 0 || !r.failures.is_empty() {
                        let t = r.totals();
                        out.info(format!(
                        "serve: flushed {} queued change(s) in {} batch(es) over {} segment(s): +{} -{} keys in {} call(s), {} retries; {} still queued",
                        r.read,
                        r.batches,
                        r.segments.len(),
                        t.added,
                        t.removed,
                        t.calls,
                        t.retries,
                        r.remaining
                    ));
                    }
                    for e in r.failures.values() {
                        out.info(format!("serve: delivery failed, the keys stay queued: {e}"));
                    }
                }
                Err(e) => {
                    metrics.flush_round(None);
                    out.info(format!(
                        "serve: flush round failed: {e:#}; the keys stay queued"
                    ));
                }
            },
        }
        if let Some(d) = db.as_ref().filter(|d| !d.client.is_closed()) {
            if let Ok((depth, oldest)) = server_fed_queue(d).await {
                metrics.queue(depth, oldest);
            }
        }
        stop.sleep(interval).await;
    }
}

/// Server-fed requests still queued and the age of the oldest, in seconds.
pub async fn server_fed_queue(db: &Db) -> Result<(i64, i64)> {
    let a = &db.schemas.audience;
    let r = db
        .client
        .query_one(
            &format!(
                "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(enqueued_at))::bigint, 0)
                   FROM {a}.segment_changes WHERE tenant_id IS NOT NULL"
            ),
            &[],
        )
        .await
        .pg_context(|| format!("measuring the server-fed queue in {a}.segment_changes"))?;
    Ok((r.get(0), r.get(1)))
}

/// The shared secret from the environment variable `serve.auth_token_env`.
pub fn secret_from_env(cfg: &ServeConfig) -> Result<String> {
    match std::env::var(&cfg.auth_token_env) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => bail!(
            "{} is not set: cdpctl serve needs the shared secret the lambda sends in its Authorization header (its config.json audiencesBatchAuthKey); export {}=<secret>, or name another variable in serve.auth_token_env",
            cfg.auth_token_env,
            cfg.auth_token_env
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key() {
        let cfg: Config = serde_json::from_value(json!({"serve": {"listne": "x"}})).unwrap();
        let e = ServeConfig::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("listne"), "{e}");
        let cfg: Config = serde_json::from_value(json!({"serve": {"tls_cert": "c.pem"}})).unwrap();
        let e = ServeConfig::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("serve.tls_key"), "{e}");
        let d = ServeConfig::from_config(&Config::default()).unwrap();
        assert_eq!(d.listen, "127.0.0.1:5010");
        assert_eq!(d.auth_token_env, "CDPCTL_SERVE_AUTH_TOKEN");
    }
}
