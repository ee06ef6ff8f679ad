//! `cdpctl status`: what exists and what is waiting, per area of the pipeline.

use anyhow::Result;
use serde_json::{json, Value};

use crate::db::{Db, PgResultExt};
use crate::error::CheckFailed;
use crate::schema::{self, State};
use crate::{monitoring, runs, App};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check the `monitoring` thresholds of the config, pending or unknown
    /// migrations and the last run of every job; exit 1 naming the failing items
    #[arg(long)]
    pub check: bool,
}

/// One line of the status report.
#[derive(Debug, Clone)]
pub struct Item {
    pub area: &'static str,
    pub item: String,
    pub value: Value,
}

impl Item {
    pub fn new(area: &'static str, item: impl Into<String>, value: impl Into<Value>) -> Self {
        Self {
            area,
            item: item.into(),
            value: value.into(),
        }
    }
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let db = app.connect("status").await?;
    let now = chrono::Utc::now();
    let checks = if args.check || app.out.json() {
        Some(monitoring::snapshot(&db, now).await?)
    } else {
        None
    };
    let failing: Vec<String> = checks
        .as_ref()
        .filter(|_| args.check)
        .map(|s| {
            monitoring::checks(s, &app.config.monitoring)
                .into_iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.message))
                .collect()
        })
        .unwrap_or_default();
    if app.out.json() {
        let snap = checks.as_ref().expect("taken in JSON mode");
        let mut doc = snap.clone();
        if args.check {
            let list = monitoring::checks(snap, &app.config.monitoring);
            doc["healthy"] = json!(list.iter().all(|c| c.ok));
            doc["failing"] = json!(list
                .iter()
                .filter(|c| !c.ok)
                .map(|c| &c.name)
                .collect::<Vec<_>>());
            doc["checks"] = serde_json::to_value(&list)?;
        }
        // every line of the table, keyed by area and label: for reading, not
        // for alerting (labels are prose and may change)
        let mut details = serde_json::Map::new();
        for it in collect(&db).await? {
            details
                .entry(it.area.to_string())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("areas are objects")
                .insert(it.item, it.value);
        }
        doc["details"] = Value::Object(details);
        app.out.emit(&doc, String::new)?;
    } else {
        let mut items = collect(&db).await?;
        items.extend(run_items(&db, now).await?);
        if let Some(snap) = &checks {
            for c in monitoring::checks(snap, &app.config.monitoring) {
                let verdict = if c.ok { "ok" } else { "FAILING" };
                items.push(Item::new(
                    "check",
                    c.name,
                    format!("{verdict}: {}", c.message),
                ));
            }
        }
        app.out.emit(&Value::Null, || table(&items))?;
    }
    if failing.is_empty() {
        Ok(())
    } else {
        Err(CheckFailed { failing }.into())
    }
}

fn table(items: &[Item]) -> String {
    let mut t = crate::output::table(["area", "item", "value"]);
    let mut last = "";
    for it in items {
        let area = if it.area == last { "" } else { it.area };
        last = it.area;
        let v = match &it.value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n
                .as_i64()
                .map(crate::output::num)
                .unwrap_or_else(|| n.to_string()),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        t.add_row(vec![area.to_string(), it.item.clone(), v]);
    }
    t.to_string()
}

