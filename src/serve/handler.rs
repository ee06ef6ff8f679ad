//! The HTTP surface: `POST /audiences` exactly as the mparticle-audiences
//! lambda sends it to the batch server, plus `/ping`, `/uptime` and
//! `/metrics`. Answers are plain text like the batch server's; messages name
//! the field at fault and never repeat the API token or the shared secret.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};

use super::metrics::{uptime_text, Metrics};
use super::writer::{Job, Msg, WriteError};
use crate::segments::tenants::TenantRequest;

/// What every connection shares.
pub struct State {
    /// SHA-256 of the shared secret: compared in constant time, and its
    /// length does not leak either.
    pub secret_digest: [u8; 32],
    pub max_body_bytes: usize,
    pub max_keys_per_request: usize,
    pub jobs: mpsc::Sender<Msg>,
    pub metrics: Arc<Metrics>,
}

/// A valid `POST /audiences` body.
#[derive(Debug)]
pub struct Audience {
    pub tenant: TenantRequest,
    pub segment: String,
    /// The verb as sent (echoed in the answer, as the batch server does).
    pub verb_as_sent: String,
    /// `add` or `remove`.
    pub verb: &'static str,
    pub keys: Vec<String>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses and checks a body. The error is the 400 answer's text.
pub fn parse_audience(body: &[u8], max_keys: usize) -> Result<Audience, String> {
    const SHAPE: &str = "expected {\"apiToken\", \"workspaceId\", \"environmentId\", \"trafficTypeId\", \"verb\": \"add\"|\"delete\", \"mpids\": [...], \"segment\"}";
    let doc: Value = serde_json::from_slice(body).map_err(|e| {
        // serde's syntax errors carry the position, never the content
        format!("invalid POST body: malformed JSON ({e}); {SHAPE}")
    })?;
    let Value::Object(obj) = doc else {
        return Err(format!(
            "invalid POST body: got {} instead of a JSON object; {SHAPE}",
            kind(&doc)
        ));
    };
    let text = |name: &str, required: bool| -> Result<String, String> {
        match obj.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(Value::String(_)) if required => {
                Err(format!("invalid POST body: field \"{name}\" is empty"))
            }
            None | Some(Value::Null) if required => Err(format!(
                "invalid POST body: field \"{name}\" is missing; {SHAPE}"
            )),
            None | Some(Value::Null) | Some(Value::String(_)) => Ok(String::new()),
            Some(other) => Err(format!(
                "invalid POST body: field \"{name}\" must be a string, got {}",
                kind(other)
            )),
        }
    };
    let verb_as_sent = match obj.get("verb") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => {
            return Err(format!(
                "invalid POST body: field \"verb\" is missing; {SHAPE}"
            ))
        }
        Some(other) => {
            return Err(format!(
                "invalid verb: field \"verb\" must be the string \"add\" or \"delete\", got {}",
                kind(other)
            ))
        }
    };
    let verb = if verb_as_sent.eq_ignore_ascii_case("add") {
        "add"
    } else if verb_as_sent.eq_ignore_ascii_case("delete") {
        "remove"
    } else {
        let shown: String = verb_as_sent.chars().take(40).collect();
        return Err(format!(
            "invalid verb \"{}\"; must be add or delete (field \"verb\")",
            shown.escape_default()
        ));
    };
    let api_token = text("apiToken", true)?;
    let environment_id = text("environmentId", true)?;
    let segment = text("segment", true)?;
    let workspace_id = text("workspaceId", false)?;
    let traffic_type_id = text("trafficTypeId", false)?;
    let keys = match obj.get("mpids") {
        Some(Value::Array(items)) => {
            if items.len() > max_keys {
                return Err(format!(
                    "invalid POST body: field \"mpids\" holds {} keys, at most {max_keys} are accepted per request",
                    items.len()
                ));
            }
            let mut keys = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if !s.trim().is_empty() => keys.push(s.trim().to_string()),
                    // mParticle ids are 64-bit integers; JSON numbers are
                    // taken as their decimal text (as the batch server did)
                    Value::Number(n) if n.is_i64() || n.is_u64() => keys.push(n.to_string()),
                    Value::String(_) => {
                        return Err(format!("invalid POST body: field \"mpids[{i}]\" is empty"))
                    }
                    other => {
                        return Err(format!(
                            "invalid POST body: field \"mpids[{i}]\" must be a string or an integer, got {}",
                            kind(other)
                        ))
                    }
                }
            }
            keys
        }
        None | Some(Value::Null) => {
            return Err(format!(
                "invalid POST body: field \"mpids\" is missing; {SHAPE}"
            ))
        }
        Some(other) => {
            return Err(format!(
                "invalid POST body: field \"mpids\" must be an array of keys, got {}",
                kind(other)
            ))
        }
    };
    Ok(Audience {
        tenant: TenantRequest {
            environment_id,
            workspace_id,
            traffic_type_id,
            api_token,
        },
        segment,
        verb_as_sent,
        verb,
        keys,
    })
}

