//! `cdpctl serve` as the mparticle-audiences lambda sees it: the real binary
//! on a free port, a real PostgreSQL, a Split-shaped server on loopback that
//! checks each environment's token and can answer 429/500 or hang.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::split_api::{self, Fault, Split};
use common::{pg_block, write_config, TestDb};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const SECRET_KEY: &str = "6a1f0e9c2b7d4a3e8f5c1b0a9d8e7f6c5b4a3928171605f4e3d2c1b0a9f8e7d6";
const AUTH: &str = "lambda-shared-secret-3f9a";

/// A running `cdpctl serve` child process; stdout and stderr are collected.
struct Serve {
    child: Child,
    base: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    stream: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
    tx: Option<std::sync::mpsc::Sender<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if let Some(tx) = &tx {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split(' ').next().unwrap_or("").to_string());
                }
            }
            let mut s = into.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    })
}

impl Serve {
    fn start(t: &TestDb, config: &Path, args: &[&str]) -> Serve {
        Self::start_with(
            t,
            config,
            args,
            &[
                ("CDPCTL_SECRET_KEY", SECRET_KEY),
                ("CDPCTL_SERVE_AUTH_TOKEN", AUTH),
            ],
        )
    }

    fn start_with(t: &TestDb, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut cmd = t.cli();
        cmd.env_remove("CDPCTL_SECRET_KEY")
            .env_remove("CDPCTL_SERVE_AUTH_TOKEN")
            .args([
                "--config",
                config.to_str().unwrap(),
                "--format",
                "json",
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting cdpctl serve");
        let (stdout, stderr) = (
            Arc::new(Mutex::new(String::new())),
            Arc::new(Mutex::new(String::new())),
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone(), None),
            collect(child.stderr.take().unwrap(), stderr.clone(), Some(tx)),
        ];
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("serve did not start: {}", stderr.lock().unwrap()));
        Serve {
            child,
            base,
            stdout,
            stderr,
            readers,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit code and everything printed.
    fn terminate(mut self) -> (i32, String, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        (status.code().unwrap_or(-1), out, err)
    }

    fn printed(&self) -> String {
        format!(
            "{}{}",
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file: the test database, the Split-shaped server with short
/// timeouts and backoffs, small chunks.
fn config(t: &TestDb, dir: &tempfile::TempDir, split_url: &str, serve: Value) -> PathBuf {
    write_config(
        dir,
        &json!({
            "postgresql": pg_block(&t.url),
            "segments": {"split": {
                "base_url": split_url,
                "max_keys_per_call": 7,
                "timeout_ms": 400,
                "backoff_ms": 20,
                "max_retries": 6,
                "max_rate_limit_wait_seconds": 2
            }},
            "serve": serve
        }),
    )
}

fn body(env: &str, token: &str, verb: &str, mpids: &[&str], segment: &str) -> Value {
    json!({
        "apiToken": token, "workspaceId": "ws-1", "environmentId": env,
        "trafficTypeId": "tt-mpid", "verb": verb, "mpids": mpids, "segment": segment
    })
}

async fn post(http: &reqwest::Client, s: &Serve, auth: &str, b: &Value) -> (u16, String) {
    let r = http
        .post(s.url("/audiences"))
        .header("Authorization", auth)
        .json(b)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// POSTs with the right secret and expects `200 MPIDs <verb>`.
async fn accepted(http: &reqwest::Client, s: &Serve, b: &Value) {
    let (status, text) = post(http, s, AUTH, b).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, format!("MPIDs {}", b["verb"].as_str().unwrap()));
}

/// Waits (at most 30 s) until `done` holds.
async fn wait_for(s: &Serve, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "gave up waiting; serve printed:\n{}",
            s.printed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn queued(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT count(*) FROM audience_data.segment_changes", &[])
        .await
        .unwrap()
        .get(0)
}

/// The keys of the server-fed queue, in queue order.
async fn queued_keys(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT key FROM audience_data.segment_changes WHERE tenant_id IS NOT NULL ORDER BY id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn wait_until_drained(c: &tokio_postgres::Client, s: &Serve, limit: Duration) {
    let started = Instant::now();
    while queued(c).await > 0 {
        assert!(
            started.elapsed() < limit,
            "the queue did not drain within {limit:?}; serve printed:\n{}",
            s.printed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A test database, a client on it, a Split-shaped server accepting
/// `tokens` (environment, token) and a config file pointing at both.
struct Fixture {
    t: TestDb,
    c: tokio_postgres::Client,
    split: Split,
    cfg: PathBuf,
    _dir: tempfile::TempDir,
}

async fn fixture(tokens: &[(&str, &str)], serve: Value) -> Fixture {
    let t = TestDb::new().await;
    let c = t.client().await;
    let split = split_with(tokens);
    let url = split_api::start(split.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&t, &dir, &url, serve);
    Fixture {
        t,
        c,
        split,
        cfg,
        _dir: dir,
    }
}

fn split_with(tokens: &[(&str, &str)]) -> Split {
    let s = Split::default();
    {
        let mut st = s.lock().unwrap();
        for (env, tok) in tokens {
            st.tokens.insert(env.to_string(), tok.to_string());
        }
    }
    s
}

/// (tenant index, segment, key)
type KeyOf = (usize, &'static str, String);

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_clients_end_with_the_last_action_per_key_through_faults() {
    let tenants = [("env-a", "tok-a-7c1e"), ("env-b", "tok-b-90d2")];
    let Fixture {
        t,
        c,
        split,
        cfg,
        _dir,
    } = fixture(&tenants, json!({})).await;
    {
        let mut s = split.lock().unwrap();
        // keys already in Split before the run
        s.segments.insert(
            ("env-a".into(), "s_fans".into()),
            ["k0", "k1", "k2"].iter().map(|k| k.to_string()).collect(),
        );
        s.faults.extend([
            Fault::RateLimited("1"),
            Fault::ServerError,
            Fault::Hang(Duration::from_millis(900)),
            Fault::ServerError,
            Fault::RateLimited("0.3"),
            Fault::Hang(Duration::from_millis(700)),
        ]);
    }
    let serve = Serve::start(&t, &cfg, &["--flush-interval", "150ms"]);

    // every key gets a random sequence of actions; concurrent clients take
    // turns, but a key's next action is sent only once its previous one was
    // acknowledged, so "last action" is well defined
    let mut rng = SmallRng::seed_from_u64(14);
    let mut plan: Vec<(KeyOf, Vec<&str>)> = Vec::new();
    for i in 0..150 {
        let tenant = rng.gen_range(0..2);
        let segment = ["s_fans", "s_vip", "s_churn"][rng.gen_range(0..3)];
        let key = if tenant == 0 && segment == "s_fans" && i < 3 {
            format!("k{i}")
        } else {
            format!("mpid-{i}")
        };
        let n = rng.gen_range(1..7);
        let actions = (0..n)
            .map(|_| if rng.gen_bool(0.55) { "add" } else { "delete" })
            .collect();
        plan.push(((tenant, segment, key), actions));
    }
    let mut expected: HashMap<(String, String), HashSet<String>> = HashMap::new();
    expected.insert(
        ("env-a".into(), "s_fans".into()),
        ["k0", "k1", "k2"].iter().map(|k| k.to_string()).collect(),
    );
    for ((tenant, segment, key), actions) in &plan {
        let set = expected
            .entry((tenants[*tenant].0.to_string(), segment.to_string()))
            .or_default();
        if *actions.last().unwrap() == "add" {
            set.insert(key.clone());
        } else {
            set.remove(key);
        }
    }
    let total: usize = plan.iter().map(|(_, a)| a.len()).sum();
    // (next action index, in flight)
    let board = Arc::new(Mutex::new(vec![(0usize, false); plan.len()]));
    let plan = Arc::new(plan);
    let http = reqwest::Client::new();
    let base = serve.base.clone();
    let mut clients = Vec::new();
    for client in 0..16u64 {
        let (board, plan, http, base) = (board.clone(), plan.clone(), http.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(client);
            let mut sent = 0;
            loop {
                let pick = {
                    let mut b = board.lock().unwrap();
                    let open: Vec<usize> = (0..b.len())
                        .filter(|i| !b[*i].1 && b[*i].0 < plan[*i].1.len())
                        .collect();
                    if open.is_empty() {
                        if b.iter().enumerate().all(|(i, e)| e.0 == plan[i].1.len()) {
                            return sent;
                        }
                        None
                    } else {
                        let i = open[rng.gen_range(0..open.len())];
                        b[i].1 = true;
                        Some(i)
                    }
                };
                let Some(i) = pick else {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                };
                let ((tenant, segment, key), actions) = &plan[i];
                let verb = actions[board.lock().unwrap()[i].0];
                let (env, tok) = tenants[*tenant];
                let r = http
                    .post(format!("{base}/audiences"))
                    .header("Authorization", AUTH)
                    .json(&body(env, tok, verb, &[key], segment))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                assert_eq!(r.text().await.unwrap(), format!("MPIDs {verb}"));
                sent += 1;
                let mut b = board.lock().unwrap();
                b[i].0 += 1;
                b[i].1 = false;
            }
        }));
    }
    let mut sent = 0;
    for cl in clients {
        sent += cl.await.unwrap();
    }
    assert_eq!(sent, total);
    wait_until_drained(&c, &serve, Duration::from_secs(90)).await;
    let (code, stdout, stderr) = serve.terminate();
    assert_eq!(code, 0, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(summary["keys_queued"], total);
    assert_eq!(summary["flushed_requests"], total);
    let s = split.lock().unwrap();
    assert_eq!(s.bad_auth, 0, "every environment got its own token");
    assert!(s.bad_calls.is_empty(), "{:?}", s.bad_calls);
    assert!(
        s.rate_limited == 2 && s.server_errors == 2 && s.hangs == 2,
        "the faults were met"
    );
    assert!(
        s.calls.iter().all(|c| c.3 <= 7),
        "chunks of at most max_keys_per_call"
    );
    for ((env, segment), keys) in &expected {
        assert_eq!(&s.keys(env, segment), keys, "{env}/{segment}");
    }
    assert!(stderr.contains("retr"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_load_loses_nothing_acknowledged() {
    let Fixture {
        t,
        c,
        split,
        cfg,
        _dir,
    } = fixture(&[("env-k", "tok-k-5511")], json!({})).await;
    let mut serve = Serve::start(&t, &cfg, &["--no-flush"]);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let base = serve.base.clone();
    let mut clients = Vec::new();
    for client in 0..12 {
        let (acked, sent, base) = (acked.clone(), sent.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            for i in 0.. {
                let key = format!("c{client}-{i}");
                sent.lock().unwrap().push(key.clone());
                let r = http
                    .post(format!("{base}/audiences"))
                    .header("Authorization", AUTH)
                    .json(&body("env-k", "tok-k-5511", "add", &[&key], "s_killed"))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push(key),
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    serve.kill9();
    for cl in clients {
        cl.await.unwrap();
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let sent: HashSet<String> = sent.lock().unwrap().iter().cloned().collect();
    assert!(
        acked.len() > 50,
        "load was running: {} acknowledged",
        acked.len()
    );
    let stored: HashSet<String> = queued_keys(&c).await.into_iter().collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged keys lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(stored.is_subset(&sent));

    // the restarted server delivers them all
    let serve = Serve::start(&t, &cfg, &["--flush-interval", "100ms"]);
    wait_until_drained(&c, &serve, Duration::from_secs(60)).await;
    let http = reqwest::Client::new();
    assert_eq!(
        post(
            &http,
            &serve,
            AUTH,
            &body("env-k", "tok-k-5511", "add", &["after"], "s_killed")
        )
        .await
        .0,
        200
    );
    let (code, _, err) = serve.terminate();
    assert_eq!(code, 0, "{err}");
    let got = split.lock().unwrap().keys("env-k", "s_killed");
    assert!(
        acked.is_subset(&got),
        "every acknowledged key reached Split"
    );
    assert!(got.difference(&sent).all(|k| k == "after"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_answered_like_the_batch_server_and_queue_nothing() {
    let Fixture {
        t, c, cfg, _dir, ..
    } = fixture(&[], json!({"max_body_bytes": 4096})).await;
    let serve = Serve::start(&t, &cfg, &["--no-flush"]);
    let http = reqwest::Client::new();
    let good = body("env-x", "tok-x-2b", "add", &["1"], "s_x");

    assert_eq!(
        post(&http, &serve, "wrong", &good).await,
        (401, "auth token doesn't match".into())
    );
    let r = http
        .post(serve.url("/audiences"))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no Authorization header");
    let r = http
        .get(serve.url("/audiences"))
        .header("Authorization", AUTH)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let (s, m) = post(
        &http,
        &serve,
        AUTH,
        &body("env-x", "tok-x-2b", "upsert", &["1"], "s_x"),
    )
    .await;
    assert_eq!(s, 400);
    assert!(m.contains("invalid verb \"upsert\""), "{m}");
    let r = http
        .post(serve.url("/audiences"))
        .header("Authorization", AUTH)
        .body("{\"apiToken\": \"tok-x-2b\", \"verb\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let m = r.text().await.unwrap();
    assert!(
        m.contains("malformed JSON") && !m.contains("tok-x-2b"),
        "{m}"
    );
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("environmentId");
    let (s, m) = post(&http, &serve, AUTH, &missing).await;
    assert_eq!(s, 400);
    assert!(m.contains("\"environmentId\" is missing"), "{m}");
    let mut bad_key = good.clone();
    bad_key["mpids"] = json!(["1", {"id": 2}]);
    let (s, m) = post(&http, &serve, AUTH, &bad_key).await;
    assert_eq!(s, 400);
    assert!(m.contains("\"mpids[1]\""), "{m}");
    // huge bodies: declared and chunked
    let mut huge = good.clone();
    huge["mpids"] = json!(vec!["x".repeat(100); 200]);
    let (s, m) = post(&http, &serve, AUTH, &huge).await;
    assert_eq!(s, 413);
    assert!(m.contains("4096"), "{m}");
    {
        // chunked, no length announced: cut off at the limit
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = serve.base.trim_start_matches("http://").to_string();
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut req = format!("POST /audiences HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\nTransfer-Encoding: chunked\r\n\r\n");
        for _ in 0..3 {
            req.push_str(&format!("bb8\r\n{}\r\n", " ".repeat(3000)));
        }
        req.push_str("0\r\n\r\n");
        sock.write_all(req.as_bytes()).await.unwrap();
        let mut head = vec![0u8; 12];
        sock.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 413");
    }
    assert_eq!(queued(&c).await, 0, "nothing refused was queued");

    // the maintenance endpoints
    let get = |p: &str| http.get(serve.url(p)).send();
    let r = get("/ping").await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "pong".to_string())
    );
    let up = get("/uptime").await.unwrap().text().await.unwrap();
    assert!(
        regex::Regex::new(r"^\d+d:\d+h:\d+m:\d+s$")
            .unwrap()
            .is_match(&up),
        "{up}"
    );
    assert_eq!(get("/nope").await.unwrap().status(), 404);
    assert_eq!(
        http.post(serve.url("/ping")).send().await.unwrap().status(),
        405
    );
    // and a good one, in the lambda's own shape, with Bearer too
    assert_eq!(
        post(&http, &serve, AUTH, &good).await,
        (200, "MPIDs add".into())
    );
    assert_eq!(
        post(
            &http,
            &serve,
            &format!("Bearer {AUTH}"),
            &body("env-x", "tok-x-2b", "DELETE", &["1"], "s_x")
        )
        .await,
        (200, "MPIDs DELETE".into())
    );
    assert_eq!(queued(&c).await, 2);
    let m = get("/metrics").await.unwrap().text().await.unwrap();
    for line in [
        "cdpctl_serve_requests_total{path=\"/audiences\",status=\"200\"} 2",
        "cdpctl_serve_requests_total{path=\"/audiences\",status=\"401\"} 2",
        "cdpctl_serve_requests_total{path=\"/audiences\",status=\"413\"} 2",
        "cdpctl_serve_keys_queued_total 2",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
}

/// Every text form a value could leak in: serve's output, the tables, status.
async fn assert_nowhere(t: &TestDb, printed: &str, secrets: &[&str]) {
    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", "--dbname", &t.url])
        .output()
        .expect("pg_dump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).to_string();
    assert!(dump.contains("split_tenants"), "the dump holds the tenants");
    let status = common::run(t.cli().args(["--format", "json", "status"]));
    let status_table = common::run(t.cli().args(["status"]));
    for s in secrets {
        assert!(!printed.contains(s), "{s} printed by serve:\n{printed}");
        assert!(!dump.contains(s), "{s} readable in the database dump");
        let hex = hex::encode(s.as_bytes());
        assert!(
            !dump.contains(&hex),
            "{s} readable (as hex) in the database dump"
        );
        assert!(
            !status.stdout.contains(s) && !status_table.stdout.contains(s),
            "{s} in status"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_sealed_and_never_printed_and_status_shows_the_queue() {
    let good = "tok-good-Zq81xLw";
    let refused = "tok-refused-Pp02vKd";
    let Fixture {
        t,
        c,
        split,
        cfg,
        _dir,
    } = fixture(&[("env-good", good)], json!({})).await;
    let serve = Serve::start(&t, &cfg, &["--flush-interval", "100ms", "-v"]);
    let http = reqwest::Client::new();
    for i in 0..5 {
        let k = format!("k{i}");
        accepted(&http, &serve, &body("env-good", good, "add", &[&k], "s_ok")).await;
        // Split refuses this environment's token (401): its keys stay queued
        accepted(
            &http,
            &serve,
            &body("env-refused", refused, "add", &[&k], "s_no"),
        )
        .await;
    }
    wait_for(&serve, || {
        split.lock().unwrap().keys("env-good", "s_ok").len() == 5
    })
    .await;
    wait_for(&serve, || serve.printed().contains("HTTP 401")).await;
    let mut metrics = http
        .get(serve.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let status = common::run(t.cli().args(["--format", "json", "status"])).json();
    let line = &status["details"]["segments"]["server-fed: env env-refused segment s_no"];
    assert!(line.as_str().unwrap().starts_with("5 queued"), "{status}");
    assert_eq!(
        status["details"]["segments"]["serve tenants (Split environments)"],
        2
    );
    // the sealed token is stored once per tenant
    let n: i64 = c
        .query_one("SELECT count(*) FROM audience_data.split_tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // a rotated token arrives with the next request and delivers the backlog
    let rotated = "tok-rotated-Hh73qWe";
    split
        .lock()
        .unwrap()
        .tokens
        .insert("env-refused".into(), rotated.into());
    accepted(
        &http,
        &serve,
        &body("env-refused", rotated, "add", &["k5"], "s_no"),
    )
    .await;
    wait_for(&serve, || {
        split.lock().unwrap().keys("env-refused", "s_no").len() == 6
    })
    .await;
    wait_until_drained(&c, &serve, Duration::from_secs(30)).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM audience_data.split_tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "the tenant row was updated, not duplicated");
    tokio::time::sleep(Duration::from_millis(300)).await;
    metrics.push_str(
        &http
            .get(serve.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(metrics.contains("cdpctl_serve_queue_depth 0"), "{metrics}");
    let (code, out, err) = serve.terminate();
    assert_eq!(code, 0);
    assert!(err.contains("refused it with HTTP 401"), "{err}");
    assert_nowhere(
        &t,
        &format!("{out}{err}{metrics}"),
        &[good, refused, rotated, SECRET_KEY, AUTH],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_keys_nothing_is_accepted_or_delivered_and_nothing_is_dropped() {
    let Fixture {
        t,
        c,
        split,
        cfg,
        _dir,
    } = fixture(&[("env-s", "tok-s-44")], json!({})).await;
    let cfg_s = cfg.to_str().unwrap();

    // serve refuses to start without either secret
    for (env, missing) in [
        (
            vec![("CDPCTL_SERVE_AUTH_TOKEN", AUTH)],
            "CDPCTL_SECRET_KEY is not set",
        ),
        (
            vec![("CDPCTL_SECRET_KEY", SECRET_KEY)],
            "CDPCTL_SERVE_AUTH_TOKEN is not set",
        ),
        (
            vec![
                ("CDPCTL_SECRET_KEY", "not-a-key"),
                ("CDPCTL_SERVE_AUTH_TOKEN", AUTH),
            ],
            "neither 64 hex digits nor base64",
        ),
    ] {
        let mut cmd = t.cli();
        cmd.env_remove("CDPCTL_SECRET_KEY")
            .env_remove("CDPCTL_SERVE_AUTH_TOKEN")
            .args(["--config", cfg_s, "serve", "--listen", "127.0.0.1:0"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = common::run(&mut cmd);
        assert_eq!(out.code, 1);
        assert!(out.stderr.contains(missing), "{}", out.stderr);
        assert!(!out.stderr.contains("not-a-key"));
    }

    // queue two keys, then flush with flush-segment: no key, another key, the key
    let serve = Serve::start(&t, &cfg, &["--no-flush"]);
    let http = reqwest::Client::new();
    assert_eq!(
        post(
            &http,
            &serve,
            AUTH,
            &body("env-s", "tok-s-44", "add", &["a", "b"], "s_keys")
        )
        .await
        .0,
        200
    );
    serve.terminate();
    // a plain audience row flushes meanwhile
    c.execute(
        "INSERT INTO audience_data.segment_changes (segment, key, verb) VALUES ('77', '5', 'add')",
        &[],
    )
    .await
    .unwrap();
    let flush = |key: Option<&str>| {
        let mut cmd = t.cli();
        cmd.env_remove("CDPCTL_SECRET_KEY")
            .args(["--config", cfg_s, "flush-segment"]);
        if let Some(k) = key {
            cmd.env("CDPCTL_SECRET_KEY", k);
        }
        common::run(&mut cmd)
    };
    let out = flush(None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("CDPCTL_SECRET_KEY is not set"),
        "{}",
        out.stderr
    );
    assert_eq!(
        queued(&c).await,
        2,
        "the server-fed rows stay, the audience row went"
    );
    let out = flush(Some(&SECRET_KEY.replace('6', "7")));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("sealed with another CDPCTL_SECRET_KEY"),
        "{}",
        out.stderr
    );
    assert_eq!(queued(&c).await, 2);
    let out = flush(Some(SECRET_KEY));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("s_keys (env env-s)"), "{}", out.stdout);
    assert_eq!(queued(&c).await, 0);
    let keys = split.lock().unwrap().keys("env-s", "s_keys");
    assert_eq!(keys, ["a", "b"].iter().map(|s| s.to_string()).collect());
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_unreachable_answers_503_and_recovers() {
    let Fixture {
        t, c, cfg, _dir, ..
    } = fixture(&[], json!({"write_timeout_ms": 3000})).await;
    let serve = Serve::start(&t, &cfg, &["--no-flush"]);
    let http = reqwest::Client::new();
    let b = |k: &str| body("env-p", "tok-p-1", "add", &[k], "s_p");
    assert_eq!(post(&http, &serve, AUTH, &b("before")).await.0, 200);
    let (admin, conn) = tokio_postgres::connect(&common::server_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let name = &t.name;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS false"
        ))
        .await
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[name],
        )
        .await
        .unwrap();
    let (s, m) = post(&http, &serve, AUTH, &b("during")).await;
    assert_eq!(s, 503, "{m}");
    assert!(m.contains("nothing was queued"), "{m}");
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS true"
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, m) = post(&http, &serve, AUTH, &b("after")).await;
    assert_eq!(s, 200, "{m}\n{}", serve.printed());
    let metrics = http
        .get(serve.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("status=\"503\"} 1"), "{metrics}");
    drop(c);
    let c = t.client().await;
    assert_eq!(queued_keys(&c).await, ["before", "after"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_answers_the_requests_in_flight_and_stops() {
    let Fixture {
        t, c, cfg, _dir, ..
    } = fixture(&[], json!({})).await;
    let serve = Serve::start(&t, &cfg, &["--no-flush"]);
    let base = serve.base.clone();
    let acked = Arc::new(Mutex::new(0usize));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (acked, base) = (acked.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0.. {
                let key = format!("t{client}-{i}");
                match http
                    .post(format!("{base}/audiences"))
                    .header("Authorization", AUTH)
                    .json(&body("env-t", "tok-t", "add", &[&key], "s_t"))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => *acked.lock().unwrap() += 1,
                    Ok(r) => assert_eq!(r.status(), 503, "only 200 or shutting down"),
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (code, out, err) = serve.terminate();
    for cl in clients {
        cl.await.unwrap();
    }
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("SIGTERM received"), "{err}");
    let summary: Value = serde_json::from_str(&out).unwrap();
    let acked = *acked.lock().unwrap() as i64;
    assert!(acked > 20);
    // every acknowledged request is queued; the summary counts what committed
    let q = queued(&c).await;
    assert!(q >= acked, "{q} queued, {acked} acknowledged");
    assert_eq!(summary["keys_queued"], q);
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let gen = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if !gen.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: openssl cannot make a test certificate");
        return;
    }
    let Fixture { t, cfg, _dir, .. } =
        fixture(&[], json!({"tls_cert": cert, "tls_key": key})).await;
    let serve = Serve::start(&t, &cfg, &["--no-flush"]);
    assert!(serve.base.starts_with("https://"), "{}", serve.base);
    // self-signed, and the lambda does not verify it either (rejectUnauthorized: false)
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    assert_eq!(
        post(
            &http,
            &serve,
            AUTH,
            &body("env-h", "tok-h", "add", &["1"], "s_h")
        )
        .await,
        (200, "MPIDs add".into())
    );
    let plain = reqwest::Client::new()
        .get(serve.base.replace("https://", "http://") + "/ping")
        .send()
        .await;
    assert!(
        plain.is_err() || plain.unwrap().status() != 200,
        "plain HTTP is not served on the TLS port"
    );
}

#[test]
fn the_example_config_serve_section_parses() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cdpctl.json"))
            .unwrap();
    let cfg = cdpctl::config::Config::from_json(&text, "examples/cdpctl.json").unwrap();
    assert_eq!(
        cdpctl::serve::ServeConfig::from_config(&cfg).unwrap(),
        cdpctl::serve::ServeConfig::default()
    );
    let seg = cdpctl::segments::SegmentsConfig::from_config(&cfg).unwrap();
    assert_eq!(seg.split.base_url, "https://api.split.io");
    assert_eq!(seg.split.comment, "cdpctl serve");
}
