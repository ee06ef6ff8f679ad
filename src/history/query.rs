//! Point-in-time look-ups over the snapshot table. `state_at` is one index
//! look-up per campaign: a skip scan over the (customer, campaign, time, id)
//! index finds the customer's campaigns, and a LATERAL probe takes each one's
//! latest snapshot at or before T.

use anyhow::Result;
use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::db::{PgResultExt, Schemas};

/// One snapshot row.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRow {
    pub id: i64,
    pub campaign_id: i64,
    pub event_time: DateTime<Utc>,
    pub event_type: String,
    pub snapshot: serde_json::Value,
}

impl SnapshotRow {
    pub fn is_deleted(&self) -> bool {
        self.event_type == "deleted"
    }
}

/// `$1` customer, `$2` time, `$3` include deleted; with `by_list`, `$4` the
/// campaign ids. Public so the benchmark can EXPLAIN it.
pub fn state_at_sql(schemas: &Schemas, by_list: bool) -> String {
    let ids = if by_list {
        "ids AS (SELECT DISTINCT c AS campaign_id FROM unnest($4::bigint[]) AS c)"
    } else {
        // Skip scan: the next campaign id after the previous one, each an
        // index probe, instead of reading every snapshot of the customer.
        "RECURSIVE ids AS (
            (SELECT s.campaign_id FROM {{history}}.campaign_snapshots s
              WHERE s.customer_id = $1 ORDER BY s.campaign_id LIMIT 1)
            UNION ALL
            SELECT (SELECT s.campaign_id FROM {{history}}.campaign_snapshots s
                     WHERE s.customer_id = $1 AND s.campaign_id > ids.campaign_id
                     ORDER BY s.campaign_id LIMIT 1)
              FROM ids WHERE ids.campaign_id IS NOT NULL)"
    };
    schemas.substitute(&format!(
        "WITH {ids}
         SELECT l.id, l.campaign_id, l.event_time, l.event_type, l.snapshot
           FROM ids
          CROSS JOIN LATERAL (
                SELECT s.id, s.campaign_id, s.event_time, s.event_type, s.snapshot
                  FROM {{{{history}}}}.campaign_snapshots s
                 WHERE s.customer_id = $1 AND s.campaign_id = ids.campaign_id
                   AND s.event_time <= $2
                 ORDER BY s.event_time DESC, s.id DESC
                 LIMIT 1) l
          WHERE ids.campaign_id IS NOT NULL AND ($3 OR l.event_type <> 'deleted')
          ORDER BY l.campaign_id"
    ))
}

fn rows_to_snapshots(rows: &[tokio_postgres::Row]) -> Vec<SnapshotRow> {
    rows.iter()
        .map(|r| SnapshotRow {
            id: r.get(0),
            campaign_id: r.get(1),
            event_time: r.get(2),
            event_type: r.get(3),
            snapshot: r.get(4),
        })
        .collect()
}

/// Every campaign of `customer` as it was at `at` (latest snapshot at or
/// before it), ordered by campaign id; deleted ones only with
/// `include_deleted`; only `campaigns` when given.
pub async fn state_at(
    client: &impl GenericClient,
    schemas: &Schemas,
    customer: i64,
    at: DateTime<Utc>,
    campaigns: Option<&[i64]>,
    include_deleted: bool,
) -> Result<Vec<SnapshotRow>> {
    let rows = match campaigns {
        Some(list) => {
            let list = list.to_vec();
            client
                .query(
                    &state_at_sql(schemas, true),
                    &[&customer, &at, &include_deleted, &list],
                )
                .await
        }
        None => {
            client
                .query(
                    &state_at_sql(schemas, false),
                    &[&customer, &at, &include_deleted],
                )
                .await
        }
    }
    .pg_context(|| format!("reading the campaigns of customer {customer} at {at}"))?;
    Ok(rows_to_snapshots(&rows))
}

/// Every snapshot of one campaign, oldest first, optionally up to `until`.
pub async fn timeline(
    client: &impl GenericClient,
    schemas: &Schemas,
    customer: i64,
    campaign: i64,
    until: Option<DateTime<Utc>>,
) -> Result<Vec<SnapshotRow>> {
    let rows = client
        .query(
            &schemas.substitute(
                "SELECT id, campaign_id, event_time, event_type, snapshot
                   FROM {{history}}.campaign_snapshots
                  WHERE customer_id = $1 AND campaign_id = $2
                    AND ($3::timestamptz IS NULL OR event_time <= $3)
                  ORDER BY event_time, id",
            ),
            &[&customer, &campaign, &until],
        )
        .await
        .pg_context(|| {
            format!("reading the history of campaign {campaign} of customer {customer}")
        })?;
    Ok(rows_to_snapshots(&rows))
}

/// True when the customer has any recorded history.
pub async fn customer_known(
    client: &impl GenericClient,
    schemas: &Schemas,
    customer: i64,
) -> Result<bool> {
    Ok(client
        .query_one(
            &schemas.substitute(
                "SELECT EXISTS (SELECT 1 FROM {{history}}.campaign_snapshots WHERE customer_id = $1)",
            ),
            &[&customer],
        )
        .await
        .pg_context(|| format!("looking up customer {customer}"))?
        .get(0))
}