/// The shared secret as the lambda sends it (the raw value), or as
/// `Bearer <secret>`.
pub fn authorized(header: Option<&HeaderValue>, secret_digest: &[u8; 32]) -> bool {
    use sha2::{Digest, Sha256};
    let Some(h) = header else { return false };
    let raw = h.as_bytes();
    let bearer = raw
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
        .map(|_| &raw[7..]);
    let raw_ok = Sha256::digest(raw).ct_eq(secret_digest);
    let bearer_ok = Sha256::digest(bearer.unwrap_or(raw)).ct_eq(secret_digest)
        & (bearer.is_some() as u8).into();
    bool::from(raw_ok | bearer_ok)
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// Routes one request; never fails (errors are answers).
pub async fn handle(req: Request<Incoming>, st: Arc<State>) -> Result<Resp, Infallible> {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let (label, resp) = match path.as_str() {
        "/audiences" | "/audiences/" => ("/audiences", audiences(req, &st).await),
        "/ping" if get => ("/ping", text(StatusCode::OK, "pong")),
        "/uptime" if get => (
            "/uptime",
            text(StatusCode::OK, uptime_text(st.metrics.uptime())),
        ),
        "/metrics" if get => {
            let mut r = text(StatusCode::OK, st.metrics.render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            ("/metrics", r)
        }
        "/ping" | "/uptime" | "/metrics" => (
            if path == "/ping" {
                "/ping"
            } else if path == "/uptime" {
                "/uptime"
            } else {
                "/metrics"
            },
            method_not_allowed("GET, HEAD"),
        ),
        _ => (
            "other",
            text(
                StatusCode::NOT_FOUND,
                "not found; cdpctl serve answers POST /audiences, GET /ping, GET /uptime and GET /metrics",
            ),
        ),
    };
    st.metrics
        .request(label, resp.status().as_u16(), started.elapsed());
    Ok(resp)
}

async fn audiences(req: Request<Incoming>, st: &State) -> Resp {
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    if !authorized(req.headers().get(AUTHORIZATION), &st.secret_digest) {
        return text(StatusCode::UNAUTHORIZED, "auth token doesn't match");
    }
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body larger than {} bytes (serve.max_body_bytes)",
                st.max_body_bytes
            ),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.max_body_bytes as u64) {
        return too_large();
    }
    let body = match Limited::new(req.into_body(), st.max_body_bytes)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("invalid POST body: could not read it ({e})"),
            )
        }
    };
    let a = match parse_audience(&body, st.max_keys_per_request) {
        Ok(a) => a,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    let (tx, rx) = oneshot::channel();
    let job = Job {
        tenant: a.tenant,
        segment: a.segment,
        verb: a.verb,
        keys: a.keys,
        reply: tx,
    };
    if st.jobs.send(Msg::Job(job)).await.is_err() {
        return shutting_down();
    }
    match rx.await {
        Ok(Ok(())) => text(StatusCode::OK, format!("MPIDs {}", a.verb_as_sent)),
        Ok(Err(WriteError::Unavailable(why))) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{why}: nothing was queued; retry the request"),
        ),
        Ok(Err(WriteError::Failed(why))) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request could not be queued: {why}; nothing was queued"),
        ),
        Err(_) => shutting_down(),
    }
}

