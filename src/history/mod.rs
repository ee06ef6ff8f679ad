//! Campaign history: capture every change of the configured campaigns table
//! as a full snapshot (statement-level triggers with transition tables),
//! import existing NDJSON exports, and answer "what did this customer's
//! campaigns look like at T" with one index look-up per campaign.
//!
//! `time` and `diff` are pure; `capture`, `query` and `import` talk to
//! PostgreSQL; `demo` is the demo pipeline step.

pub mod capture;
pub mod demo;
pub mod diff;
pub mod import;
pub mod query;
pub mod time;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::commands::status::Item;
use crate::config::Config;
use crate::db::{quote_ident, Db, PgResultExt};

/// The `history` section of the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// `schema.table` (or `table`, in `cdp_schema`) whose changes are
    /// captured; no capture when absent.
    #[serde(default)]
    pub campaigns_table: Option<String>,
    #[serde(default = "d_customer_column")]
    pub customer_column: String,
    #[serde(default = "d_id_column")]
    pub id_column: String,
    /// IANA zone for times typed without an offset and for display.
    #[serde(default = "d_time_zone")]
    pub time_zone: String,
    /// Columns `history-at` shows when `--fields` is not given (those present).
    #[serde(default = "d_fields")]
    pub default_fields: Vec<String>,
}

fn d_customer_column() -> String {
    "customer_id".into()
}
fn d_id_column() -> String {
    "id".into()
}
fn d_time_zone() -> String {
    "UTC".into()
}
fn d_fields() -> Vec<String> {
    ["name", "status", "priority", "updated_at"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl Default for HistoryConfig {
    fn default() -> Self {
        serde_json::from_value(json!({})).expect("defaults deserialize")
    }
}

/// A table named in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub schema: String,
    pub name: String,
}

impl TableRef {
    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
    /// `schema.table` for messages.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// What the capture triggers need: the table and its key columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureTarget {
    pub table: TableRef,
    pub customer_column: String,
    pub id_column: String,
}

impl HistoryConfig {
    /// Parses and validates the `history` section; errors name the key.
    pub fn from_config(cfg: &Config) -> Result<Self> {
        let value = Value::Object(cfg.history.clone());
        let hc: HistoryConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." || path.is_empty() {
                "history".to_string()
            } else {
                format!("history.{path}")
            };
            anyhow!(
                "config: key \"{key}\": {}; see the history section of examples/cdpctl.json",
                e.into_inner()
            )
        })?;
        hc.time_zone()?;
        for (key, v) in [
            ("customer_column", &hc.customer_column),
            ("id_column", &hc.id_column),
        ] {
            if v.is_empty() || v.len() > 63 {
                bail!("config: key \"history.{key}\": a column name of 1 to 63 characters is required, got {v:?}");
            }
        }
        if let Some(t) = &hc.campaigns_table {
            let bad = t.is_empty() || t.split('.').any(|p| p.is_empty() || p.len() > 63);
            if bad || t.matches('.').count() > 1 {
                bail!("config: key \"history.campaigns_table\": expected \"schema.table\" or \"table\", got {t:?}");
            }
        }
        Ok(hc)
    }

    pub fn time_zone(&self) -> Result<chrono_tz::Tz> {
        time::parse_tz(&self.time_zone)
            .map_err(|e| anyhow!("config: key \"history.time_zone\": {e}"))
    }

    /// The capture target, when `campaigns_table` is set. A bare table name
    /// lives in `cdp_schema`.
    pub fn target(&self, cfg: &Config) -> Option<CaptureTarget> {
        let t = self.campaigns_table.as_ref()?;
        let table = match t.split_once('.') {
            Some((s, n)) => TableRef {
                schema: s.to_string(),
                name: n.to_string(),
            },
            None => TableRef {
                schema: cfg.cdp_schema.clone(),
                name: t.clone(),
            },
        };
        Some(CaptureTarget {
            table,
            customer_column: self.customer_column.clone(),
            id_column: self.id_column.clone(),
        })
    }
}

/// The history lines of `cdpctl status`.
pub async fn status_items(db: &Db) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    if !db.relation_exists("history", "campaign_snapshots").await? {
        return Ok(items);
    }
    let hc = match HistoryConfig::from_config(&db.config) {
        Ok(hc) => hc,
        Err(e) => {
            items.push(Item::new("history", "config", format!("{e:#}")));
            HistoryConfig::default()
        }
    };
    let installed = capture::installed(&db.client, &db.schemas).await?;
    let capture = match (hc.target(&db.config), installed.is_empty()) {
        (None, true) => "off (set history.campaigns_table and run `cdpctl init`)".to_string(),
        (Some(t), true) => format!(
            "configured for {} but not installed; run `cdpctl init`",
            t.table.display()
        ),
        (_, false) => {
            let mut tables: Vec<String> = installed.iter().map(|i| i.table.display()).collect();
            tables.dedup();
            format!("on {}", tables.join(", "))
        }
    };
    items.push(Item::new("history", "capture", capture));
    if db
        .client
        .query_opt(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'import_key'",
            &[&format!("{}.campaign_snapshots", db.schemas.history)],
        )
        .await?
        .is_some()
    {
        let row = db
            .client
            .query_one(
                &db.schemas.substitute(
                    "SELECT (SELECT max(id) FROM {{history}}.campaign_snapshots),
                            (SELECT count(*) FROM {{history}}.campaign_snapshots WHERE import_key IS NOT NULL)",
                ),
                &[],
            )
            .await
            .pg_context(|| "reading history status".into())?;
        let last: Option<i64> = row.get(0);
        items.push(Item::new("history", "imported snapshots", row.get::<_, i64>(1)));
        if let Some(last) = last {
            let t: chrono::DateTime<chrono::Utc> = db
                .client
                .query_one(
                    &db.schemas.substitute(
                        "SELECT event_time FROM {{history}}.campaign_snapshots WHERE id = $1",
                    ),
                    &[&last],
                )
                .await?
                .get(0);
            items.push(Item::new(
                "history",
                "latest recorded change",
                time::Style::new(hc.time_zone().unwrap_or(chrono_tz::Tz::UTC), false).display(t),
            ));
        }
    }
    Ok(items)
}
