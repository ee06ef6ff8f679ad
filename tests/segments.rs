//! flush-segment: coalescing against the sequential oracle, concurrent
//! flushers, a killed flush, the REST destination under injected faults,
//! unresolved references, failures, --watch, status.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdpctl::segments::coalesce::{apply_one, ProgramKind, Request, Row, Verb};
use cdpctl::segments::{self, FlushOptions, SegmentsConfig, StaticResolver};
use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One queued request as producers insert it.
#[derive(Debug, Clone)]
struct Req {
    segment: String,
    key: String,
    key_kind: &'static str,
    verb: &'static str,
    program: Option<(&'static str, i64)>,
}

impl Req {
    fn new(segment: impl ToString, key: impl ToString, verb: &'static str) -> Self {
        Req {
            segment: segment.to_string(),
            key: key.to_string(),
            key_kind: "contact_id",
            verb,
            program: None,
        }
    }
    fn run(mut self, kind: &'static str, run: i64) -> Self {
        self.program = Some((kind, run));
        self
    }
    fn request(&self) -> Request {
        Request {
            verb: if self.verb == "add" {
                Verb::Add
            } else {
                Verb::Remove
            },
            program: self
                .program
                .map(|(k, r)| (ProgramKind::parse(k).unwrap(), r)),
        }
    }
}

async fn enqueue(c: &tokio_postgres::Client, reqs: &[Req]) {
    for chunk in reqs.chunks(50_000) {
        let seg: Vec<&str> = chunk.iter().map(|r| r.segment.as_str()).collect();
        let key: Vec<&str> = chunk.iter().map(|r| r.key.as_str()).collect();
        let kind: Vec<&str> = chunk.iter().map(|r| r.key_kind).collect();
        let verb: Vec<&str> = chunk.iter().map(|r| r.verb).collect();
        let pk: Vec<Option<&str>> = chunk.iter().map(|r| r.program.map(|p| p.0)).collect();
        let run: Vec<Option<i64>> = chunk.iter().map(|r| r.program.map(|p| p.1)).collect();
        c.execute(
            "INSERT INTO audience_data.segment_changes (segment, key, key_kind, verb, program_kind, run_id)
             SELECT s, k, kk, v, pk, r FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
                 WITH ORDINALITY AS u(s, k, kk, v, pk, r, n) ORDER BY n",
            &[&seg, &key, &kind, &verb, &pk, &run],
        )
        .await
        .unwrap();
    }
}

type State = BTreeMap<(i64, i64), (BTreeSet<i64>, BTreeSet<i64>)>;

async fn audience_state(c: &tokio_postgres::Client) -> State {
    c.query(
        "SELECT campaign_id, contact_id, rti_program_runs, ac_program_runs
           FROM audience_data.campaign_contact_id_master",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let rti: Vec<i64> = r.get(2);
        let ac: Vec<i64> = r.get(3);
        (
            (r.get(0), r.get(1)),
            (rti.into_iter().collect(), ac.into_iter().collect()),
        )
    })
    .collect()
}

async fn set_state(c: &tokio_postgres::Client, s: &State) {
    c.batch_execute("TRUNCATE audience_data.campaign_contact_id_master")
        .await
        .unwrap();
    for ((camp, contact), (rti, ac)) in s {
        let rti: Vec<i64> = rti.iter().copied().collect();
        let ac: Vec<i64> = ac.iter().copied().collect();
        c.execute(
            "INSERT INTO audience_data.campaign_contact_id_master VALUES ($1, $2, $3, $4)",
            &[camp, contact, &rti, &ac],
        )
        .await
        .unwrap();
    }
}

/// The oracle: every request applied one at a time, in order.
fn sequential(mut state: State, reqs: &[Req]) -> State {
    for r in reqs {
        let k = (r.segment.parse().unwrap(), r.key.parse().unwrap());
        let before: Row = state.remove(&k);
        if let Some(after) = apply_one(before, r.request()) {
            state.insert(k, after);
        }
    }
    state
}

async fn queued(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT count(*) FROM audience_data.segment_changes", &[])
        .await
        .unwrap()
        .get(0)
}

