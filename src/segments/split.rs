//! The Split-compatible REST destination: `PUT …/uploadKeys?replace=false`
//! and `PUT …/removeKeys` with `{"keys": [...], "comment": ...}`, in chunks of
//! at most `max_keys_per_call` keys. 429 waits for the
//! `X-RateLimit-Reset-Seconds-*` headers; 5xx, 408 and transport errors
//! (timeouts, refused connections) retry with exponential backoff. A 3xx
//! fails the segment at once: redirects are never followed, so the bearer
//! token goes to the configured host only. The token never appears in
//! messages, and a response body appears only as a short excerpt with the
//! token scrubbed.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;

/// Split's hard limit on keys per call.
pub const MAX_KEYS_PER_CALL: usize = 10_000;
/// Characters of a response body shown in an error.
pub const BODY_EXCERPT_CHARS: usize = 200;

/// The HTTP client of the REST destinations: no redirects (a 3xx is an
/// answer, not a hop that would carry the token elsewhere).
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("cdpctl/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| anyhow!("building the HTTP client: {e}"))
}

/// At most [`BODY_EXCERPT_CHARS`] of `body` on one line, with `secrets` and
/// anything after `Bearer ` replaced by `***` (before truncating, so no
/// prefix of a secret survives).
pub fn body_excerpt(body: &str, secrets: &[&str]) -> String {
    let mut text = body.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "***");
    }
    let bearer = regex::Regex::new(r"(?i)(bearer\s+)[^\s\x22',;]+").expect("valid regex");
    let text = bearer.replace_all(&text, "${1}***");
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    let mut out: String = flat.chars().take(BODY_EXCERPT_CHARS).collect();
    if flat.chars().count() > BODY_EXCERPT_CHARS {
        out.push('…');
    }
    out
}

/// `segments.destinations.<segment>` in the config.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// Base URL of the API (default `https://api.split.io`).
    #[serde(default = "d_base_url")]
    pub base_url: String,
    /// Split environment (name or id).
    #[serde(default)]
    pub environment: String,
    /// Segment name at the destination (default: the queue's segment name).
    #[serde(default)]
    pub segment: Option<String>,
    /// API token; prefer `api_token_env`.
    #[serde(default)]
    pub api_token: Option<String>,
    /// Environment variable holding the API token (default `SPLIT_API_TOKEN`).
    #[serde(default = "d_token_env")]
    pub api_token_env: String,
    /// Keys per call, at most 10,000.
    #[serde(default = "d_max_keys")]
    pub max_keys_per_call: usize,
    /// Per-call timeout in milliseconds.
    #[serde(default = "d_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of one call (5xx, timeouts, 429) before the segment fails.
    #[serde(default = "d_max_retries")]
    pub max_retries: u32,
    /// First backoff in milliseconds (doubles per retry, capped at 60 s).
    #[serde(default = "d_backoff_ms")]
    pub backoff_ms: u64,
    /// Longest wait honoured from a 429's reset headers, in seconds.
    #[serde(default = "d_max_wait")]
    pub max_rate_limit_wait_seconds: u64,
    /// The `comment` sent with every change.
    #[serde(default = "d_comment")]
    pub comment: String,
}

impl std::fmt::Debug for RestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestConfig")
            .field("base_url", &self.base_url)
            .field("environment", &self.environment)
            .field("segment", &self.segment)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("api_token_env", &self.api_token_env)
            .field("max_keys_per_call", &self.max_keys_per_call)
            .finish_non_exhaustive()
    }
}

fn d_base_url() -> String {
    "https://api.split.io".into()
}
fn d_token_env() -> String {
    "SPLIT_API_TOKEN".into()
}
fn d_max_keys() -> usize {
    MAX_KEYS_PER_CALL
}
fn d_timeout_ms() -> u64 {
    30_000
}
fn d_max_retries() -> u32 {
    8
}
fn d_backoff_ms() -> u64 {
    500
}
fn d_max_wait() -> u64 {
    300
}
fn d_comment() -> String {
    "cdpctl flush-segment".into()
}

impl RestConfig {
    /// Checks the limits and the environment; `key` is the config path for
    /// messages.
    pub fn validate(&self, key: &str) -> Result<()> {
        self.validate_api(key)?;
        if self.environment.is_empty() {
            bail!("config: key \"{key}.environment\": required, the Split environment (name or id) to deliver to");
        }
        Ok(())
    }

