//! The JSON configuration file (DESIGN §2). Compatible with the existing
//! stitching component's config; unknown keys and wrong types are errors that
//! name the key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub dbname: Option<String>,
    /// disable | prefer | require | verify-ca | verify-full
    pub sslmode: Option<String>,
    /// PEM file with the CA certificate(s) to trust for verify-ca/verify-full.
    pub sslrootcert: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DynamoConfig {
    #[serde(default = "d_dynamo_table")]
    pub table: String,
    #[serde(default = "d_region")]
    pub region: String,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default = "d_key_attr")]
    pub key_attribute: String,
    #[serde(default = "d_value_attr")]
    pub value_attribute: String,
}

impl Default for DynamoConfig {
    fn default() -> Self {
        Self {
            table: d_dynamo_table(),
            region: d_region(),
            endpoint_url: None,
            key_attribute: d_key_attr(),
            value_attribute: d_value_attr(),
        }
    }
}

/// Session limits applied to every connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// `statement_timeout` in milliseconds; 0 = no limit.
    #[serde(default)]
    pub statement_timeout_ms: u64,
    /// `lock_timeout` in milliseconds for ordinary statements.
    #[serde(default = "d_lock_timeout")]
    pub lock_timeout_ms: u64,
    /// How often a statement that hit the lock timeout is retried.
    #[serde(default = "d_lock_retries")]
    pub lock_retries: u32,
    /// `statement_timeout` of every statement holding configured SQL
    /// (attribute definitions, context queries, stitching value
    /// expressions, group predicates), in milliseconds; 0 = no limit.
    #[serde(default = "d_configured_sql_timeout")]
    pub configured_sql_timeout_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            statement_timeout_ms: 0,
            lock_timeout_ms: d_lock_timeout(),
            lock_retries: d_lock_retries(),
            configured_sql_timeout_ms: d_configured_sql_timeout(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub postgresql: PgConfig,
    #[serde(default = "d_cdp")]
    pub cdp_schema: String,
    #[serde(default = "d_ce")]
    pub ce_schema: String,
    #[serde(default = "d_ps")]
    pub ps_schema: String,
    #[serde(default = "d_attr")]
    pub attr_schema: String,
    #[serde(default = "d_audience")]
    pub audience_schema: String,
    #[serde(default = "d_history")]
    pub history_schema: String,
    /// Schema for cdpctl's own bookkeeping (applied migrations, job state).
    #[serde(default = "d_cdpctl")]
    pub cdpctl_schema: String,
    /// Accepted for compatibility with the stitching component's config; the
    /// production switch itself is `cdpctl go-production`.
    #[serde(default)]
    pub production: bool,
    #[serde(default)]
    pub dynamodb: DynamoConfig,
    #[serde(default)]
    pub session: SessionConfig,
    /// Settings owned by individual commands (stitching, attributes, segments,
    /// history ...). Each command validates its own section.
    #[serde(default)]
    pub stitching: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub audiences: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub segments: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub history: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub production_switch: serde_json::Map<String, serde_json::Value>,
}

fn d_dynamo_table() -> String {
    "contact_mapping".into()
}
fn d_region() -> String {
    "eu-west-1".into()
}
fn d_key_attr() -> String {
    "contact_reference".into()
}
fn d_value_attr() -> String {
    "contact_id".into()
}
fn d_lock_timeout() -> u64 {
    5_000
}
fn d_configured_sql_timeout() -> u64 {
    300_000
}

fn d_lock_retries() -> u32 {
    3
}
fn d_cdp() -> String {
    "public".into()
}
fn d_ce() -> String {
    "cdp_ce".into()
}
fn d_ps() -> String {
    "cdp_ps".into()
}
fn d_attr() -> String {
    "cdp_attr".into()
}
fn d_audience() -> String {
    "audience_data".into()
}
fn d_history() -> String {
    "inapp_campaigns".into()
}
fn d_cdpctl() -> String {
    "cdpctl".into()
}

impl Default for Config {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults deserialize")
    }
}

impl Config {
    /// Parses a config document; errors name the offending key path.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let key = if path == "." || path.is_empty() {
                String::new()
            } else {
                format!(" key \"{path}\":")
            };
            anyhow::anyhow!(
                "config {origin}:{key} {inner}; fix the key (every key is documented in examples/cdpctl.json)"
            )
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read config file {}; check the --config path or CDPCTL_CONFIG",
                path.display()
            )
        })?;
        Self::from_json(&text, &path.display().to_string())
    }

    fn validate(&self, origin: &str) -> Result<()> {
        for (key, value) in [
            ("cdp_schema", &self.cdp_schema),
            ("ce_schema", &self.ce_schema),
            ("ps_schema", &self.ps_schema),
            ("attr_schema", &self.attr_schema),
            ("audience_schema", &self.audience_schema),
            ("history_schema", &self.history_schema),
            ("cdpctl_schema", &self.cdpctl_schema),
        ] {
            if value.is_empty() || value.len() > 63 {
                anyhow::bail!(
                    "config {origin}: key \"{key}\": schema name must be 1 to 63 characters, got {value:?}"
                );
            }
        }
        for key in self.audiences.keys() {
            if key != "migration" && key != "groups" {
                anyhow::bail!(
                    "config {origin}: unknown key \"audiences.{key}\"; the audiences section holds \"migration\" (migrate-audiences) and \"groups\" (calc-audiences)"
                );
            }
        }
        if let Some(mode) = &self.postgresql.sslmode {
            crate::db::tls::SslMode::parse(mode)
                .map_err(|e| anyhow::anyhow!("config {origin}: key \"postgresql.sslmode\": {e}"))?;
        }
        Ok(())
    }
}
