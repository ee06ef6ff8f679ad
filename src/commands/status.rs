//! `cdpctl status`: what exists and what is waiting, per area of the pipeline.

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::db::{Db, PgResultExt};
use crate::schema::{self, State};
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {}

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

pub async fn run(app: &App, _args: Args) -> Result<()> {
    let db = app.connect("status").await?;
    let items = collect(&db).await?;
    let mut doc = Map::new();
    for it in &items {
        let area = doc
            .entry(it.area.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        area.as_object_mut()
            .unwrap()
            .insert(it.item.clone(), it.value.clone());
    }
    app.out.emit(&Value::Object(doc), || {
        let mut t = crate::output::table(["area", "item", "value"]);
        let mut last = "";
        for it in &items {
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
    })
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
    items.extend(core(db).await?);
    items.extend(crate::stitch::status_items(db).await?);
    items.extend(crate::attrs::status_items(db).await?);
    items.extend(crate::groups::status_items(db).await?);
    items.extend(crate::audiences::status_items(db).await?);
    items.extend(crate::segments::status_items(db).await?);
    items.extend(crate::history::status_items(db).await?);
    items.extend(crate::production::status_items(db).await?);
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
        let est: f32 = db
            .client
            .query_one(
                "SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)",
                &[&qualified],
            )
            .await?
            .get(0);
        if est > 1_000_000.0 {
            return Ok(Value::String(format!(
                "~{}",
                crate::output::num(est as i64)
            )));
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
    let rows = db
        .client
        .query(
            "SELECT application_name, count(*)::bigint,
                    to_char(min(backend_start) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
               FROM pg_stat_activity
              WHERE application_name LIKE 'cdpctl %' AND pid <> pg_backend_pid()
                AND datname = current_database()
              GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .pg_context(|| "listing running jobs".into())?;
    if rows.is_empty() {
        return Ok(vec![Item::new("jobs", "running cdpctl jobs", "none")]);
    }
    Ok(rows
        .iter()
        .map(|r| {
            Item::new(
                "jobs",
                r.get::<_, String>(0),
                format!(
                    "{} session(s) since {}",
                    r.get::<_, i64>(1),
                    r.get::<_, String>(2)
                ),
            )
        })
        .collect())
}