/// The last run and last failure of every job, for the table.
async fn run_items(db: &Db, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<Item>> {
    if !db.relation_exists("cdpctl", "job_runs").await? {
        return Ok(Vec::new());
    }
    let Some(jobs) = monitoring::guarded(db, || runs::last_runs(db)).await? else {
        return Ok(vec![Item::new("runs", "run history", monitoring::BUSY)]);
    };
    let describe = |r: &runs::Run| {
        let when = r.finished_at.unwrap_or(r.started_at);
        let age = (now - when).num_seconds();
        match (&r.finished_at, &r.error) {
            (None, _) => format!(
                "#{} running since {} ({age}s)",
                r.id,
                runs::rfc3339(r.started_at)
            ),
            (Some(_), Some(e)) => {
                format!("#{} failed {} ({age}s ago): {e}", r.id, runs::rfc3339(when))
            }
            (Some(f), None) => format!(
                "#{} {} {} ({age}s ago, took {}ms)",
                r.id,
                r.outcome,
                runs::rfc3339(when),
                (*f - r.started_at).num_milliseconds()
            ),
        }
    };
    let mut items = Vec::new();
    for j in &jobs {
        items.push(Item::new("runs", j.job.clone(), describe(&j.last)));
        if let Some(f) = j.last_failure.as_ref().filter(|f| f.id != j.last.id) {
            items.push(Item::new(
                "runs",
                format!("{} last failure", j.job),
                describe(f),
            ));
        }
    }
    if items.is_empty() {
        items.push(Item::new("runs", "run history", "no job has run yet"));
    }
    Ok(items)
}

/// Every area's status lines. Areas whose tables do not exist yet are skipped.
pub async fn collect(db: &Db) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let plan = schema::plan(db).await?;
    let pending = plan.iter().filter(|(_, s)| *s == State::Pending).count();
    items.push(Item::new("schema", "database", db.params.dbname()));
    items.push(Item::new(
        "schema",
        "migrations applied",
        (plan.len() - pending) as i64,
    ));
    items.push(Item::new("schema", "migrations pending", pending as i64));
    if pending == plan.len() {
        items.push(Item::new("schema", "hint", "run `cdpctl init`"));
        items.extend(jobs(db).await?);
        return Ok(items);
    }
    schema::require_schemas(db).await?;
    // each area waits briefly for a lock a running job holds, then says "busy"
    macro_rules! area {
        ($area:literal, $f:path) => {
            items.extend(match monitoring::guarded(db, || $f(db)).await? {
                Some(v) => v,
                None => vec![Item::new(
                    $area,
                    "busy",
                    "locked by a running job; try again",
                )],
            })
        };
    }
    area!("events", core);
    area!("stitching", crate::stitch::status_items);
    area!("attributes", crate::attrs::status_items);
    area!("groups", crate::groups::status_items);
    area!("audience migration", crate::audiences::status_items);
    area!("segments", crate::segments::status_items);
    area!("history", crate::history::status_items);
    area!("production", crate::production::status_items);
    items.extend(jobs(db).await?);
    // one block per area, in pipeline order (unknown areas after, as they come)
    let mut order: Vec<&'static str> = vec![
        "schema",
        "events",
        "stitching",
        "attributes",
        "groups",
        "audiences",
        "audience migration",
        "segments",
        "history",
        "production",
    ];
    for it in &items {
        if !order.contains(&it.area) {
            order.push(it.area);
        }
    }
    order.retain(|a| *a != "jobs");
    order.push("jobs");
    items.sort_by_key(|it| order.iter().position(|a| *a == it.area));
    Ok(items)
}

/// Row count: exact for small tables, the planner's estimate (marked `~`)
/// above a million rows so status stays instant on big databases.
pub async fn count(db: &Db, schema_var: &str, table: &str, filter: Option<&str>) -> Result<Value> {
    if !db.relation_exists(schema_var, table).await? {
        return Ok(Value::Null);
    }
    let qualified = format!(
        "{}.{}",
        crate::db::quote_ident(db.schemas.raw_name(schema_var)),
        crate::db::quote_ident(table)
    );
    if filter.is_none() {
        if let Some(est) = monitoring::big_table_estimate(db, &qualified).await? {
            return Ok(Value::String(format!("~{}", crate::output::num(est))));
        }
    }
    let sql = format!(
        "SELECT count(*) FROM {qualified}{}",
        filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
    );
    let n: i64 = db
        .client
        .query_one(&sql, &[])
        .await
        .pg_context(|| format!("counting {qualified}"))?
        .get(0);
    Ok(json!(n))
}

async fn core(db: &Db) -> Result<Vec<Item>> {
    let mut v = vec![
        Item::new("events", "customer events", count(db, "ce", "customer_events", None).await?),
        Item::new("attributes", "definitions", count(db, "attr", "attributes", None).await?),
        Item::new("attributes", "customer entities", count(db, "attr", "customer_entities", None).await?),
        Item::new(
            "attributes",
            "entities waiting for calculation",
            count(db, "attr", "customer_entities", Some("calculated IS NULL")).await?,
        ),
        Item::new(
            "attributes",
            "stale context keys",
            count(
                db,
                "attr",
                "context",
                Some("modified IS NULL OR modified < (now() AT TIME ZONE 'UTC') - interval '24 hours'"),
            )
            .await?,
        ),
        Item::new(
            "audiences",
            "contact-reference rows (legacy)",
            count(db, "audience", "campaign_contact_reference_master", None).await?,
        ),
        Item::new(
            "audiences",
            "contact-id rows",
            count(db, "audience", "campaign_contact_id_master", None).await?,
        ),
        Item::new(
            "history",
            "campaign snapshots",
            count(db, "history", "campaign_snapshots", None).await?,
        ),
    ];
    v.retain(|i| !i.value.is_null());
    Ok(v)
}

async fn jobs(db: &Db) -> Result<Vec<Item>> {
    let running = monitoring::running(db).await?;
    let running = running.as_array().map(Vec::as_slice).unwrap_or_default();
    if running.is_empty() {
        return Ok(vec![Item::new("jobs", "running cdpctl jobs", "none")]);
    }
    Ok(running
        .iter()
        .map(|r| {
            Item::new(
                "jobs",
                r["application_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                format!(
                    "{} session(s) since {}",
                    r["sessions"],
                    r["since"].as_str().unwrap_or("?")
                ),
            )
        })
        .collect())
}
