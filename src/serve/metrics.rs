//! The counters behind `GET /metrics` (Prometheus text format 0.0.4):
//! requests by path and status, request latency, group commits, the queue,
//! flush results and delivery retries. Lock-free atomics; nothing secret is
//! ever recorded here.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::segments::FlushReport;

/// Paths with their own counters; everything else is `other`.
pub const PATHS: [&str; 5] = ["/audiences", "/ping", "/uptime", "/metrics", "other"];
/// Statuses the server answers with.
pub const STATUSES: [u16; 8] = [200, 400, 401, 404, 405, 413, 500, 503];
/// Latency buckets of `POST /audiences`, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

pub struct Metrics {
    started: Instant,
    requests: [[AtomicU64; STATUSES.len()]; PATHS.len()],
    latency: Histogram,
    keys_queued: AtomicU64,
    commits: AtomicU64,
    commit_requests: AtomicU64,
    commit_rows: AtomicU64,
    pub database_up: AtomicBool,
    queue_depth: AtomicI64,
    oldest_seconds: AtomicI64,
    flush_rounds: AtomicU64,
    flush_rounds_failed: AtomicU64,
    flushed_requests: AtomicU64,
    flushed_added: AtomicU64,
    flushed_removed: AtomicU64,
    delivery_calls: AtomicU64,
    delivery_retries: AtomicU64,
    segment_failures: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            requests: Default::default(),
            latency: Histogram::default(),
            keys_queued: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_requests: AtomicU64::new(0),
            commit_rows: AtomicU64::new(0),
            database_up: AtomicBool::new(true),
            queue_depth: AtomicI64::new(-1),
            oldest_seconds: AtomicI64::new(-1),
            flush_rounds: AtomicU64::new(0),
            flush_rounds_failed: AtomicU64::new(0),
            flushed_requests: AtomicU64::new(0),
            flushed_added: AtomicU64::new(0),
            flushed_removed: AtomicU64::new(0),
            delivery_calls: AtomicU64::new(0),
            delivery_retries: AtomicU64::new(0),
            segment_failures: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counts one answered request.
    pub fn request(&self, path: &str, status: u16, elapsed: Duration) {
        let p = PATHS
            .iter()
            .position(|x| *x == path)
            .unwrap_or(PATHS.len() - 1);
        if let Some(s) = STATUSES.iter().position(|x| *x == status) {
            self.requests[p][s].fetch_add(1, Relaxed);
        }
        if p == 0 {
            let secs = elapsed.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    self.latency.buckets[i].fetch_add(1, Relaxed);
                }
            }
            self.latency.count.fetch_add(1, Relaxed);
            self.latency
                .sum_micros
                .fetch_add(elapsed.as_micros() as u64, Relaxed);
        }
    }

    /// Answers by status (all paths), for the closing summary.
    pub fn by_status(&self) -> Vec<(u16, u64)> {
        STATUSES
            .iter()
            .enumerate()
            .map(|(s, code)| {
                let n = self.requests.iter().map(|p| p[s].load(Relaxed)).sum();
                (*code, n)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// One group commit of `requests` requests holding `rows` keys.
    pub fn commit(&self, requests: usize, rows: usize) {
        self.commits.fetch_add(1, Relaxed);
        self.commit_requests.fetch_add(requests as u64, Relaxed);
        self.commit_rows.fetch_add(rows as u64, Relaxed);
        self.keys_queued.fetch_add(rows as u64, Relaxed);
    }

    pub fn commits(&self) -> (u64, u64, u64) {
        (
            self.commits.load(Relaxed),
            self.commit_requests.load(Relaxed),
            self.commit_rows.load(Relaxed),
        )
    }

    /// The server-fed queue as last measured.
    pub fn queue(&self, depth: i64, oldest_seconds: i64) {
        self.queue_depth.store(depth, Relaxed);
        self.oldest_seconds.store(oldest_seconds, Relaxed);
    }

    /// One round of the in-process flusher (`None`: it failed as a whole).
    pub fn flush_round(&self, report: Option<&FlushReport>) {
        self.flush_rounds.fetch_add(1, Relaxed);
        let Some(r) = report else {
            self.flush_rounds_failed.fetch_add(1, Relaxed);
            return;
        };
        let t = r.totals();
        self.flushed_requests.fetch_add(r.read, Relaxed);
        self.flushed_added.fetch_add(t.added, Relaxed);
        self.flushed_removed.fetch_add(t.removed, Relaxed);
        self.delivery_calls.fetch_add(t.calls, Relaxed);
        self.delivery_retries.fetch_add(t.retries, Relaxed);
        self.segment_failures
            .fetch_add(r.failures.len() as u64, Relaxed);
    }

    pub fn flushed(&self) -> u64 {
        self.flushed_requests.load(Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            name.to_string()
        };
        let _ = family(
            "cdpctl_serve_requests_total",
            "counter",
            "HTTP requests answered, by path and status.",
        );
        for (p, path) in PATHS.iter().enumerate() {
            for (s, status) in STATUSES.iter().enumerate() {
                let n = self.requests[p][s].load(Relaxed);
                if n > 0 || (p == 0 && *status == 200) {
                    let _ = writeln!(
                        o,
                        "cdpctl_serve_requests_total{{path=\"{path}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        let _ = writeln!(o, "# HELP cdpctl_serve_request_duration_seconds Time from request to answer of POST /audiences (the answer comes after COMMIT).\n# TYPE cdpctl_serve_request_duration_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "cdpctl_serve_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.latency.buckets[i].load(Relaxed)
            );
        }
        let count = self.latency.count.load(Relaxed);
        let _ = writeln!(
            o,
            "cdpctl_serve_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\ncdpctl_serve_request_duration_seconds_sum {}\ncdpctl_serve_request_duration_seconds_count {count}",
            self.latency.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let scalar = |o: &mut String, name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        let u = |a: &AtomicU64| a.load(Relaxed).to_string();
        scalar(
            &mut o,
            "cdpctl_serve_keys_queued_total",
            "counter",
            "Keys (MPIDs) durably queued.",
            u(&self.keys_queued),
        );
        scalar(
            &mut o,
            "cdpctl_serve_commits_total",
            "counter",
            "Group commits (one transaction each).",
            u(&self.commits),
        );
        scalar(
            &mut o,
            "cdpctl_serve_committed_requests_total",
            "counter",
            "Requests acknowledged by those commits.",
            u(&self.commit_requests),
        );
        scalar(
            &mut o,
            "cdpctl_serve_database_up",
            "gauge",
            "1 while the last write or flush reached PostgreSQL.",
            (self.database_up.load(Relaxed) as u8).to_string(),
        );
        scalar(&mut o, "cdpctl_serve_queue_depth", "gauge", "Server-fed requests still queued (measured after each flush round; -1 before the first).", self.queue_depth.load(Relaxed).to_string());
        scalar(&mut o, "cdpctl_serve_oldest_queued_seconds", "gauge", "Age of the oldest server-fed request still queued (0 when empty, -1 before the first round).", self.oldest_seconds.load(Relaxed).to_string());
        scalar(
            &mut o,
            "cdpctl_serve_flush_rounds_total",
            "counter",
            "Rounds of the in-process flusher.",
            u(&self.flush_rounds),
        );
        scalar(
            &mut o,
            "cdpctl_serve_flush_rounds_failed_total",
            "counter",
            "Rounds that failed as a whole (database unreachable, ...).",
            u(&self.flush_rounds_failed),
        );
        scalar(
            &mut o,
            "cdpctl_serve_flushed_requests_total",
            "counter",
            "Queued requests settled by deliveries Split accepted.",
            u(&self.flushed_requests),
        );
        scalar(
            &mut o,
            "cdpctl_serve_flushed_keys_added_total",
            "counter",
            "Keys uploaded after coalescing.",
            u(&self.flushed_added),
        );
        scalar(
            &mut o,
            "cdpctl_serve_flushed_keys_removed_total",
            "counter",
            "Keys removed after coalescing.",
            u(&self.flushed_removed),
        );
        scalar(
            &mut o,
            "cdpctl_serve_delivery_calls_total",
            "counter",
            "Split API calls that succeeded.",
            u(&self.delivery_calls),
        );
        scalar(
            &mut o,
            "cdpctl_serve_delivery_retries_total",
            "counter",
            "Split API calls retried (429, 5xx, timeouts).",
            u(&self.delivery_retries),
        );
        scalar(
            &mut o,
            "cdpctl_serve_segment_failures_total",
            "counter",
            "Segment deliveries that gave up for a round (their keys stay queued).",
            u(&self.segment_failures),
        );
        scalar(
            &mut o,
            "cdpctl_serve_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            self.uptime().as_secs().to_string(),
        );
        o
    }
}

/// `Nd:Nh:Nm:Ns`, as the batch server's `/uptime`.
pub fn uptime_text(d: Duration) -> String {
    let s = d.as_secs();
    format!(
        "{}d:{}h:{}m:{}s",
        s / 86_400,
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_is_formatted_like_the_batch_server() {
        assert_eq!(uptime_text(Duration::from_secs(0)), "0d:0h:0m:0s");
        assert_eq!(
            uptime_text(Duration::from_secs(2 * 86_400 + 3 * 3600 + 4 * 60 + 5)),
            "2d:3h:4m:5s"
        );
    }

    #[test]
    fn metrics_render_as_prometheus_text() {
        let m = Metrics::default();
        m.request("/audiences", 200, Duration::from_millis(3));
        m.request("/audiences", 401, Duration::from_millis(1));
        m.request("/nope", 404, Duration::from_millis(1));
        m.commit(2, 3);
        let t = m.render();
        assert!(
            t.contains("cdpctl_serve_requests_total{path=\"/audiences\",status=\"200\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("cdpctl_serve_requests_total{path=\"other\",status=\"404\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("cdpctl_serve_request_duration_seconds_bucket{le=\"0.005\"} 2"),
            "{t}"
        );
        assert!(t.contains("cdpctl_serve_keys_queued_total 3"), "{t}");
        // every sample line is `name{labels} value` with a declared family
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(t.contains(&format!("# TYPE {family} ")), "{line}");
            assert!(
                line.rsplit(' ').next().unwrap().parse::<f64>().is_ok(),
                "{line}"
            );
        }
    }
}
