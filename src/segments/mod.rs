//! Segment flushing: drains the durable queue `segment_changes` of
//! one-at-a-time add/remove requests into their destinations in coalesced,
//! set-based batches (`cdpctl flush-segment`).
//!
//! One batch is one transaction: claim (`FOR UPDATE SKIP LOCKED`), coalesce
//! per (segment, contact) in arrival order ([`coalesce`]), apply, delete the
//! claimed rows, record statistics, commit. For the audience tables the apply
//! is in that transaction, so a change is applied exactly once; for a REST
//! destination the rows are deleted only after the destination accepted the
//! keys (at-least-once delivery of an idempotent final state).

pub mod coalesce;
pub mod demo;
pub mod engine;
pub mod resolve;
pub mod split;
pub mod tenants;

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::commands::status::Item;
use crate::config::Config;
use crate::db::{Db, PgResultExt};

pub use engine::{flush, FlushOptions, Flusher};
pub use resolve::{Resolver, StaticResolver};

/// The `segments` section of the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SegmentsConfig {
    /// Queued requests claimed per batch (one transaction).
    #[serde(default = "d_batch_size")]
    pub batch_size: i64,
    /// Seconds between rounds of `--watch` when `--interval` is not given.
    #[serde(default = "d_interval")]
    pub interval_seconds: u64,
    /// REST destinations by queue segment name; every other segment goes to
    /// the contact-id audience tables (segment = campaign id).
    #[serde(default)]
    pub destinations: BTreeMap<String, split::RestConfig>,
    /// The Split API of server-fed segments (`cdpctl serve`): base URL,
    /// limits, retries. Environment and token come with each tenant.
    #[serde(default = "d_split")]
    pub split: split::RestConfig,
}

fn d_batch_size() -> i64 {
    50_000
}
fn d_interval() -> u64 {
    10
}
fn d_split() -> split::RestConfig {
    serde_json::from_value(json!({"comment": "cdpctl serve"})).expect("split defaults")
}

impl Default for SegmentsConfig {
    fn default() -> Self {
        Self {
            batch_size: d_batch_size(),
            interval_seconds: d_interval(),
            destinations: BTreeMap::new(),
            split: d_split(),
        }
    }
}

impl SegmentsConfig {
    /// Parses `config.segments`; errors name the key (`segments.…`).
    pub fn from_config(cfg: &Config) -> Result<Self> {
        let mut raw = cfg.segments.clone();
        if let Some(serde_json::Value::Object(split)) = raw.get_mut("split") {
            for key in ["environment", "segment", "api_token", "api_token_env"] {
                if split.contains_key(key) {
                    anyhow::bail!(
                        "config: key \"segments.split.{key}\": not allowed here; server-fed segments take the environment, segment and API token from each request"
                    );
                }
            }
            split
                .entry("comment")
                .or_insert_with(|| json!("cdpctl serve"));
        }
        let value = serde_json::Value::Object(raw);
        let parsed: SegmentsConfig = serde_path_to_error::deserialize(&value).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." || path.is_empty() {
                "segments".to_string()
            } else {
                format!("segments.{path}")
            };
            let msg = format!(
                "config: key \"{key}\": {}; see examples/cdpctl.json",
                crate::config::key_error_text(&path, e.inner())
            );
            anyhow!(crate::config::scrub_secrets(&msg, &value))
        })?;
        if parsed.batch_size < 1 {
            anyhow::bail!(
                "config: key \"segments.batch_size\": must be at least 1, got {}",
                parsed.batch_size
            );
        }
        for (name, d) in &parsed.destinations {
            d.validate(&format!("segments.destinations.{name}"))?;
        }
        parsed.split.validate_api("segments.split")?;
        Ok(parsed)
    }
}

/// What one flush did to one segment.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SegmentStats {
    pub segment: String,
    /// The tenant of a server-fed segment (`cdpctl serve`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<i64>,
    /// Its Split environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// `audience` (campaign_contact_id_master), `rest`, or `none` (neither
    /// a campaign id nor a configured REST destination).
    pub destination: String,
    /// Queued requests read and settled (applied, or kept aside as unresolved).
    pub read: u64,
    /// Requests that coalesced into another request of the same contact.
    pub coalesced: u64,
    /// Contacts (or program runs) added after coalescing.
    pub added: u64,
    /// Contacts removed, or program runs withdrawn, after coalescing.
    pub removed: u64,
    /// Contact references without a contact id, kept aside.
    pub unresolved: u64,
    /// Requests left queued because the segment failed.
    pub failed: u64,
    /// REST calls made and retried.
    pub calls: u64,
    pub retries: u64,
}

