//! Point-in-time look-ups over the snapshot table. `state_at` is one index
//! look-up per campaign: a skip scan over the (customer, campaign, time, id)
//! index finds the customer's campaigns, and a LATERAL probe takes each one's
//! latest snapshot at or before T. `timeline` and `changed_by` read the
//! changes of a customer in one statement each.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::db::{PgResultExt, Schemas};

/// Who made a change, as the capture trigger recorded it (all `None` for
/// imported snapshots).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Actor {
    /// The role that ran the statement.
    #[serde(rename = "actor_user")]
    pub user: Option<String>,
    /// Its session's `application_name`.
    #[serde(rename = "actor_application")]
    pub application: Option<String>,
    /// The session's `cdpctl.actor` setting, set by application code.
    #[serde(rename = "actor")]
    pub name: Option<String>,
}

impl Actor {
    pub fn is_known(&self) -> bool {
        self.user.is_some() || self.application.is_some() || self.name.is_some()
    }

    /// `alice@support (app_user via billing-ui)`, `app_user via psql`;
    /// `None` when nothing was recorded.
    pub fn describe(&self) -> Option<String> {
        let via = match (&self.user, &self.application) {
            (Some(u), Some(a)) => Some(format!("{u} via {a}")),
            (Some(u), None) => Some(u.clone()),
            (None, Some(a)) => Some(format!("via {a}")),
            (None, None) => None,
        };
        match (&self.name, via) {
            (Some(n), Some(v)) => Some(format!("{n} ({v})")),
            (Some(n), None) => Some(n.clone()),
            (None, v) => v,
        }
    }
}

/// One snapshot row.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRow {
    pub id: i64,
    pub campaign_id: i64,
    pub event_time: DateTime<Utc>,
    pub event_type: String,
    pub snapshot: serde_json::Value,
    pub actor: Actor,
}

/// The columns `rows_to_snapshots` reads, in order.
const COLUMNS: &str =
    "id, campaign_id, event_time, event_type, snapshot, actor_user, actor_application, actor";

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
         SELECT l.*
           FROM ids
          CROSS JOIN LATERAL (
                SELECT {COLUMNS}
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
            actor: Actor {
                user: r.get(5),
                application: r.get(6),
                name: r.get(7),
            },
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

/// Every change of `customer`'s campaigns (only `campaigns` when given),
/// oldest first, optionally up to `until`.
pub async fn timeline(
    client: &impl GenericClient,
    schemas: &Schemas,
    customer: i64,
    campaigns: Option<&[i64]>,
    until: Option<DateTime<Utc>>,
) -> Result<Vec<SnapshotRow>> {
    let list = campaigns.map(<[i64]>::to_vec);
    let rows = client
        .query(
            &schemas.substitute(&format!(
                "SELECT {COLUMNS}
                   FROM {{{{history}}}}.campaign_snapshots
                  WHERE customer_id = $1
                    AND ($2::bigint[] IS NULL OR campaign_id = ANY ($2))
                    AND ($3::timestamptz IS NULL OR event_time <= $3)
                  ORDER BY event_time, id"
            )),
            &[&customer, &list, &until],
        )
        .await
        .pg_context(|| format!("reading the campaign history of customer {customer}"))?;
    Ok(rows_to_snapshots(&rows))
}

/// Per campaign, who changed it after `after` up to `through`, each actor
/// once, in the order of their first change then.
pub async fn changed_by(
    client: &impl GenericClient,
    schemas: &Schemas,
    customer: i64,
    campaigns: Option<&[i64]>,
    after: DateTime<Utc>,
    through: DateTime<Utc>,
) -> Result<BTreeMap<i64, Vec<Actor>>> {
    let list = campaigns.map(<[i64]>::to_vec);
    let rows = client
        .query(
            &schemas.substitute(
                "SELECT campaign_id, actor_user, actor_application, actor
                   FROM {{history}}.campaign_snapshots
                  WHERE customer_id = $1
                    AND ($2::bigint[] IS NULL OR campaign_id = ANY ($2))
                    AND event_time > $3 AND event_time <= $4
                  GROUP BY campaign_id, actor_user, actor_application, actor
                  ORDER BY campaign_id, min(event_time), min(id)",
            ),
            &[&customer, &list, &after, &through],
        )
        .await
        .pg_context(|| format!("reading who changed the campaigns of customer {customer}"))?;
    let mut out: BTreeMap<i64, Vec<Actor>> = BTreeMap::new();
    for r in rows {
        out.entry(r.get(0)).or_default().push(Actor {
            user: r.get(1),
            application: r.get(2),
            name: r.get(3),
        });
    }
    Ok(out)
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
