//! What cron and monitoring read: a snapshot of the backlogs with stable
//! snake_case keys (numbers as numbers, RFC 3339 times, ages in seconds),
//! and the checks of `status --check` against the config's `monitoring`
//! thresholds. Every read waits at most `monitoring.busy_lock_timeout_ms`
//! for a lock a running job holds; such an item is reported "busy".

use std::future::Future;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::config::MonitoringConfig;
use crate::db::{is_lock_timeout, Db, PgResultExt};
use crate::runs::{self, rfc3339};
use crate::schema::{self, State};

/// The value of an item whose table a running job has locked.
pub const BUSY: &str = "busy";

/// Runs `f` in a transaction of its own whose `lock_timeout` is
/// `monitoring.busy_lock_timeout_ms`; `None` when it hit that timeout.
pub async fn guarded<'a, T, F, Fut>(db: &'a Db, f: F) -> Result<Option<T>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T>> + 'a,
{
    db.client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL lock_timeout = {}",
            db.config.monitoring.busy_lock_timeout_ms.max(1)
        ))
        .await
        .pg_context(|| "starting a status read".into())?;
    let res = f().await;
    let end = if res.is_ok() { "COMMIT" } else { "ROLLBACK" };
    db.client
        .batch_execute(end)
        .await
        .pg_context(|| "ending a status read".into())?;
    match res {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_lock_timeout(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The status document being built, and the items found busy.
struct Doc<'a> {
    db: &'a Db,
    doc: Map<String, Value>,
    busy: Vec<String>,
}

impl<'a> Doc<'a> {
    fn put(&mut self, area: &str, key: &str, value: Value) {
        self.doc
            .entry(area.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("areas are objects")
            .insert(key.to_string(), value);
    }

    /// One item: `null` when `table` (of schema `var`) does not exist,
    /// "busy" when locked, else what `f` returns.
    async fn item<F, Fut>(&mut self, area: &str, key: &str, table: (&str, &str), f: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value>> + 'a,
    {
        let value = if !self.db.relation_exists(table.0, table.1).await? {
            Value::Null
        } else {
            match guarded(self.db, f).await? {
                Some(v) => v,
                None => {
                    self.busy.push(format!("{area}.{key}"));
                    json!(BUSY)
                }
            }
        };
        self.put(area, key, value);
        Ok(())
    }
}

/// One value of a query (`null` for no row or NULL), schema names filled in.
async fn scalar(db: &Db, sql: &str, what: &str) -> Result<Value> {
    let row = db
        .client
        .query_opt(&db.schemas.substitute(sql), &[])
        .await
        .pg_context(|| format!("reading {what}"))?;
    Ok(match row {
        None => Value::Null,
        Some(r) => {
            if let Ok(n) = r.try_get::<_, Option<i64>>(0) {
                json!(n)
            } else {
                json!(r.try_get::<_, Option<bool>>(0)?)
            }
        }
    })
}

/// The planner's row count of a table when it is over a million rows (an
/// exact count would make status slow there), `None` below.
pub async fn big_table_estimate(db: &Db, qualified: &str) -> Result<Option<i64>> {
    let est: f32 = db
        .client
        .query_one(
            "SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)",
            &[&qualified],
        )
        .await?
        .get(0);
    Ok((est > 1_000_000.0).then_some(est as i64))
}

/// Rows of a table: exact up to a million, the planner's estimate above.
async fn rows(db: &Db, var: &str, table: &str) -> Result<Value> {
    let qualified = format!(
        "{}.{}",
        crate::db::quote_ident(db.schemas.raw_name(var)),
        crate::db::quote_ident(table)
    );
    if let Some(n) = big_table_estimate(db, &qualified).await? {
        return Ok(json!(n));
    }
    scalar(db, &format!("SELECT count(*) FROM {qualified}"), &qualified).await
}

/// The status document (see docs/monitoring.md for every key).
pub async fn snapshot(db: &Db, now: DateTime<Utc>) -> Result<Value> {
    let mut d = Doc {
        db,
        doc: Map::new(),
        busy: Vec::new(),
    };
    d.doc.insert("database".into(), json!(db.params.dbname()));
    d.doc.insert("generated_at".into(), json!(rfc3339(now)));
    let plan = schema::plan(db).await?;
    let pending: Vec<String> = plan
        .iter()
        .filter(|(_, s)| *s == State::Pending)
        .map(|(m, _)| m.label())
        .collect();
    d.put("migrations", "applied", json!(plan.len() - pending.len()));
    d.put("migrations", "pending", json!(pending));
    d.put(
        "migrations",
        "unknown",
        json!(schema::unknown_applied(db).await?),
    );
    if pending.len() < plan.len() {
        schema::require_schemas(db).await?;
        pipeline(&mut d).await?;
    }
    d.put("jobs", "running", running(db).await?);
    let runs = if db.relation_exists("cdpctl", "job_runs").await? {
        match guarded(db, || runs::last_runs(db)).await? {
            Some(jobs) => Value::Object(
                jobs.iter()
                    .map(|j| {
                        (
                            j.job.clone(),
                            json!({
                                "last_run": j.last.to_json(now),
                                "last_failure": j.last_failure.as_ref().map(|f| f.to_json(now)),
                            }),
                        )
                    })
                    .collect(),
            ),
            None => {
                d.busy.push("jobs.runs".into());
                json!(BUSY)
            }
        }
    } else {
        Value::Null
    };
    d.put("jobs", "runs", runs);
    let busy = std::mem::take(&mut d.busy);
    d.doc.insert("busy".into(), json!(busy));
    Ok(Value::Object(d.doc))
}

async fn pipeline(d: &mut Doc<'_>) -> Result<()> {
    let db = d.db;
    d.item(
        "events",
        "customer_events",
        ("ce", "customer_events"),
        || rows(db, "ce", "customer_events"),
    )
    .await?;
    d.item(
        "stitching",
        "backlog",
        ("ps", "customer_events_to_process"),
        || async { Ok(json!(crate::stitch::backlog(db).await?)) },
    )
    .await?;
    d.item(
        "stitching",
        "from_scratch_pending",
        ("ps", "stitching_state"),
        || {
            scalar(
                db,
                "SELECT full_run_pending FROM {{ps}}.stitching_state",
                "the stitching state",
            )
        },
    )
    .await?;
    d.item("stitching", "entities", ("ps", "entities"), || {
        rows(db, "ps", "entities")
    })
    .await?;
    d.item("attributes", "definitions", ("attr", "attributes"), || {
        rows(db, "attr", "attributes")
    })
    .await?;
    d.item(
        "attributes",
        "entities",
        ("attr", "customer_entities"),
        || rows(db, "attr", "customer_entities"),
    )
    .await?;
    d.item(
        "attributes",
        "backlog",
        ("attr", "customer_entities"),
        || {
            scalar(
                db,
                "SELECT count(*) FROM {{attr}}.customer_entities WHERE calculated IS NULL",
                "the attribute backlog",
            )
        },
    )
    .await?;
    let refresh_hours = crate::attrs::Settings::from_config(&db.config)
        .unwrap_or_default()
        .refresh_hours;
    let due = format!(
        "SELECT count(*) FROM {{{{attr}}}}.customer_entities
          WHERE calculated < (now() AT TIME ZONE 'UTC') - make_interval(secs => {refresh_hours}::float8 * 3600)"
    );
    d.item(
        "attributes",
        "due_for_refresh",
        ("attr", "customer_entities"),
        || async move { scalar(db, &due, "entities due for refresh").await },
    )
    .await?;
    d.put("attributes", "refresh_hours", json!(refresh_hours));
    d.item("attributes", "stale_context_keys", ("attr", "context"), || {
        scalar(
            db,
            "SELECT count(*) FROM {{attr}}.context
              WHERE modified IS NULL OR modified < (now() AT TIME ZONE 'UTC') - interval '24 hours'",
            "stale context keys",
        )
    })
    .await?;
    d.item("audiences", "backlog", ("cdpctl", "entity_changes"), || {
        scalar(
            db,
            "SELECT count(*) FROM {{cdpctl}}.entity_changes",
            "the calc-audiences backlog",
        )
    })
    .await?;
    d.item("audiences", "groups", ("audience", "groups"), || {
        scalar(
            db,
            "SELECT count(*) FROM {{audience}}.groups WHERE enabled",
            "groups",
        )
    })
    .await?;
    d.item(
        "segments",
        "queued",
        ("audience", "segment_changes"),
        || {
            scalar(
                db,
                "SELECT count(*) FROM {{audience}}.segment_changes",
                "the segment queue",
            )
        },
    )
    .await?;
    d.item(
        "segments",
        "oldest_age_seconds",
        ("audience", "segment_changes"),
        || {
            scalar(
                db,
                "SELECT extract(epoch FROM clock_timestamp() - min(enqueued_at))::bigint
               FROM {{audience}}.segment_changes",
                "the oldest queued segment change",
            )
        },
    )
    .await?;
    Ok(())
}

/// The cdpctl sessions connected right now (this one left out):
/// `[{"application_name", "sessions", "since"}]`.
pub async fn running(db: &Db) -> Result<Value> {
    let rows = db
        .client
        .query(
            "SELECT application_name, count(*)::bigint, min(backend_start)
               FROM pg_stat_activity
              WHERE application_name LIKE 'cdpctl %' AND pid <> pg_backend_pid()
                AND datname = current_database()
              GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .pg_context(|| "listing running jobs".into())?;
    Ok(Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "application_name": r.get::<_, String>(0),
                    "sessions": r.get::<_, i64>(1),
                    "since": r.get::<_, Option<DateTime<Utc>>>(2).map(rfc3339),
                })
            })
            .collect(),
    ))
}