impl SegmentStats {
    fn merge(&mut self, o: &SegmentStats) {
        self.read += o.read;
        self.coalesced += o.coalesced;
        self.added += o.added;
        self.removed += o.removed;
        self.unresolved += o.unresolved;
        self.failed += o.failed;
        self.calls += o.calls;
        self.retries += o.retries;
    }
}

/// The report of a flush (one run, or every round of `--watch`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlushReport {
    pub dry_run: bool,
    /// Batches that claimed at least one request.
    pub batches: u64,
    pub read: u64,
    pub elapsed_ms: u64,
    pub changes_per_second: u64,
    pub segments: BTreeMap<String, SegmentStats>,
    /// Segments that failed, with the reason; their requests stay queued.
    pub failures: BTreeMap<String, String>,
    /// A few of the references kept aside (segment, key, reason).
    pub unresolved_examples: Vec<(String, String, String)>,
    /// Requests still queued after the run (all segments).
    pub remaining: i64,
    /// Milliseconds spent per phase (claim, order check, resolve, apply,
    /// deliver, delete + statistics, commit).
    pub phase_ms: BTreeMap<&'static str, u64>,
}

impl FlushReport {
    pub fn merge(&mut self, o: &FlushReport) {
        self.batches += o.batches;
        self.read += o.read;
        self.elapsed_ms += o.elapsed_ms;
        for (k, s) in &o.segments {
            self.segments
                .entry(k.clone())
                .or_insert_with(|| SegmentStats {
                    segment: s.segment.clone(),
                    destination: s.destination.clone(),
                    tenant: s.tenant,
                    environment: s.environment.clone(),
                    ..Default::default()
                })
                .merge(s);
        }
        for (k, v) in &o.failures {
            self.failures.insert(k.clone(), v.clone());
        }
        for (k, v) in &o.phase_ms {
            *self.phase_ms.entry(k).or_default() += v;
        }
        for u in &o.unresolved_examples {
            if self.unresolved_examples.len() < 10 {
                self.unresolved_examples.push(u.clone());
            }
        }
        self.remaining = o.remaining;
        self.changes_per_second = (self.read * 1000).checked_div(self.elapsed_ms).unwrap_or(0);
    }

    pub fn totals(&self) -> SegmentStats {
        let mut t = SegmentStats {
            segment: "total".into(),
            ..Default::default()
        };
        for s in self.segments.values() {
            t.merge(s);
        }
        t
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_else(|_| json!({}));
        v["segments"] = json!(self.segments.values().collect::<Vec<_>>());
        v["unresolved_examples"] = json!(self
            .unresolved_examples
            .iter()
            .map(|(s, k, r)| json!({"segment": s, "key": k, "reason": r}))
            .collect::<Vec<_>>());
        v
    }

    /// The per-segment table for people.
    pub fn render(&self) -> String {
        let mut t = crate::output::table([
            "segment",
            "destination",
            "read",
            "coalesced",
            "added",
            "removed",
            "unresolved",
            "failed",
        ]);
        let n = |v: u64| crate::output::num(v);
        let mut rows: Vec<&SegmentStats> = self.segments.values().collect();
        let total = self.totals();
        if rows.len() > 1 {
            rows.push(&total);
        }
        for s in rows {
            t.add_row(vec![
                match &s.environment {
                    Some(env) => format!("{} (env {env})", s.segment),
                    None => s.segment.clone(),
                },
                s.destination.clone(),
                n(s.read),
                n(s.coalesced),
                n(s.added),
                n(s.removed),
                n(s.unresolved),
                n(s.failed),
            ]);
        }
        let mut out = if self.segments.is_empty() {
            "the segment queue is empty: nothing to flush".to_string()
        } else {
            t.to_string()
        };
        out.push_str(&format!(
            "\n{}{} request(s) in {} batch(es), {:.2}s ({} changes/s); {} still queued",
            if self.dry_run {
                "dry run, nothing changed: "
            } else {
                ""
            },
            n(self.read),
            self.batches,
            self.elapsed_ms as f64 / 1000.0,
            n(self.changes_per_second),
            crate::output::num(self.remaining)
        ));
        for (s, k, r) in &self.unresolved_examples {
            out.push_str(&format!("\nkept aside: segment {s:?} key {k:?}: {r}"));
        }
        for e in self.failures.values() {
            out.push_str(&format!("\nfailed: {e}"));
        }
        out
    }
}

