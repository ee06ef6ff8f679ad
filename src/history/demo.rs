//! The demo step: a sample campaigns table with capture installed, a few
//! realistic changes (a creation that shifts every priority, quick repeated
//! saves, a delete), then a point-in-time look-up and a diff.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{capture, diff, query, CaptureTarget, TableRef};
use crate::db::{Db, PgResultExt};

/// What the demo step did, for the report.
pub struct DemoReport {
    pub json: Value,
    pub lines: Vec<String>,
}

async fn now(db: &Db) -> Result<DateTime<Utc>> {
    Ok(db
        .client
        .query_one("SELECT clock_timestamp()", &[])
        .await?
        .get(0))
}

/// The demo's sample campaigns table, in the history schema.
pub const DEMO_TABLE: &str = "demo_campaigns";

pub async fn run(db: &mut Db) -> Result<DemoReport> {
    let table = TableRef {
        schema: db.schemas.raw_name("history").to_string(),
        name: DEMO_TABLE.into(),
    };
    let t = table.qualified();
    db.client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {t};
             CREATE TABLE {t} (
                 id          bigserial PRIMARY KEY,
                 customer_id bigint NOT NULL,
                 name        text NOT NULL,
                 status      text NOT NULL DEFAULT 'active',
                 priority    int NOT NULL,
                 content     jsonb NOT NULL DEFAULT '{{}}',
                 updated_at  timestamptz NOT NULL DEFAULT clock_timestamp());
             CREATE INDEX ON {t} (customer_id);"
        ))
        .await
        .pg_context(|| format!("creating the demo table {}", table.display()))?;
    let target = CaptureTarget {
        table: table.clone(),
        customer_column: "customer_id".into(),
        id_column: "id".into(),
    };
    capture::install_on(&db.client, &db.schemas, &target).await?;
    // A customer id not used by earlier demo runs.
    let customer: i64 = db
        .client
        .query_one(
            &db.schemas.substitute(
                "SELECT coalesce(max(customer_id), 900000) + 1 FROM {{history}}.campaign_snapshots WHERE customer_id > 900000",
            ),
            &[],
        )
        .await?
        .get(0);
    let c = customer.to_string();
    db.client
        .batch_execute(&format!(
            "INSERT INTO {t} (customer_id, name, priority, content) VALUES
               ({c}, 'Welcome offer', 1, '{{\"headline\": \"10% off your first order\"}}'),
               ({c}, 'Cart reminder', 2, '{{\"headline\": \"You left something behind\"}}'),
               ({c}, 'Black Friday teaser', 3, '{{\"headline\": \"Coming soon\"}}'),
               ({c}, 'App rating prompt', 4, '{{\"headline\": \"Enjoying the app?\"}}')"
        ))
        .await?;
    let t_created = now(db).await?;
    // A new campaign goes on top: every other priority shifts by one, in one
    // statement, in the same transaction as the insert.
    db.client
        .batch_execute(&format!(
            "BEGIN;
             UPDATE {t} SET priority = priority + 1, updated_at = clock_timestamp() WHERE customer_id = {c};
             INSERT INTO {t} (customer_id, name, priority, content)
                  VALUES ({c}, 'Winter sale', 1, '{{\"headline\": \"Up to 50% off\"}}');
             COMMIT;"
        ))
        .await?;
    // The customer presses Save three times in quick succession.
    for (field, value) in [
        ("name", "'Cart reminder (EN)'"),
        ("content", "'{\"headline\": \"Your cart misses you\"}'"),
        ("status", "'paused'"),
    ] {
        db.client
            .batch_execute(&format!(
                "UPDATE {t} SET {field} = {value}, updated_at = clock_timestamp()
                  WHERE customer_id = {c} AND name LIKE 'Cart reminder%'"
            ))
            .await?;
    }
    let t_before_delete = now(db).await?;
    db.client
        .batch_execute(&format!(
            "DELETE FROM {t} WHERE customer_id = {c} AND name = 'App rating prompt'"
        ))
        .await?;
    let t_end = now(db).await?;

    let captured: i64 = db
        .client
        .query_one(
            &db.schemas.substitute(
                "SELECT count(*) FROM {{history}}.campaign_snapshots WHERE customer_id = $1",
            ),
            &[&customer],
        )
        .await?
        .get(0);
    let at = query::state_at(
        &db.client,
        &db.schemas,
        customer,
        t_before_delete,
        None,
        false,
    )
    .await?;
    let visible = |rows: Vec<query::SnapshotRow>| -> BTreeMap<i64, Value> {
        rows.into_iter()
            .filter(|r| !r.is_deleted())
            .map(|r| (r.campaign_id, r.snapshot))
            .collect()
    };
    let before =
        visible(query::state_at(&db.client, &db.schemas, customer, t_created, None, false).await?);
    let after =
        visible(query::state_at(&db.client, &db.schemas, customer, t_end, None, false).await?);
    let changes = diff::diff_states(&before, &after, None);

    // The commands printed are to be copied: exact times, not cut to the second.
    let style = super::time::Style::new(chrono_tz::Tz::UTC, true);
    let mut lines = vec![format!(
        "history: {captured} changes of customer {customer} captured in {} (1 insert of 4, a priority shift of 4 + 1 new, 3 quick saves, 1 delete)",
        table.display()
    )];
    lines.push(format!(
        "history: $ cdpctl history-at --customer {customer} --at '{}'",
        style.rfc3339(t_before_delete)
    ));
    for r in &at {
        lines.push(format!(
            "history:   #{} {:<22} priority {} {}",
            r.campaign_id,
            style.cell(r.snapshot.get("name")),
            style.cell(r.snapshot.get("priority")),
            style.cell(r.snapshot.get("status")),
        ));
    }
    lines.push(format!(
        "history: $ cdpctl history-at --customer {customer} --diff-from '{}' --at '{}'",
        style.rfc3339(t_created),
        style.rfc3339(t_end)
    ));
    for d in &changes {
        let fields: Vec<String> = match d.change {
            diff::CampaignChangeKind::Updated => d
                .fields
                .iter()
                .filter(|f| f.field != "updated_at")
                .map(|f| {
                    format!(
                        "{}: {} -> {}",
                        f.field,
                        style.cell(f.before.as_ref()),
                        style.cell(f.after.as_ref())
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        let name = after
            .get(&d.campaign_id)
            .or_else(|| before.get(&d.campaign_id))
            .map(|s| style.cell(s.get("name")))
            .unwrap_or_default();
        let line = format!(
            "history:   #{} {} {:?} {}",
            d.campaign_id,
            serde_json::to_value(d.change)?.as_str().unwrap_or(""),
            name,
            fields.join(", ")
        );
        lines.push(line.trim_end().to_string());
    }
    let count = |k: diff::CampaignChangeKind| changes.iter().filter(|d| d.change == k).count();
    let json = json!({
        "table": table.display(),
        "customer_id": customer,
        "captured": captured,
        "at": style.rfc3339(t_before_delete),
        "campaigns_at": at.len(),
        "diff_from": style.rfc3339(t_created),
        "diff_to": style.rfc3339(t_end),
        "changed": {
            "created": count(diff::CampaignChangeKind::Created),
            "updated": count(diff::CampaignChangeKind::Updated),
            "deleted": count(diff::CampaignChangeKind::Deleted),
        },
    });
    Ok(DemoReport { json, lines })
}
