//! The demo's serve step: start `cdpctl serve` in-process on a free loopback
//! port, POST one request exactly as the mparticle-audiences lambda does,
//! flush once to a Split-shaped receiver on loopback, and check that the key
//! arrived there with the tenant's token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::{ServeConfig, ServeOptions, Server};
use crate::db::Db;
use crate::output::Output;
use crate::segments::tenants::SecretKey;
use crate::segments::{FlushOptions, Flusher, SegmentsConfig, StaticResolver};

const ENVIRONMENT: &str = "demo-environment";
const SEGMENT: &str = "sdemo_audience";

type Calls = Arc<Mutex<Vec<(String, usize)>>>;

/// A Split-shaped receiver: records `PUT …/uploadKeys|removeKeys` calls made
/// with the right bearer token and answers 200 (401 otherwise).
async fn receiver(token: String) -> Result<(String, Calls, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback port for the Split-shaped receiver")?;
    let url = format!("http://{}", listener.local_addr()?);
    let calls: Calls = Arc::default();
    let c = calls.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let calls = c.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let calls = calls.clone();
                    let token = token.clone();
                    async move {
                        let ok = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            == Some(format!("Bearer {token}").as_str());
                        let what = format!("{} {}", req.method(), req.uri());
                        let body = req.into_body().collect().await?.to_bytes();
                        let keys = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v["keys"].as_array().map(Vec::len))
                            .unwrap_or(0);
                        let status = if ok {
                            calls.lock().expect("calls").push((what, keys));
                            200
                        } else {
                            401
                        };
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                        Ok::<_, hyper::Error>(r)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((url, calls, task))
}

fn random_hex(bytes: usize) -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = vec![0u8; bytes];
    SystemRandom::new().fill(&mut b).expect("system random");
    hex::encode(b)
}

/// Runs the step; `Ok` with `{"skipped": reason}` when loopback networking
/// is not available.
pub async fn run(db: &Db, out: &Output) -> Result<Value> {
    let split_token = format!("demo-split-token-{}", random_hex(4));
    let (base_url, calls, receiver_task) = match receiver(split_token.clone()).await {
        Ok(r) => r,
        Err(e) => return Ok(json!({"skipped": format!("{e:#}")})),
    };
    let res = exercise(db, out, &base_url, &split_token, &calls).await;
    receiver_task.abort();
    res
}

async fn exercise(
    db: &Db,
    out: &Output,
    base_url: &str,
    split_token: &str,
    calls: &Calls,
) -> Result<Value> {
    let (key, key_note) = match SecretKey::from_env() {
        Ok(k) => (k, "CDPCTL_SECRET_KEY"),
        Err(_) => (
            SecretKey::parse(&random_hex(32))?,
            "a key made up for this demo (CDPCTL_SECRET_KEY is not set)",
        ),
    };
    let secret = random_hex(16);
    let mut segments = SegmentsConfig::from_config(&db.config)?;
    segments.split.base_url = base_url.to_string();
    let opts = ServeOptions {
        serve: ServeConfig::from_config(&db.config)?,
        segments: segments.clone(),
        listen: "127.0.0.1:0".into(),
        flush_interval: None,
        secret: secret.clone(),
        key: key.clone(),
        out: Output {
            quiet: true,
            ..*out
        },
    };
    let mut opts = opts;
    // the demo talks plain HTTP on loopback whatever the config says
    opts.serve.tls_cert = None;
    opts.serve.tls_key = None;
    let server = match Server::bind(&db.config, &db.params, opts).await {
        Ok(s) => s,
        Err(e) => return Ok(json!({"skipped": format!("{e:#}")})),
    };
    let url = format!("{}/audiences", server.url());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
        "the demo's end"
    }));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    let body = json!({
        "apiToken": split_token,
        "workspaceId": "demo-workspace",
        "environmentId": ENVIRONMENT,
        "trafficTypeId": "demo-traffic-type",
        "verb": "add",
        "mpids": ["8016154462318372345"],
        "segment": SEGMENT,
    });
    let posted = http
        .post(&url)
        .header("Authorization", &secret)
        .json(&body)
        .send()
        .await;
    let _ = stop_tx.send(());
    let summary = running
        .await
        .map_err(|e| anyhow!("the demo server task: {e}"))??;
    let resp = posted.with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let answer = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("demo: POST /audiences answered {status}: {answer}");
    }
    let resolver = StaticResolver::default();
    let mut flusher = Flusher::new(segments.clone(), &resolver).with_secret_key(key);
    let report = flusher
        .run(
            db,
            &FlushOptions {
                server_fed_only: true,
                ..Default::default()
            },
            None,
        )
        .await?;
    if let Some(e) = report.failures.values().next() {
        bail!("demo: flushing the served request failed: {e}");
    }
    let delivered: Vec<String> = calls
        .lock()
        .expect("calls")
        .iter()
        .map(|(what, n)| format!("{what} ({n} key)"))
        .collect();
    if delivered.is_empty() {
        bail!("demo: the Split-shaped receiver got no call");
    }
    Ok(json!({
        "answer": format!("{} {answer}", status.as_u16()),
        "commits": summary.commits,
        "flushed": report.read,
        "delivered": delivered,
        "sealed_with": key_note,
    }))
}