    /// Checks the limits and the base URL.
    pub fn validate_api(&self, key: &str) -> Result<()> {
        if self.max_keys_per_call == 0 || self.max_keys_per_call > MAX_KEYS_PER_CALL {
            bail!(
                "config: key \"{key}.max_keys_per_call\": must be 1 to {MAX_KEYS_PER_CALL}, got {}",
                self.max_keys_per_call
            );
        }
        url::Url::parse(&self.base_url).map_err(|e| {
            anyhow!(
                "config: key \"{key}.base_url\": {e}, got {:?}",
                self.base_url
            )
        })?;
        Ok(())
    }
}

/// A destination ready to send: config plus the resolved token.
pub struct SplitDestination {
    pub queue_segment: String,
    pub cfg: RestConfig,
    token: String,
}

/// What one delivery did, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delivery {
    pub calls: u64,
    pub retries: u64,
}

impl SplitDestination {
    /// Resolves the token (config, else the environment variable).
    pub fn new(queue_segment: &str, cfg: &RestConfig) -> Result<Self> {
        let token = match cfg.api_token.clone().filter(|t| !t.is_empty()) {
            Some(t) => t,
            None => std::env::var(&cfg.api_token_env)
                .ok()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    anyhow!(
                        "segment {queue_segment:?}: no API token for the REST destination; set the environment variable {} or segments.destinations.{queue_segment}.api_token",
                        cfg.api_token_env
                    )
                })?,
        };
        Ok(Self {
            queue_segment: queue_segment.to_string(),
            cfg: cfg.clone(),
            token,
        })
    }

    pub fn remote_segment(&self) -> &str {
        self.cfg.segment.as_deref().unwrap_or(&self.queue_segment)
    }

    fn url(&self, op: &str) -> Result<url::Url> {
        let mut u = url::Url::parse(&self.cfg.base_url)?;
        u.path_segments_mut()
            .map_err(|_| anyhow!("base_url {:?} cannot take a path", self.cfg.base_url))?
            .pop_if_empty()
            .extend([
                "internal",
                "api",
                "v2",
                "segments",
                self.cfg.environment.as_str(),
                self.remote_segment(),
                op,
            ]);
        if op == "uploadKeys" {
            u.set_query(Some("replace=false"));
        }
        Ok(u)
    }

    /// Sends the adds and the removes (disjoint key sets, so their order
    /// does not matter). Errors only after retries are exhausted or on a
    /// non-retryable answer; the caller then keeps the queued rows.
    pub async fn deliver(
        &self,
        http: &reqwest::Client,
        add: &[String],
        remove: &[String],
    ) -> Result<Delivery> {
        let mut d = Delivery::default();
        for (op, keys) in [("uploadKeys", add), ("removeKeys", remove)] {
            for chunk in keys.chunks(self.cfg.max_keys_per_call) {
                d.retries += self.call(http, op, chunk).await?;
                d.calls += 1;
            }
        }
        Ok(d)
    }

    async fn call(&self, http: &reqwest::Client, op: &str, keys: &[String]) -> Result<u64> {
        let url = self.url(op)?;
        let body = serde_json::json!({"keys": keys, "comment": self.cfg.comment});
        let what = || {
            format!(
                "segment {:?}: PUT {} ({} keys)",
                self.queue_segment,
                url.path(),
                keys.len()
            )
        };
        let mut retries = 0u32;
        loop {
            let res = http
                .put(url.clone())
                .bearer_auth(&self.token)
                .json(&body)
                .timeout(Duration::from_millis(self.cfg.timeout_ms))
                .send()
                .await;
            let (wait, problem) = match res {
                Ok(resp) if resp.status().is_success() => return Ok(retries as u64),
                Ok(resp) if resp.status().is_redirection() => {
                    let to = resp
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                        .and_then(|l| url.join(l).ok())
                        .map(|u| match (u.host_str(), u.port()) {
                            (Some(h), Some(p)) => format!("{h}:{p}"),
                            (Some(h), None) => h.to_string(),
                            (None, _) => "an unknown host".into(),
                        })
                        .unwrap_or_else(|| "no Location".into());
                    bail!(
                        "{}: the destination answered HTTP {} redirecting to {to}; redirects are not followed (the API token goes to the configured host only): set segments.destinations.{}.base_url to the final address",
                        what(),
                        resp.status(),
                        self.queue_segment
                    );
                }
                Ok(resp) if resp.status().as_u16() == 429 => {
                    let wait = rate_limit_wait(resp.headers())
                        .map(|w| w.min(Duration::from_secs(self.cfg.max_rate_limit_wait_seconds)))
                        .unwrap_or_else(|| self.backoff(retries));
                    (wait, "HTTP 429 Too Many Requests".to_string())
                }
                Ok(resp) if resp.status().is_server_error() || resp.status().as_u16() == 408 => {
                    let status = resp.status();
                    let text = self.excerpt(resp).await;
                    (self.backoff(retries), format!("HTTP {status}{text}"))
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = self.excerpt(resp).await;
                    bail!(
                        "{}: the destination refused it with HTTP {status}{text}; check the environment, segment name and API token",
                        what()
                    );
                }
                Err(e) => {
                    let kind = if e.is_timeout() {
                        format!("timed out after {} ms", self.cfg.timeout_ms)
                    } else if e.is_connect() {
                        "connection failed".to_string()
                    } else {
                        "transport error".to_string()
                    };
                    (self.backoff(retries), kind)
                }
            };
            if retries >= self.cfg.max_retries {
                bail!(
                    "{}: {problem}, still failing after {retries} retries; the changes stay queued, rerun later or raise max_retries",
                    what()
                );
            }
            retries += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// `: <excerpt>` of a response's body, or nothing for an empty one.
    async fn excerpt(&self, resp: reqwest::Response) -> String {
        let body = resp.text().await.unwrap_or_default();
        let text = body_excerpt(&body, &[&self.token]);
        if text.is_empty() {
            text
        } else {
            format!(": {text}")
        }
    }

    fn backoff(&self, retries: u32) -> Duration {
        let base = self.cfg.backoff_ms.saturating_mul(1u64 << retries.min(16));
        let capped = base.min(60_000);
        let jitter = rand::random::<u64>() % (capped / 4 + 1);
        Duration::from_millis(capped + jitter)
    }
}

/// The longest of the `X-RateLimit-Reset-Seconds-*` headers (Split sends one
/// per limit: organisation, IP, ...).
pub fn rate_limit_wait(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .iter()
        .filter(|(name, _)| {
            name.as_str()
                .to_ascii_lowercase()
                .starts_with("x-ratelimit-reset-seconds-")
        })
        .filter_map(|(_, v)| v.to_str().ok()?.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_headers_take_the_longest_wait() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("X-RateLimit-Reset-Seconds-Org", "2".parse().unwrap());
        h.insert("x-ratelimit-reset-seconds-ip", "5".parse().unwrap());
        h.insert("x-other", "100".parse().unwrap());
        assert_eq!(rate_limit_wait(&h), Some(Duration::from_secs(5)));
        assert_eq!(rate_limit_wait(&reqwest::header::HeaderMap::new()), None);
    }

    #[test]
    fn urls_follow_the_split_api() {
        let cfg: RestConfig = serde_json::from_value(serde_json::json!({
            "base_url": "http://127.0.0.1:9/", "environment": "prod env", "api_token": "t"
        }))
        .unwrap();
        let d = SplitDestination::new("beta/testers", &cfg).unwrap();
        assert_eq!(
            d.url("uploadKeys").unwrap().as_str(),
            "http://127.0.0.1:9/internal/api/v2/segments/prod%20env/beta%2Ftesters/uploadKeys?replace=false"
        );
        assert_eq!(
            d.url("removeKeys").unwrap().path(),
            "/internal/api/v2/segments/prod%20env/beta%2Ftesters/removeKeys"
        );
        assert!(!format!("{cfg:?}").contains("\"t\""));
    }

    #[test]
    fn body_excerpts_are_short_and_scrubbed() {
        let token = "s3cret-token-123";
        let body = format!(
            "denied: token {token} is not valid\nAuthorization: Bearer other.jwt.value; {}",
            "x".repeat(500)
        );
        let e = body_excerpt(&body, &[token]);
        assert!(!e.contains("s3cret") && !e.contains("other.jwt"), "{e}");
        assert!(
            e.starts_with("denied: token *** is not valid Authorization: Bearer ***;"),
            "{e}"
        );
        assert_eq!(e.chars().count(), BODY_EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        // a secret cut by the truncation leaves no prefix behind
        let body = format!("{}{token}", "y".repeat(BODY_EXCERPT_CHARS - 4));
        let e = body_excerpt(&body, &[token]);
        assert!(!e.contains("s3cr"), "{e}");
        assert_eq!(body_excerpt("  oops \r\n", &[""]), "oops");
    }

    #[test]
    fn too_many_keys_per_call_is_a_config_error() {
        let cfg: RestConfig = serde_json::from_value(serde_json::json!({
            "environment": "prod", "max_keys_per_call": 20000
        }))
        .unwrap();
        let e = cfg.validate("segments.destinations.x").unwrap_err();
        assert!(e.to_string().contains("max_keys_per_call"), "{e}");
    }
}
