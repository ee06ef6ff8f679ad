//! Contact-id audiences: moving campaign audiences from the legacy
//! contact-reference table to the contact-id table (`migrate`), and the
//! membership query the serving side runs during and after the transition
//! (`membership`). Contact ids come from DynamoDB through [`crate::dynamo`].

pub mod membership;
pub mod merge;
pub mod migrate;

use anyhow::Result;
use serde::Deserialize;
use serde_json::Value;

use crate::commands::status::Item;
use crate::config::Config;
use crate::db::{Db, PgResultExt};

pub use membership::{membership, MembershipAnswer, MembershipQuery};
pub use migrate::{migrate, CampaignReport, MigrateOptions, Selection, Summary};

/// `audiences.migration` in the config file. Only this sub-key of the
/// shared `audiences` section belongs to `migrate-audiences`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MigrationSettings {
    /// References read, looked up and written per transaction (checkpoint).
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// BatchGetItem requests in flight.
    #[serde(default = "d_concurrency")]
    pub concurrency: usize,
    /// Retries without progress before a DynamoDB look-up fails.
    #[serde(default = "d_attempts")]
    pub max_attempts: u32,
}

fn d_batch() -> usize {
    5_000
}
fn d_concurrency() -> usize {
    crate::dynamo::DEFAULT_CONCURRENCY
}
fn d_attempts() -> u32 {
    8
}

impl Default for MigrationSettings {
    fn default() -> Self {
        Self {
            batch_size: d_batch(),
            concurrency: d_concurrency(),
            max_attempts: d_attempts(),
        }
    }
}

impl MigrationSettings {
    /// Parses `audiences.migration`; errors name the key.
    pub fn from_config(cfg: &Config) -> Result<Self> {
        let Some(v) = cfg.audiences.get("migration") else {
            return Ok(Self::default());
        };
        let s: MigrationSettings = serde_path_to_error::deserialize(v.clone()).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." || path.is_empty() {
                "audiences.migration".to_string()
            } else {
                format!("audiences.migration.{path}")
            };
            anyhow::anyhow!(
                "config: key \"{key}\": {}; see examples/cdpctl.json",
                e.into_inner()
            )
        })?;
        if s.batch_size == 0 || s.concurrency == 0 {
            anyhow::bail!(
                "config: key \"audiences.migration\": batch_size and concurrency must be at least 1"
            );
        }
        Ok(s)
    }
}

/// Migration progress for `cdpctl status`.
pub async fn status_items(db: &Db) -> Result<Vec<Item>> {
    if !db
        .relation_exists("audience", "audience_migrations")
        .await?
    {
        return Ok(Vec::new());
    }
    let row = db
        .client
        .query_one(
            &db.schemas.substitute(
                "SELECT count(*) FILTER (WHERE state = 'copying'),
                        count(*) FILTER (WHERE state = 'migrated'),
                        count(*) FILTER (WHERE state = 'source_dropped'),
                        coalesce(sum(unmapped), 0)::bigint,
                        (SELECT count(DISTINCT campaign_id) FROM {{audience}}.campaign_contact_reference_master)
                   FROM {{audience}}.audience_migrations",
            ),
            &[],
        )
        .await
        .pg_context(|| "reading audience migration progress".into())?;
    let n = |i: usize| Value::from(row.get::<_, i64>(i));
    Ok(vec![
        Item::new("audiences", "legacy campaigns (contact references)", n(4)),
        Item::new("audiences", "campaigns being migrated", n(0)),
        Item::new("audiences", "campaigns migrated", n(1)),
        Item::new("audiences", "campaigns with legacy rows dropped", n(2)),
        Item::new("audiences", "unmapped references", n(3)),
    ])
}
