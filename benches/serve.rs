//! serve benchmark: CDPCTL_BENCH_SERVE_CLIENTS (default 64) concurrent
//! keep-alive clients, one key each, POST /audiences (the lambda's body,
//! alternating add/delete) to a `cdpctl serve` child process for
//! CDPCTL_BENCH_SERVE_SECONDS (default 20, after 2 s of warm-up), with its
//! in-process flusher delivering to a Split-shaped server on loopback.
//! Prints accepted (durable: answered 200 after COMMIT) requests/s, p50/p99
//! latency, the serve process's peak RSS and the group-commit sizes, then
//! checks that every accepted request was committed.
//!
//! Run: cargo bench --bench serve

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::split_api;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AUTH: &str = "bench-shared-secret";
const SECRET_KEY: &str = "3c0f5e2a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

struct ClientResult {
    ok: u64,
    failed: u64,
    latencies_us: Vec<u32>,
}

/// One keep-alive connection sending requests back to back.
async fn client(addr: String, key: String, warm_until: Instant, deadline: Instant) -> ClientResult {
    let mut sock = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connecting to serve");
    sock.set_nodelay(true).unwrap();
    let reqs: Vec<Vec<u8>> = ["add", "delete"]
        .iter()
        .map(|verb| {
            let body = json!({
                "apiToken": "bench-split-token", "workspaceId": "ws-bench", "environmentId": "env-bench",
                "trafficTypeId": "tt-mpid", "verb": verb, "mpids": [key], "segment": "sbench_audience"
            })
            .to_string();
            format!(
                "POST /audiences HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {AUTH}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();
    let mut res = ClientResult {
        ok: 0,
        failed: 0,
        latencies_us: Vec::with_capacity(1 << 16),
    };
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let mut i = 0usize;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        sock.write_all(&reqs[i % 2]).await.expect("sending");
        i += 1;
        buf.clear();
        let status = loop {
            let n = sock.read(&mut chunk).await.expect("reading");
            assert!(n > 0, "serve closed the connection");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(h) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= h + 4 + len {
                    break head[9..12].to_string();
                }
            }
        };
        if t0 < warm_until {
            continue;
        }
        if status == "200" {
            res.ok += 1;
            res.latencies_us.push(t0.elapsed().as_micros() as u32);
        } else {
            res.failed += 1;
        }
    }
    res
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let clients = env_u64("CDPCTL_BENCH_SERVE_CLIENTS", 64) as usize;
    let seconds = env_u64("CDPCTL_BENCH_SERVE_SECONDS", 20);
    let interval = env_u64("CDPCTL_BENCH_SERVE_FLUSH_SECONDS", 10);
    let t = common::TestDb::new().await;
    let split = split_api::Split::default();
    split
        .lock()
        .unwrap()
        .tokens
        .insert("env-bench".into(), "bench-split-token".into());
    let split_url = split_api::start(split.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(
        &dir,
        &json!({"postgresql": common::pg_block(&t.url), "segments": {"split": {"base_url": split_url}}}),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_cdpctl"))
        .env_remove("DATABASE_URL")
        .env("CDPCTL_SECRET_KEY", SECRET_KEY)
        .env("CDPCTL_SERVE_AUTH_TOKEN", AUTH)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--flush-interval", &format!("{interval}s")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting cdpctl serve");
    let pid = child.id();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("listening on http://")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("serve did not start: {line}"))
        .to_string();
    let log = std::thread::spawn(move || {
        let mut rest = String::new();
        for l in stderr.lines().map_while(Result::ok) {
            rest.push_str(&l);
            rest.push('\n');
        }
        rest
    });
    println!("serve (pid {pid}) on {addr}; {clients} clients for {seconds}s after 2s of warm-up; flushing every {interval}s");

    let start = Instant::now();
    let warm_until = start + Duration::from_secs(2);
    let deadline = warm_until + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            tokio::spawn(client(
                addr.clone(),
                format!("mpid-{i:04}"),
                warm_until,
                deadline,
            ))
        })
        .collect();
    let mut ok = 0u64;
    let mut failed = 0u64;
    let mut lat: Vec<u32> = Vec::new();
    for task in tasks {
        let r = task.await.unwrap();
        ok += r.ok;
        failed += r.failed;
        lat.extend(r.latencies_us);
    }
    let rss = peak_rss_mb(pid);
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let status = child.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "serve failed: {log}");
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));

    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let rate = ok as f64 / seconds as f64;
    let (p50, p99) = (pct(0.50), pct(0.99));

    // durability: what was acknowledged is queued or was flushed
    let c = t.client().await;
    let queued: i64 = c
        .query_one("SELECT count(*) FROM audience_data.segment_changes", &[])
        .await
        .unwrap()
        .get(0);
    let flushed: i64 = c
        .query_one(
            "SELECT coalesce(sum(requests), 0)::bigint FROM audience_data.segment_flushes",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let committed = summary["keys_queued"].as_i64().unwrap();
    assert_eq!(
        queued + flushed,
        committed,
        "every committed key is queued or flushed"
    );
    assert!(
        committed as u64 >= ok,
        "every accepted request was committed"
    );
    let calls = split.lock().unwrap().calls.len();

    let met = |b: bool| if b { "met" } else { "not met" };
    println!();
    println!("| measurement | result |");
    println!("|---|---|");
    println!("| clients (keep-alive, one key each, add/delete alternating) | {clients} |");
    println!("| measured for | {seconds} s (after 2 s warm-up) |");
    println!("| accepted requests (200 after COMMIT) | {ok} ({failed} other answers) |");
    println!(
        "| **accepted requests/s** (target ≥ 10,000) | **{rate:.0}** ({}) |",
        met(rate >= 10_000.0)
    );
    println!("| latency p50 / p99 / max | {p50:.2} ms / **{p99:.2} ms** / {:.2} ms (p99 target < 50 ms: {}) |", pct(1.0), met(p99 < 50.0));
    println!("| peak RSS of the serve process | {rss:.1} MB |");
    println!(
        "| group commits (whole run) | {} for {} requests, {} per commit |",
        summary["commits"], summary["requests_committed"], summary["requests_per_commit"]
    );
    println!("| flushed to the Split-shaped server during the run | {flushed} queued requests in {calls} calls; {queued} still queued at exit |");
}