fn shutting_down() -> Resp {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "cdpctl serve is shutting down: nothing was queued; retry the request",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn lambda(verb: &str, mpids: serde_json::Value) -> Vec<u8> {
        body(serde_json::json!({
            "apiToken": "tok-123", "workspaceId": "ws", "environmentId": "env",
            "trafficTypeId": "tt", "verb": verb, "mpids": mpids, "segment": "syuki"
        }))
    }

    #[test]
    fn the_lambdas_body_parses() {
        let a = parse_audience(&lambda("add", serde_json::json!(["001", 42, -7])), 10).unwrap();
        assert_eq!(a.verb, "add");
        assert_eq!(a.keys, ["001", "42", "-7"]);
        assert_eq!(a.segment, "syuki");
        assert_eq!(a.tenant.environment_id, "env");
        let a = parse_audience(&lambda("DELETE", serde_json::json!(["1"])), 10).unwrap();
        assert_eq!((a.verb, a.verb_as_sent.as_str()), ("remove", "DELETE"));
        assert!(!format!("{a:?}").contains("tok-123"));
    }

    #[test]
    fn bad_bodies_name_the_field_and_never_the_token() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "malformed JSON"),
            (b"[1,2]".to_vec(), "instead of a JSON object"),
            (
                lambda("upsert", serde_json::json!(["1"])),
                "invalid verb \"upsert\"",
            ),
            (
                lambda("add", serde_json::json!("1")),
                "field \"mpids\" must be an array",
            ),
            (
                lambda("add", serde_json::json!(["1", {}])),
                "field \"mpids[1]\"",
            ),
            (
                lambda("add", serde_json::json!(["1", ""])),
                "field \"mpids[1]\" is empty",
            ),
            (
                lambda("add", serde_json::json!(["1", 1.5])),
                "field \"mpids[1]\"",
            ),
            (
                lambda("add", serde_json::json!(vec!["1"; 11])),
                "at most 10",
            ),
            (
                body(
                    serde_json::json!({"apiToken": "tok-123", "verb": "add", "mpids": [], "segment": "s"}),
                ),
                "field \"environmentId\" is missing",
            ),
            (
                body(
                    serde_json::json!({"apiToken": 5, "environmentId": "e", "verb": "add", "mpids": [], "segment": "s"}),
                ),
                "field \"apiToken\" must be a string",
            ),
            (
                body(
                    serde_json::json!({"apiToken": "tok-123", "environmentId": "e", "verb": "add", "mpids": []}),
                ),
                "field \"segment\" is missing",
            ),
        ];
        for (b, want) in cases {
            let e = parse_audience(&b, 10).unwrap_err();
            assert!(e.contains(want), "{e} (wanted {want})");
            assert!(!e.contains("tok-123"), "{e}");
        }
    }

    #[test]
    fn the_secret_matches_raw_or_as_bearer_only() {
        use sha2::{Digest, Sha256};
        let d: [u8; 32] = Sha256::digest(b"s3cret").into();
        let h = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(authorized(Some(&h("s3cret")), &d));
        assert!(authorized(Some(&h("Bearer s3cret")), &d));
        assert!(authorized(Some(&h("bearer s3cret")), &d));
        assert!(!authorized(Some(&h("s3cret ")), &d));
        assert!(!authorized(Some(&h("Bearer wrong")), &d));
        assert!(!authorized(Some(&h("Basic s3cret")), &d));
        assert!(!authorized(None, &d));
    }
}