async fn flushed_requests(c: &tokio_postgres::Client) -> i64 {
    c.query_one(
        "SELECT coalesce(sum(requests), 0)::bigint FROM audience_data.segment_flushes",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Random requests over `segments` campaigns and `keys` contacts, with
/// program runs; many repeats of the same key.
fn random_requests(rng: &mut SmallRng, n: usize, segments: i64, keys: i64) -> Vec<Req> {
    (0..n)
        .map(|_| {
            let seg = 100 + rng.gen_range(0..segments);
            let key = rng.gen_range(1..=keys);
            let run = rng.gen_range(1..4);
            match rng.gen_range(0..10) {
                0..=3 => Req::new(seg, key, "add"),
                4..=5 => Req::new(seg, key, "remove"),
                6 => Req::new(seg, key, "add").run("rti", run),
                7 => Req::new(seg, key, "add").run("ac", run),
                8 => Req::new(seg, key, "remove").run("rti", run),
                _ => Req::new(seg, key, "remove").run("ac", run),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn flush_applies_the_rule_and_reports_per_segment() {
    let t = TestDb::new().await;
    let c = t.client().await;
    c.batch_execute(
        "INSERT INTO audience_data.campaign_contact_id_master VALUES
            (7, 1, '{10}', '{}'), (7, 2, '{}', '{}'), (8, 5, '{1,2}', '{3}')",
    )
    .await
    .unwrap();
    enqueue(
        &c,
        &[
            Req::new(7, 3, "add"),
            Req::new(7, 4, "add"),
            Req::new(7, 4, "remove"), // add then remove: ends removed
            Req::new(7, 1, "remove").run("rti", 10), // withdraws the run, keeps the contact
            Req::new(7, 2, "remove"),
            Req::new(8, 5, "add").run("ac", 9),
            Req::new(8, 5, "remove").run("rti", 1),
            Req::new(8, 6, "remove"),
            Req::new(8, 6, "add").run("rti", 4), // remove then add: ends added
        ],
    )
    .await;
    let out = run(t.cli().args(["--format", "json", "flush-segment"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["read"], 9);
    assert_eq!(j["remaining"], 0);
    let segs = j["segments"].as_array().unwrap();
    let s7 = segs.iter().find(|s| s["segment"] == "7").unwrap();
    assert_eq!(
        (&s7["read"], &s7["coalesced"], &s7["added"], &s7["removed"]),
        (&json!(5), &json!(1), &json!(1), &json!(3))
    );
    let s8 = segs.iter().find(|s| s["segment"] == "8").unwrap();
    assert_eq!(
        (&s8["read"], &s8["coalesced"], &s8["added"], &s8["removed"]),
        (&json!(4), &json!(2), &json!(2), &json!(0))
    );
    let st = audience_state(&c).await;
    let set = |v: &[i64]| v.iter().copied().collect::<BTreeSet<i64>>();
    let expected: State = [
        ((7, 1), (set(&[]), set(&[]))),
        ((7, 3), (set(&[]), set(&[]))),
        ((8, 5), (set(&[2]), set(&[3, 9]))),
        ((8, 6), (set(&[4]), set(&[]))),
    ]
    .into_iter()
    .collect();
    assert_eq!(st, expected);
    assert_eq!(queued(&c).await, 0);
    assert_eq!(flushed_requests(&c).await, 9);

    // human output and an empty queue
    let again = run(t.cli().args(["flush-segment"]));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("nothing to flush"),
        "{}",
        again.stdout
    );
}

#[test]
fn random_interleavings_in_random_batches_equal_the_requests_in_order() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = rt.block_on(TestDb::new());
    let db = rt.block_on(t.db());
    let c = rt.block_on(t.client());
    let cfg = SegmentsConfig::default();
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 24,
        ..Default::default()
    });
    runner
        .run(
            &(any::<u64>(), 1usize..400, 1i64..60, 1i64..4, 1i64..30),
            |(seed, n, batch, segments, keys)| {
                let mut rng = SmallRng::seed_from_u64(seed);
                let reqs = random_requests(&mut rng, n, segments, keys);
                // a random starting state too
                let initial: State = (0..rng.gen_range(0..10))
                    .map(|_| {
                        let k = (100 + rng.gen_range(0..segments), rng.gen_range(1..=keys));
                        let runs: BTreeSet<i64> = (0..rng.gen_range(0..3))
                            .map(|_| rng.gen_range(1..4))
                            .collect();
                        (k, (runs.clone(), runs))
                    })
                    .collect();
                let expected = sequential(initial.clone(), &reqs);
                let got = rt.block_on(async {
                    c.batch_execute(
                        "TRUNCATE audience_data.segment_changes, audience_data.segment_flushes",
                    )
                    .await
                    .unwrap();
                    set_state(&c, &initial).await;
                    enqueue(&c, &reqs).await;
                    let opts = FlushOptions {
                        batch_size: batch,
                        ..Default::default()
                    };
                    let report = segments::flush(&db, &cfg, &opts, &StaticResolver::default())
                        .await
                        .unwrap();
                    assert_eq!(report.read, n as u64);
                    assert_eq!(report.remaining, 0);
                    assert_eq!(flushed_requests(&c).await, n as i64);
                    audience_state(&c).await
                });
                prop_assert_eq!(got, expected);
                Ok(())
            },
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_flushers_apply_everything_once_in_order() {
    let t = TestDb::new().await;
    let c = t.client().await;
    let mut rng = SmallRng::seed_from_u64(7);
    // few keys, many requests each: flushers constantly meet on the same keys
    let reqs = random_requests(&mut rng, 12_000, 3, 40);
    let expected = sequential(State::new(), &reqs);
    enqueue(&c, &reqs).await;
    let mut tasks = Vec::new();
    for (i, batch) in [97i64, 211, 350, 500].into_iter().enumerate() {
        let app = t.app();
        tasks.push(tokio::spawn(async move {
            let db = app.connect("flush-segment").await.unwrap();
            let cfg = SegmentsConfig::default();
            let opts = FlushOptions {
                batch_size: batch,
                ..Default::default()
            };
            let r = segments::flush(&db, &cfg, &opts, &StaticResolver::default())
                .await
                .unwrap_or_else(|e| panic!("flusher {i}: {e:#}"));
            r.read
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    // a flusher may stop while another still holds rows; finish the rest
    let db = t.db().await;
    let rest = segments::flush(
        &db,
        &SegmentsConfig::default(),
        &FlushOptions::default(),
        &StaticResolver::default(),
    )
    .await
    .unwrap();
    total += rest.read;
    assert_eq!(total, reqs.len() as u64, "every request read exactly once");
    assert_eq!(flushed_requests(&c).await, reqs.len() as i64);
    assert_eq!(queued(&c).await, 0);
    assert_eq!(audience_state(&c).await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_flush_loses_nothing_and_applies_nothing_twice() {
    let t = TestDb::new().await;
    let c = t.client().await;
    let mut rng = SmallRng::seed_from_u64(11);
    let reqs = random_requests(&mut rng, 60_000, 5, 2_000);
    let expected = sequential(State::new(), &reqs);
    enqueue(&c, &reqs).await;
    let total = reqs.len() as i64;
    let mut child = t
        .cli()
        .args(["flush-segment", "--batch-size", "300"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // kill it once some batches have committed, well before the end
    let mut left = total;
    for _ in 0..2000 {
        left = queued(&c).await;
        if left < total - 3_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert!(!status.success(), "the flush was killed");
    assert!(
        left > 0 && left < total,
        "killed midway: {left} of {total} left"
    );
    // the killed session's transaction is rolled back by the server
    for _ in 0..200 {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cdpctl flush-segment' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled_before = flushed_requests(&c).await;
    assert_eq!(
        settled_before + queued(&c).await,
        total,
        "every request is settled or queued"
    );
    let out = run(t.cli().args(["--format", "json", "flush-segment"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["read"].as_i64().unwrap(), total - settled_before);
    assert_eq!(flushed_requests(&c).await, total, "nothing applied twice");
    assert_eq!(queued(&c).await, 0);
    assert_eq!(audience_state(&c).await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn unresolved_references_are_kept_aside_and_reported() {
    let t = TestDb::new().await;
    let c = t.client().await;
    let mut reqs = vec![
        Req::new(5, "11", "remove"),
        Req::new(5, "ref-a", "add"),
        Req::new(5, "ref-b", "add"),
        Req::new(5, "ref-a", "remove").run("rti", 3),
        Req::new(5, "x1", "add"),
    ];
    for r in &mut reqs[1..4] {
        r.key_kind = "contact_reference";
    }
    enqueue(&c, &reqs).await;
    c.batch_execute(
        "INSERT INTO audience_data.campaign_contact_id_master VALUES (5, 11, '{3}', '{}')",
    )
    .await
    .unwrap();
    let resolver = StaticResolver([("ref-a".to_string(), 11i64)].into_iter().collect());
    let db = t.db().await;
    let report = segments::flush(
        &db,
        &SegmentsConfig::default(),
        &FlushOptions::default(),
        &resolver,
    )
    .await
    .unwrap();
    let s = &report.segments["5"];
    assert_eq!((s.read, s.unresolved), (5, 2));
    // remove 11, then ref-a (= 11) added and run 3 withdrawn: present, no runs
    let st = audience_state(&c).await;
    assert_eq!(st.keys().copied().collect::<Vec<_>>(), vec![(5, 11)]);
    assert!(st[&(5, 11)].0.is_empty());
    let kept = c
        .query(
            "SELECT key, reason FROM audience_data.segment_changes_unresolved ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let kept: Vec<(String, String)> = kept.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].0, "ref-b");
    assert!(kept[0].1.contains("no contact id"), "{}", kept[0].1);
    assert_eq!(kept[1].0, "x1");
    assert!(kept[1].1.contains("not a contact id"), "{}", kept[1].1);
    assert_eq!(queued(&c).await, 0);
    assert!(report
        .render()
        .contains("kept aside: segment \"5\" key \"ref-b\""));
    let status = run(t.cli().args(["--format", "json", "status"]));
    assert_eq!(status.code, 0, "{}", status.stderr);
    let j = status.json();
    assert_eq!(
        j["details"]["segments"]["unresolved references kept aside"],
        2
    );
    assert_eq!(j["details"]["segments"]["queued segment changes"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segment_without_destination_fails_alone_and_stays_queued() {
    let t = TestDb::new().await;
    let c = t.client().await;
    enqueue(
        &c,
        &[
            Req::new("newsletter", 1, "add"),
            Req::new(9, 1, "add"),
            Req::new("newsletter", 2, "add"),
        ],
    )
    .await;
    let status = run(t.cli().args(["--format", "json", "status"]));
    let j = status.json();
    assert_eq!(j["details"]["segments"]["queued segment changes"], 3);
    assert!(j["details"]["segments"]["oldest queued change"]
        .as_str()
        .unwrap()
        .ends_with(" ago"));

    let dry = run(t
        .cli()
        .args(["--format", "json", "flush-segment", "--dry-run"]));
    assert_eq!(dry.code, 1);
    assert_eq!(dry.json()["dry_run"], true);
    assert_eq!(queued(&c).await, 3, "dry run changes nothing");
    assert!(audience_state(&c).await.is_empty());

    let out = run(t.cli().args(["--format", "json", "flush-segment"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("segment \"newsletter\" is not a campaign id and has no REST destination; configure segments.destinations.newsletter"),
        "{}",
        out.stderr
    );
    let j = out.json();
    let segs = j["segments"].as_array().unwrap();
    let n = segs.iter().find(|s| s["segment"] == "newsletter").unwrap();
    assert_eq!(n["failed"], 2);
    assert_eq!(queued(&c).await, 2);
    assert_eq!(audience_state(&c).await.len(), 1, "segment 9 was flushed");
}

// ---------------------------------------------------------------- REST

#[derive(Clone, Copy, Debug)]
enum Fault {
    Ok,
    /// 429 with the reset headers (seconds), nothing applied.
    RateLimited(&'static str),
    /// 500, nothing applied.
    ServerError,
    /// Applied, but the answer comes after the client gave up.
    SlowAccept,
    Unauthorized,
    /// 302 to this port on loopback.
    Redirect(u16),
    /// 500 whose long body quotes the bearer token.
    EchoToken,
}

#[derive(Default)]
struct Split {
    segments: HashMap<String, HashSet<String>>,
    calls: Vec<(String, usize)>,
    faults: std::collections::VecDeque<Fault>,
    always: Option<Fault>,
    bad_auth: usize,
    /// Every request received, applied or not.
    requests: usize,
}

/// A minimal HTTP/1.1 server speaking the Split segment endpoints.
async fn split_server(state: Arc<Mutex<Split>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // read one request
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 8192];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 8192];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: serde_json::Value =
                        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
                    buf.drain(..head_end + len);
                    let line = head.lines().next().unwrap().to_string();
                    let path = line.split(' ').nth(1).unwrap().to_string();
                    let authorized = head
                        .lines()
                        .any(|l| l == "authorization: Bearer s3cret-token");
                    let keys: Vec<String> = body["keys"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|k| k.as_str().unwrap().to_string())
                        .collect();
                    let fault = {
                        let mut s = state.lock().unwrap();
                        s.requests += 1;
                        if !authorized {
                            s.bad_auth += 1;
                        }
                        s.always
                            .or_else(|| s.faults.pop_front())
                            .unwrap_or(Fault::Ok)
                    };
                    let fault = if authorized {
                        fault
                    } else {
                        Fault::Unauthorized
                    };
                    let apply = |state: &Arc<Mutex<Split>>| {
                        let mut s = state.lock().unwrap();
                        let parts: Vec<&str> = path.split(['/', '?']).collect();
                        // /internal/api/v2/segments/{env}/{segment}/{op}
                        assert_eq!(
                            &parts[1..5],
                            ["internal", "api", "v2", "segments"],
                            "{path}"
                        );
                        assert_eq!(parts[5], "prod");
                        let seg = parts[6].to_string();
                        let set = s.segments.entry(seg).or_default();
                        match parts[7] {
                            "uploadKeys" => {
                                assert!(path.ends_with("?replace=false"), "{path}");
                                set.extend(keys.iter().cloned())
                            }
                            "removeKeys" => keys.iter().for_each(|k| {
                                set.remove(k);
                            }),
                            other => panic!("unexpected endpoint {other}"),
                        }
                        s.calls.push((path.clone(), keys.len()));
                    };
                    let response = match fault {
                        Fault::Ok => {
                            apply(&state);
                            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_string()
                        }
                        Fault::RateLimited(secs) => format!(
                            "HTTP/1.1 429 Too Many Requests\r\nX-RateLimit-Reset-Seconds-Org: {secs}\r\nX-RateLimit-Reset-Seconds-IP: 0\r\ncontent-length: 0\r\n\r\n"
                        ),
                        Fault::ServerError => {
                            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops".to_string()
                        }
                        Fault::SlowAccept => {
                            apply(&state);
                            tokio::time::sleep(Duration::from_millis(1500)).await;
                            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_string()
                        }
                        Fault::Unauthorized => {
                            "HTTP/1.1 401 Unauthorized\r\ncontent-length: 12\r\n\r\nbad token!!!".to_string()
                        }
                        Fault::Redirect(to) => format!(
                            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{to}{path}\r\ncontent-length: 0\r\n\r\n"
                        ),
                        Fault::EchoToken => {
                            let body = format!(
                                "upstream failure\nrequest: Authorization: Bearer s3cret-token\ntoken=s3cret-token {}",
                                "z".repeat(2000)
                            );
                            format!(
                                "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            )
                        }
                    };
                    if sock.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn rest_config(t: &TestDb, dir: &tempfile::TempDir, port: u16) -> std::path::PathBuf {
    let dest = |remote: &str| {
        json!({
            "base_url": format!("http://127.0.0.1:{port}"),
            "environment": "prod",
            "segment": remote,
            "api_token_env": "TEST_SPLIT_TOKEN",
            "max_keys_per_call": 7,
            "timeout_ms": 400,
            "backoff_ms": 10,
            "max_retries": 5
        })
    };
    write_config(
        dir,
        &json!({
            "postgresql": pg_block(&t.url),
            "segments": {"destinations": {"beta": dest("beta_testers"), "vip": dest("vip")}}
        }),
    )
}

async fn run_cli(mut cmd: std::process::Command) -> Output {
    tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_destination_delivers_the_final_state_through_faults() {
    let t = TestDb::new().await;
    let c = t.client().await;
    let state = Arc::new(Mutex::new(Split::default()));
    {
        let mut s = state.lock().unwrap();
        s.segments.insert(
            "beta_testers".into(),
            ["u-old".to_string(), "u1".to_string()]
                .into_iter()
                .collect(),
        );
        s.faults.extend([
            Fault::RateLimited("1"),
            Fault::ServerError,
            Fault::Ok,
            Fault::SlowAccept,
            Fault::ServerError,
            Fault::RateLimited("0.2"),
            Fault::Ok,
            Fault::SlowAccept,
        ]);
    }
    let port = split_server(state.clone()).await;
    let mut rng = SmallRng::seed_from_u64(3);
    let mut reqs = Vec::new();
    for _ in 0..400 {
        let seg = if rng.gen_bool(0.6) { "beta" } else { "vip" };
        let key = format!("u{}", rng.gen_range(0..60));
        reqs.push(Req::new(
            seg,
            key,
            if rng.gen_bool(0.6) { "add" } else { "remove" },
        ));
    }
    reqs.push(Req::new("beta", "u-old", "remove"));
    enqueue(&c, &reqs).await;
    let mut expected: HashMap<String, HashSet<String>> = HashMap::new();
    expected.insert(
        "beta_testers".into(),
        ["u-old", "u1"].iter().map(|s| s.to_string()).collect(),
    );
    expected.insert("vip".into(), HashSet::new());
    for r in &reqs {
        let remote = if r.segment == "beta" {
            "beta_testers"
        } else {
            "vip"
        };
        let set = expected.get_mut(remote).unwrap();
        if r.verb == "add" {
            set.insert(r.key.clone());
        } else {
            set.remove(&r.key);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = rest_config(&t, &dir, port);
    let mut cmd = cli();
    cmd.env("TEST_SPLIT_TOKEN", "s3cret-token").args([
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        "flush-segment",
        "--batch-size",
        "150",
    ]);
    let out = run_cli(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("s3cret") && !out.stderr.contains("s3cret"));
    let j = out.json();
    assert_eq!(j["read"], reqs.len());
    let retries: u64 = j["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["retries"].as_u64().unwrap())
        .sum();
    assert!(retries >= 6, "faults were retried: {j}");
    assert_eq!(queued(&c).await, 0);
    let s = state.lock().unwrap();
    assert_eq!(s.bad_auth, 0);
    assert!(
        s.calls.iter().all(|(_, n)| *n <= 7 && *n > 0),
        "{:?}",
        s.calls
    );
    for (seg, keys) in &expected {
        assert_eq!(
            s.segments.get(seg).cloned().unwrap_or_default(),
            *keys,
            "segment {seg}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_rows_stay_queued_until_the_destination_accepts() {
    let t = TestDb::new().await;
    let c = t.client().await;
    let state = Arc::new(Mutex::new(Split {
        always: Some(Fault::ServerError),
        ..Default::default()
    }));
    let port = split_server(state.clone()).await;
    enqueue(
        &c,
        &[
            Req::new("beta", "u1", "add"),
            Req::new("vip", "u2", "add"),
            Req::new(4, 1, "add"),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = rest_config(&t, &dir, port);
    let base = |token: &str| {
        let mut cmd = cli();
        cmd.env("TEST_SPLIT_TOKEN", token).args([
            "--config",
            cfg.to_str().unwrap(),
            "flush-segment",
        ]);
        cmd
    };
    let out = run_cli(base("s3cret-token")).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("2 segment(s) failed"), "{}", out.stderr);
    assert!(out.stderr.contains("HTTP 500"), "{}", out.stderr);
    assert!(
        out.stderr.contains("still failing after 5 retries"),
        "{}",
        out.stderr
    );
    assert_eq!(queued(&c).await, 2, "REST rows stay, the audience row went");

    // a refused token fails at once and is never printed
    state.lock().unwrap().always = None;
    let out = run_cli(base("wrong-token")).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("HTTP 401"), "{}", out.stderr);
    assert!(!out.stderr.contains("wrong-token"), "{}", out.stderr);
    assert_eq!(queued(&c).await, 2);

    // once the destination accepts, the rows go
    let out = run_cli(base("s3cret-token")).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(queued(&c).await, 0);
    let s = state.lock().unwrap();
    assert!(s.segments["beta_testers"].contains("u1"));
    assert!(s.segments["vip"].contains("u2"));
}

/// Accepts HTTP requests, records their heads and answers 200.
async fn recording_server(heads: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                heads
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    port
}

/// A Split server that answers every request with `fault`.
async fn always_failing(fault: Fault) -> (Arc<Mutex<Split>>, u16) {
    let state = Arc::new(Mutex::new(Split {
        always: Some(fault),
        ..Default::default()
    }));
    let port = split_server(state.clone()).await;
    (state, port)
}

/// `flush-segment` with the REST destinations at `port` and the right token.
async fn flush_rest(t: &TestDb, port: u16) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let cfg = rest_config(t, &dir, port);
    let mut cmd = cli();
    cmd.env("TEST_SPLIT_TOKEN", "s3cret-token")
        .arg("--config")
        .arg(&cfg)
        .arg("flush-segment");
    run_cli(cmd).await
}

/// A 302 fails the segment at once (no retry), names it and the Location
/// host, and nothing (least of all the token) goes to the redirect target.
#[tokio::test(flavor = "multi_thread")]
async fn a_redirecting_destination_fails_at_once_and_is_not_followed() {
    let t = TestDb::new().await;
    let c = t.client().await;
    let elsewhere = Arc::new(Mutex::new(Vec::new()));
    let other_port = recording_server(elsewhere.clone()).await;
    let (state, port) = always_failing(Fault::Redirect(other_port)).await;
    enqueue(
        &c,
        &[Req::new("beta", "u1", "add"), Req::new("beta", "u2", "add")],
    )
    .await;
    let out = flush_rest(&t, port).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    for want in [
        "segment \"beta\": PUT /internal/api/v2/segments/prod/beta_testers/uploadKeys (2 keys)"
            .to_string(),
        format!("HTTP 302 Found redirecting to 127.0.0.1:{other_port}"),
        "redirects are not followed".to_string(),
        "segments.destinations.beta.base_url".to_string(),
    ] {
        assert!(out.stderr.contains(&want), "{want}: {}", out.stderr);
    }
    assert!(!out.stderr.contains("retries"), "{}", out.stderr);
    assert_eq!(state.lock().unwrap().requests, 1, "no retry of a 3xx");
    assert_eq!(*elsewhere.lock().unwrap(), Vec::<String>::new());
    assert_eq!(queued(&c).await, 2, "the rows stay queued");
}

/// A failing destination whose body quotes the token: the error shows a
/// short excerpt with the token masked, on stdout and stderr alike.
#[tokio::test(flavor = "multi_thread")]
async fn destination_bodies_are_short_and_never_show_the_token() {
    let t = TestDb::new().await;
    let c = t.client().await;
    let (_state, port) = always_failing(Fault::EchoToken).await;
    enqueue(&c, &[Req::new("vip", "u1", "add")]).await;
    let out = flush_rest(&t, port).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("HTTP 500 Internal Server Error: upstream failure request: Authorization: Bearer *** token=*** zzz"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("still failing after 5 retries"),
        "{}",
        out.stderr
    );
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains(&"z".repeat(300)), "{text}");
    }
    assert_eq!(queued(&c).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_keeps_flushing_and_stops_on_sigterm() {
    let t = TestDb::new().await;
    let c = t.client().await;
    let child = t
        .cli()
        .args([
            "--format",
            "json",
            "flush-segment",
            "--watch",
            "--interval",
            "200ms",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for round in 0..3 {
        enqueue(
            &c,
            &[Req::new(3, round, "add"), Req::new(3, round + 10, "add")],
        )
        .await;
        let mut left = 1;
        for _ in 0..200 {
            left = queued(&c).await;
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(left, 0, "round {round} was flushed while watching");
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["read"], 6);
    assert_eq!(audience_state(&c).await.len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_reconnects_after_its_session_is_terminated() {
    let t = TestDb::new().await;
    let c = t.client().await;
    let mut child = t
        .cli()
        .args([
            "--format",
            "json",
            "flush-segment",
            "--watch",
            "--interval",
            "200ms",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let flushed = || async {
        for _ in 0..300 {
            if queued(&c).await == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    enqueue(&c, &[Req::new(3, 1, "add")]).await;
    assert!(flushed().await, "the first request was not flushed");
    // kill the watcher's session, as a server restart would
    let killed = common::terminate_cdpctl_sessions(&c).await;
    assert!(killed >= 1, "no session of the watcher found");
    enqueue(&c, &[Req::new(3, 2, "add"), Req::new(3, 1, "remove")]).await;
    let done = flushed().await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the watcher exited after losing its connection"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        done,
        "nothing flushed after the session was terminated: {stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("connection lost"), "{stderr}");
    assert_eq!(audience_state(&c).await.len(), 1, "last action per key");
}

#[tokio::test(flavor = "multi_thread")]
async fn contact_references_resolve_through_dynamodb() {
    let t = TestDb::new().await;
    let c = t.client().await;
    let d = common::dynamo::Dynalite::start().await;
    d.load([("ref-1", 501i64), ("ref-2", 502)]).await;
    let mut reqs = vec![
        Req::new(12, "ref-1", "add").run("ac", 4),
        Req::new(12, "ref-2", "add"),
        Req::new(12, "ref-9", "add"),
        Req::new(12, "502", "remove"),
        Req::new(12, "503", "add"),
    ];
    for r in &mut reqs[..3] {
        r.key_kind = "contact_reference";
    }
    enqueue(&c, &reqs).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &json!({"postgresql": pg_block(&t.url), "dynamodb": d.config_json()}),
    );
    let mut cmd = cli();
    cmd.args([
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        "flush-segment",
    ]);
    let out = run_cli(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["segments"][0]["unresolved"], 1);
    assert_eq!(j["unresolved_examples"][0]["key"], "ref-9");
    let st = audience_state(&c).await;
    let keys: Vec<(i64, i64)> = st.keys().copied().collect();
    assert_eq!(
        keys,
        vec![(12, 501), (12, 503)],
        "ref-2 = 502 added, then removed by id"
    );
    assert_eq!(st[&(12, 501)].1, [4].into_iter().collect());
    assert_eq!(queued(&c).await, 0);
}

#[test]
fn the_example_config_segments_section_parses() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cdpctl.json"))
            .unwrap();
    let cfg = cdpctl::config::Config::from_json(&text, "examples/cdpctl.json").unwrap();
    let s = SegmentsConfig::from_config(&cfg).unwrap();
    assert_eq!(s.batch_size, 50_000);
    assert_eq!(s.destinations["beta-testers"].max_keys_per_call, 10_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn segment_and_max_batches_limit_the_flush() {
    let t = TestDb::new().await;
    let c = t.client().await;
    let mut reqs: Vec<Req> = (1..=10).map(|k| Req::new(21, k, "add")).collect();
    reqs.extend((1..=10).map(|k| Req::new(22, k, "add")));
    enqueue(&c, &reqs).await;
    let out = run(t.cli().args([
        "--format",
        "json",
        "flush-segment",
        "--segment",
        "22",
        "--batch-size",
        "3",
        "--max-batches",
        "2",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(
        (j["read"].as_u64(), j["batches"].as_u64()),
        (Some(6), Some(2))
    );
    assert_eq!(j["remaining"], 14);
    let st = audience_state(&c).await;
    assert_eq!(st.len(), 6);
    assert!(st
        .keys()
        .all(|(camp, contact)| *camp == 22 && *contact <= 6));
}