/// Lines for `cdpctl status`: queue depth, age of the oldest request,
/// references kept aside, last flush.
pub async fn status_items(db: &Db) -> Result<Vec<Item>> {
    if !db.relation_exists("audience", "segment_changes").await? {
        return Ok(Vec::new());
    }
    let a = &db.schemas.audience;
    let mut items = vec![Item::new(
        "segments",
        "queued segment changes",
        crate::commands::status::count(db, "audience", "segment_changes", None).await?,
    )];
    let oldest = db
        .client
        .query_opt(
            &format!(
                "SELECT extract(epoch FROM clock_timestamp() - enqueued_at)::bigint
                   FROM {a}.segment_changes ORDER BY id LIMIT 1"
            ),
            &[],
        )
        .await
        .pg_context(|| "reading the oldest queued segment change".into())?;
    items.push(Item::new(
        "segments",
        "oldest queued change",
        match oldest {
            Some(r) => json!(format!("{} ago", human_age(r.get::<_, i64>(0)))),
            None => json!("none"),
        },
    ));
    if db
        .relation_exists("audience", "segment_changes_unresolved")
        .await?
    {
        items.push(Item::new(
            "segments",
            "unresolved references kept aside",
            crate::commands::status::count(db, "audience", "segment_changes_unresolved", None)
                .await?,
        ));
        let last = db
            .client
            .query_opt(
                &format!(
                    "SELECT to_char(flushed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
                       FROM {a}.segment_flushes ORDER BY id DESC LIMIT 1"
                ),
                &[],
            )
            .await
            .pg_context(|| "reading the last segment flush".into())?;
        items.push(Item::new(
            "segments",
            "last flush",
            last.map(|r| r.get::<_, String>(0))
                .unwrap_or_else(|| "never".into()),
        ));
    }
    if db.relation_exists("audience", "split_tenants").await? {
        items.extend(server_fed_items(db).await?);
    }
    Ok(items)
}

/// The server-fed queue (`cdpctl serve`) per tenant and segment; the
/// tenants' tokens are never read here.
async fn server_fed_items(db: &Db) -> Result<Vec<Item>> {
    let a = &db.schemas.audience;
    let mut items = vec![Item::new(
        "segments",
        "serve tenants (Split environments)",
        crate::commands::status::count(db, "audience", "split_tenants", None).await?,
    )];
    let rows = db
        .client
        .query(
            &format!(
                "SELECT t.environment_id, q.segment, count(*),
                        extract(epoch FROM clock_timestamp() - min(q.enqueued_at))::bigint
                   FROM {a}.segment_changes q JOIN {a}.split_tenants t ON t.id = q.tenant_id
                  GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 21"
            ),
            &[],
        )
        .await
        .pg_context(|| "reading the server-fed queue per tenant and segment".into())?;
    if rows.is_empty() {
        items.push(Item::new("segments", "server-fed queue", "empty"));
    }
    for (i, r) in rows.iter().enumerate() {
        if i == 20 {
            items.push(Item::new(
                "segments",
                "server-fed queue",
                "more segments queued; see audience_data.segment_changes",
            ));
            break;
        }
        items.push(Item::new(
            "segments",
            format!(
                "server-fed: env {} segment {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1)
            ),
            format!(
                "{} queued, oldest {} ago",
                crate::output::num(r.get::<_, i64>(2)),
                human_age(r.get::<_, i64>(3))
            ),
        ));
    }
    Ok(items)
}

/// `3725` → `1h 2m 5s`.
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h` or plain seconds.
pub fn parse_interval(s: &str) -> std::result::Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid interval {s:?}: expected e.g. 10s, 500ms, 2m"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" | "sec" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => {
            return Err(format!(
                "invalid interval {s:?}: unit must be ms, s, m or h"
            ))
        }
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("invalid interval {s:?}: must be positive"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("10s").unwrap().as_secs(), 10);
        assert_eq!(parse_interval("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_interval("2m").unwrap().as_secs(), 120);
        assert_eq!(parse_interval("7").unwrap().as_secs(), 7);
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("10 parsecs").is_err());
    }

    #[test]
    fn config_errors_name_the_key() {
        let cfg: Config = serde_json::from_value(json!({
            "segments": {"destinations": {"beta": {"environment": "prod", "bogus": 1}}}
        }))
        .unwrap();
        let e = SegmentsConfig::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("segments.destinations.beta"), "{e}");
        assert!(e.contains("bogus"), "{e}");
        let cfg: Config = serde_json::from_value(json!({"segments": {"batch_size": 0}})).unwrap();
        let e = SegmentsConfig::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("segments.batch_size"), "{e}");
    }

    #[test]
    fn a_mistyped_token_is_not_echoed() {
        let cfg: Config = serde_json::from_value(json!({
            "segments": {"destinations": {"beta": {"environment": "prod", "api_token": 987654}}}
        }))
        .unwrap();
        let e = SegmentsConfig::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("segments.destinations.beta.api_token"), "{e}");
        assert!(
            e.contains("expected a string") && !e.contains("987654"),
            "{e}"
        );
    }

    #[test]
    fn ages() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(3725), "1h 2m 5s");
    }
}
