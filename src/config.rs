//! The JSON configuration file (DESIGN §2). Compatible with the existing
//! stitching component's config; unknown keys and wrong types are errors that
//! name the key, and never show the value of a secret (password, token).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub dbname: Option<String>,
    /// disable | prefer | require | verify-ca | verify-full
    pub sslmode: Option<String>,
    /// PEM file with the CA certificate(s) to trust for verify-ca/verify-full,
    /// or `system` for the system's trusted roots.
    pub sslrootcert: Option<PathBuf>,
    /// Client certificate (PEM) and its private key.
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    /// A service name from pg_service.conf.
    pub service: Option<String>,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .field("service", &self.service)
            .finish()
    }
}

/// True for config keys whose values are secrets (`password`, `api_token`,
/// ...), but not for keys naming where a secret is (`api_token_env`).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !k.ends_with("_env")
        && ["password", "token", "secret", "api_key", "apikey"]
            .iter()
            .any(|s| k.contains(s))
}

/// The text of a deserialisation error at `path` (dotted key path). serde
/// quotes the offending value (`invalid type: integer `123456`, expected a
/// string`); for a secret key only what was expected is kept.
pub fn key_error_text(path: &str, inner: &dyn std::fmt::Display) -> String {
    let text = inner.to_string();
    let last = path.rsplit('.').next().unwrap_or(path);
    if !is_secret_key(last.split('[').next().unwrap_or(last)) {
        return text;
    }
    match text.split_once(", expected ") {
        Some((_, expected)) => {
            format!("invalid value (not shown, the key holds a secret); expected {expected}")
        }
        None => "invalid value (not shown, the key holds a secret)".to_string(),
    }
}

/// `message` with every value of a secret key anywhere in `doc` replaced
/// by `***` (values of at least 4 characters; shorter ones would mask
/// unrelated text and are covered by [`key_error_text`]).
pub fn scrub_secrets(message: &str, doc: &serde_json::Value) -> String {
    fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    match x {
                        serde_json::Value::String(s) if is_secret_key(k) => out.push(s.clone()),
                        serde_json::Value::Number(n) if is_secret_key(k) => out.push(n.to_string()),
                        _ => collect(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    let mut secrets = Vec::new();
    collect(doc, &mut secrets);
    // longest first, so a secret containing another is masked whole
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = message.to_string();
    for s in secrets.iter().filter(|s| s.chars().count() >= 4) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DynamoConfig {
    #[serde(default = "d_dynamo_table")]
    pub table: String,
    /// The AWS region; unset: `--region`, else the standard AWS chain
    /// (`AWS_REGION`, the profile's `region`, instance metadata).
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default = "d_key_attr")]
    pub key_attribute: String,
    #[serde(default = "d_value_attr")]
    pub value_attribute: String,
    /// Longest wait for one BatchGetItem/DescribeTable request, with all its
    /// retries (restarted when a retry makes progress), in milliseconds.
    #[serde(default = "d_request_deadline")]
    pub request_deadline_ms: u64,
    /// Longest wait for one attempt of a request, in milliseconds.
    #[serde(default = "d_attempt_timeout")]
    pub attempt_timeout_ms: u64,
}

impl Default for DynamoConfig {
    fn default() -> Self {
        Self {
            table: d_dynamo_table(),
            region: None,
            endpoint_url: None,
            key_attribute: d_key_attr(),
            value_attribute: d_value_attr(),
            request_deadline_ms: d_request_deadline(),
            attempt_timeout_ms: d_attempt_timeout(),
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

/// Thresholds of `status --check` (DESIGN §3: cron and monitoring). A
/// threshold set to `null` is not checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonitoringConfig {
    /// Most events waiting for stitching.
    #[serde(default = "d_backlog")]
    pub max_stitch_backlog: Option<i64>,
    /// Most entities waiting for attribute calculation (`calculated IS NULL`).
    #[serde(default = "d_backlog")]
    pub max_attribute_backlog: Option<i64>,
    /// Most entity changes waiting for calc-audiences.
    #[serde(default = "d_backlog")]
    pub max_audience_backlog: Option<i64>,
    /// Oldest queued segment change, in seconds.
    #[serde(default = "d_queue_age")]
    pub max_queue_age_seconds: Option<i64>,
    /// Most stale context keys.
    #[serde(default)]
    pub max_stale_context_keys: Option<i64>,
    /// How long each status item waits for a lock a running job holds
    /// before it is reported "busy", in milliseconds.
    #[serde(default = "d_busy_timeout")]
    pub busy_lock_timeout_ms: u64,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            max_stitch_backlog: d_backlog(),
            max_attribute_backlog: d_backlog(),
            max_audience_backlog: d_backlog(),
            max_queue_age_seconds: d_queue_age(),
            max_stale_context_keys: None,
            busy_lock_timeout_ms: d_busy_timeout(),
        }
    }
}

fn d_backlog() -> Option<i64> {
    Some(100_000)
}
fn d_queue_age() -> Option<i64> {
    Some(3_600)
}
fn d_busy_timeout() -> u64 {
    200
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
    #[serde(default)]
    pub monitoring: MonitoringConfig,
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
    pub serve: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub history: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub production_switch: serde_json::Map<String, serde_json::Value>,
}

fn d_dynamo_table() -> String {
    "contact_mapping".into()
}
fn d_key_attr() -> String {
    "contact_reference".into()
}
fn d_value_attr() -> String {
    "contact_id".into()
}
fn d_request_deadline() -> u64 {
    60_000
}
fn d_attempt_timeout() -> u64 {
    5_000
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
            let inner = key_error_text(&path, e.inner());
            let key = if path == "." || path.is_empty() {
                String::new()
            } else {
                format!(" key \"{path}\":")
            };
            let msg = format!(
                "config {origin}:{key} {inner}; fix the key (every key is documented in examples/cdpctl.json)"
            );
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(doc) => anyhow::anyhow!(scrub_secrets(&msg, &doc)),
                Err(_) => anyhow::anyhow!(msg),
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys() {
        for k in ["password", "api_token", "client_secret", "API_KEY", "token"] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["api_token_env", "host", "timeout_ms", "key_attribute"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn wrong_types_of_secrets_do_not_echo_the_value() {
        for (doc, key) in [
            (
                r#"{"postgresql": {"password": 123456}}"#,
                "postgresql.password",
            ),
            (
                r#"{"postgresql": {"password": ["hunter22"]}}"#,
                "postgresql.password",
            ),
            (r#"{"postgresql": {"password": 12}}"#, "postgresql.password"),
        ] {
            let e = Config::from_json(doc, "c.json").unwrap_err().to_string();
            assert!(e.contains(&format!("key \"{key}\"")), "{e}");
            assert!(e.contains("expected a string"), "{e}");
            for secret in ["123456", "hunter22", "12"] {
                assert!(!e.contains(secret), "{e}");
            }
        }
        // other keys keep serde's full text
        let e = Config::from_json(r#"{"postgresql": {"port": "5432x"}}"#, "c.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"5432x\""), "{e}");
    }

    #[test]
    fn secret_values_are_scrubbed_anywhere() {
        let doc = serde_json::json!({"postgresql": {"password": "hunter22"},
            "segments": {"destinations": {"x": {"api_token": 98765, "api_token_env": "TOKEN_VAR"}}}});
        assert_eq!(
            scrub_secrets("a hunter22 b 98765 c TOKEN_VAR", &doc),
            "a *** b *** c TOKEN_VAR"
        );
        let pg: Config = serde_json::from_value(doc).unwrap();
        assert!(!format!("{pg:?}").contains("hunter22"));
    }
}