/// One check of `status --check`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The item checked: `stitching.backlog`, `migrations.pending`, `runs.stitch`, ...
    pub name: String,
    pub ok: bool,
    pub value: Value,
    pub threshold: Option<i64>,
    pub message: String,
}

/// The checks of a snapshot against the thresholds. An item that is busy
/// or absent (its table does not exist) passes: a running job holding a
/// lock is normal, and the next run sees the value.
pub fn checks(doc: &Value, cfg: &MonitoringConfig) -> Vec<Check> {
    let mut out = Vec::new();
    for (area, what) in [
        ("pending", "pending"),
        ("unknown", "applied but unknown to this binary"),
    ] {
        let list = doc["migrations"][area]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
        out.push(Check {
            name: format!("migrations.{area}"),
            ok: names.is_empty(),
            value: json!(names.len()),
            threshold: Some(0),
            message: if names.is_empty() {
                format!("no migration {what}")
            } else if area == "pending" {
                format!("{} migration(s) pending ({}); run `cdpctl init`", names.len(), names.join(", "))
            } else {
                format!(
                    "{} migration(s) applied that this cdpctl does not know ({}); run the cdpctl version that applied them",
                    names.len(),
                    names.join(", ")
                )
            },
        });
    }
    for (area, key, max, setting) in [
        (
            "stitching",
            "backlog",
            cfg.max_stitch_backlog,
            "max_stitch_backlog",
        ),
        (
            "attributes",
            "backlog",
            cfg.max_attribute_backlog,
            "max_attribute_backlog",
        ),
        (
            "audiences",
            "backlog",
            cfg.max_audience_backlog,
            "max_audience_backlog",
        ),
        (
            "segments",
            "oldest_age_seconds",
            cfg.max_queue_age_seconds,
            "max_queue_age_seconds",
        ),
        (
            "attributes",
            "stale_context_keys",
            cfg.max_stale_context_keys,
            "max_stale_context_keys",
        ),
    ] {
        let Some(max) = max else { continue };
        let value = doc[area][key].clone();
        let name = format!("{area}.{key}");
        let (ok, message) = match value.as_i64() {
            Some(n) if n > max => (false, format!("{n} is over monitoring.{setting} = {max}")),
            Some(n) => (true, format!("{n} (monitoring.{setting} = {max})")),
            None if value == json!(BUSY) => (true, "busy: a running job holds the lock".into()),
            None => (true, "nothing to check".into()),
        };
        out.push(Check {
            name,
            ok,
            value,
            threshold: Some(max),
            message,
        });
    }
    if let Some(jobs) = doc["jobs"]["runs"].as_object() {
        for (job, r) in jobs {
            let last = &r["last_run"];
            let failed = last["outcome"] == json!("failed");
            out.push(Check {
                name: format!("runs.{job}"),
                ok: !failed,
                value: last["outcome"].clone(),
                threshold: None,
                message: if failed {
                    format!(
                        "last run #{} failed at {}: {}",
                        last["id"],
                        last["finished_at"].as_str().unwrap_or("?"),
                        last["error"].as_str().unwrap_or("?")
                    )
                } else {
                    format!(
                        "last run #{} {}",
                        last["id"],
                        last["outcome"].as_str().unwrap_or("?")
                    )
                },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(stitch: Value, pending: Value, outcome: &str) -> Value {
        json!({
            "migrations": {"applied": 3, "pending": pending, "unknown": []},
            "stitching": {"backlog": stitch},
            "segments": {"oldest_age_seconds": null},
            "jobs": {"runs": {"stitch": {"last_run": {"id": 4, "outcome": outcome,
                "finished_at": "2026-01-01T00:00:00.000Z", "error": "boom"}}}},
        })
    }

    fn failing(d: &Value) -> Vec<String> {
        checks(d, &MonitoringConfig::default())
            .into_iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn thresholds_pending_migrations_and_failed_runs() {
        assert!(failing(&doc(json!(5), json!([]), "succeeded")).is_empty());
        assert_eq!(
            failing(&doc(json!(100_001), json!(["130_job_runs"]), "failed")),
            ["migrations.pending", "stitching.backlog", "runs.stitch"]
        );
        // busy and absent items pass
        assert!(failing(&doc(json!(BUSY), json!([]), "running")).is_empty());
        assert!(failing(&doc(Value::Null, json!([]), "succeeded")).is_empty());
        let cfg = MonitoringConfig {
            max_stitch_backlog: None,
            ..Default::default()
        };
        assert!(checks(&doc(json!(1_000_000), json!([]), "succeeded"), &cfg)
            .iter()
            .all(|c| c.ok));
    }
}
