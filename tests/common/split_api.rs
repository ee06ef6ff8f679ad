//! A Split-shaped HTTP server on loopback for `serve` tests and benchmarks:
//! `PUT /internal/api/v2/segments/{environment}/{segment}/uploadKeys?replace=false`
//! and `…/removeKeys` with `{"keys": [...]}`, the bearer token checked per
//! environment, and scripted faults (429 with reset headers, 500, a hang
//! longer than the client's timeout).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// 429 with `X-RateLimit-Reset-Seconds-Org: <secs>`; nothing applied.
    RateLimited(&'static str),
    /// 500; nothing applied.
    ServerError,
    /// Applied, but answered only after this long (past the client's timeout).
    Hang(Duration),
}

#[derive(Default)]
pub struct SplitState {
    /// The API token each environment accepts.
    pub tokens: HashMap<String, String>,
    /// Keys per (environment, segment).
    pub segments: HashMap<(String, String), HashSet<String>>,
    /// Accepted calls: (environment, segment, operation, keys).
    pub calls: Vec<(String, String, String, usize)>,
    /// Faults for the next calls, in order.
    pub faults: VecDeque<Fault>,
    pub rate_limited: usize,
    pub server_errors: usize,
    pub hangs: usize,
    /// Calls with a missing or wrong bearer token (answered 401).
    pub bad_auth: usize,
    /// Calls that broke the API's rules (answered 400): bad path, query,
    /// body or more than 10,000 keys.
    pub bad_calls: Vec<String>,
}

pub type Split = Arc<Mutex<SplitState>>;

impl SplitState {
    pub fn keys(&self, env: &str, segment: &str) -> HashSet<String> {
        self.segments
            .get(&(env.to_string(), segment.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

fn answer(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Split,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req.into_body().collect().await?.to_bytes();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let bad = |why: String| {
        state.lock().unwrap().bad_calls.push(why.clone());
        Ok(answer(400, &why))
    };
    if method != hyper::Method::PUT
        || parts.len() != 7
        || parts[..4] != ["internal", "api", "v2", "segments"]
    {
        return bad(format!("{method} {path}: not a segment call"));
    }
    let (env, segment, op) = (parts[4].to_string(), parts[5].to_string(), parts[6]);
    match (op, query.as_str()) {
        ("uploadKeys", "replace=false") | ("removeKeys", "") | ("removeKeys", "replace=false") => {}
        _ => return bad(format!("{op}?{query}: unexpected operation or query")),
    }
    let keys: Vec<String> = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => match v["keys"].as_array() {
            Some(a) if a.iter().all(|k| k.is_string()) => {
                a.iter().map(|k| k.as_str().unwrap().to_string()).collect()
            }
            _ => return bad(format!("{path}: body without a keys array of strings")),
        },
        Err(e) => return bad(format!("{path}: body is not JSON: {e}")),
    };
    if keys.is_empty() || keys.len() > 10_000 {
        return bad(format!("{path}: {} keys", keys.len()));
    }
    let fault = {
        let mut s = state.lock().unwrap();
        let expected = s.tokens.get(&env).map(|t| format!("Bearer {t}"));
        if expected.as_deref() != Some(auth.as_str()) {
            s.bad_auth += 1;
            return Ok(answer(401, "{\"code\":401,\"message\":\"unauthorized\"}"));
        }
        s.faults.pop_front()
    };
    let apply = |state: &Split| {
        let mut s = state.lock().unwrap();
        let set = s
            .segments
            .entry((env.clone(), segment.clone()))
            .or_default();
        if op == "uploadKeys" {
            set.extend(keys.iter().cloned());
        } else {
            for k in &keys {
                set.remove(k);
            }
        }
        s.calls
            .push((env.clone(), segment.clone(), op.to_string(), keys.len()));
    };
    match fault {
        None => {
            apply(&state);
            Ok(answer(200, ""))
        }
        Some(Fault::RateLimited(secs)) => {
            state.lock().unwrap().rate_limited += 1;
            let mut r = answer(429, "{\"message\":\"too many requests\"}");
            r.headers_mut()
                .insert("X-RateLimit-Reset-Seconds-Org", secs.parse().unwrap());
            r.headers_mut()
                .insert("X-RateLimit-Reset-Seconds-IP", "0".parse().unwrap());
            Ok(r)
        }
        Some(Fault::ServerError) => {
            state.lock().unwrap().server_errors += 1;
            Ok(answer(500, "{\"message\":\"oops\"}"))
        }
        Some(Fault::Hang(d)) => {
            state.lock().unwrap().hangs += 1;
            apply(&state);
            tokio::time::sleep(d).await;
            Ok(answer(200, ""))
        }
    }
}

/// Starts the server; returns its base URL.
pub async fn start(state: Split) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(req, state.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    url
}
