//! `cdpctl stitch`: incremental runs against a breadth-first-search oracle and
//! a from-scratch run, hygiene rules, explain, interrupted runs, the queue.

mod common;

use std::collections::{HashMap, VecDeque};

use cdpctl::output::{Format, Output};
use cdpctl::stitch::{self, StitchOptions, StitchSummary};
use common::*;
use serde_json::json;

fn quiet() -> Output {
    Output {
        format: Format::Json,
        quiet: true,
        verbose: 0,
    }
}

async fn stitch_run(t: &TestDb, opts: StitchOptions) -> StitchSummary {
    let mut db = t.db().await;
    stitch::run(&mut db, &opts, &quiet()).await.unwrap()
}

async fn incremental(t: &TestDb) -> StitchSummary {
    stitch_run(t, StitchOptions::default()).await
}

/// A small catalogue: one event type "web/hit/1" with cookie, email and
/// user identifiers.
async fn setup_catalogue(c: &tokio_postgres::Client) {
    c.batch_execute(
        "INSERT INTO public.sources (id, name) VALUES ('web', 'Web');
         INSERT INTO public.events (id, source_id, type, version) VALUES ('ev_hit', 'web', 'hit', '1');
         INSERT INTO public.attributes (id, name) VALUES ('cookie', 'c'), ('email', 'e'), ('user', 'u');
         INSERT INTO cdp_ps.stitching_attributes_config (attribute_id, event_id, value_expression) VALUES
           ('cookie', 'ev_hit', 'payload->>''cookie'''),
           ('email', 'ev_hit', 'lower(payload->>''email'')'),
           ('user', 'ev_hit', 'payload->>''user''');",
    )
    .await
    .unwrap();
}

/// Inserts hit events; returns their ids.
async fn hits(c: &tokio_postgres::Client, payloads: &[serde_json::Value]) -> Vec<String> {
    let mut ids = Vec::new();
    for p in payloads {
        let id: String = c
            .query_one(
                "INSERT INTO cdp_ce.customer_events (id, source_id, type, version, event_time, payload)
                 VALUES (gen_random_uuid(), 'web', 'hit', '1', now(), $1) RETURNING id::text",
                &[p],
            )
            .await
            .unwrap()
            .get(0);
        ids.push(id);
    }
    ids
}

async fn entity_of(c: &tokio_postgres::Client, event: &str) -> String {
    c.query_one(
        "SELECT entity_id::text FROM cdp_ps.event_entities WHERE event_id = $1::text::uuid",
        &[&event],
    )
    .await
    .unwrap()
    .get(0)
}

/// event id -> smallest event id of its entity.
async fn partition(c: &tokio_postgres::Client) -> HashMap<String, String> {
    let rows = c
        .query(
            "SELECT event_id::text, min(event_id::text) OVER (PARTITION BY entity_id) FROM cdp_ps.event_entities",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Connected components by breadth-first search over the event–identifier
/// graph computed independently in SQL (config expressions, blocklist
/// applied as SQL predicates), in the same shape as [`partition`].
async fn oracle(c: &tokio_postgres::Client) -> HashMap<String, String> {
    let cfg = c
        .query(
            "SELECT c.attribute_id, c.value_expression, ev.source_id, ev.type, ev.version
               FROM cdp_ps.stitching_attributes_config c JOIN public.events ev ON ev.id = c.event_id",
            &[],
        )
        .await
        .unwrap();
    let mut edges: Vec<(String, String)> = Vec::new();
    for r in &cfg {
        let (a, expr): (String, String) = (r.get(0), r.get(1));
        let sql = format!(
            "SELECT id::text, v FROM (SELECT e.id, ({expr})::text AS v FROM cdp_ce.customer_events e
               WHERE source_id = $1 AND type = $2 AND version = $3) x
              WHERE v IS NOT NULL AND v <> ''
                AND NOT EXISTS (SELECT 1 FROM cdp_ps.stitching_blocklist b
                   WHERE (b.attribute_id IS NULL OR b.attribute_id = $4)
                     AND CASE WHEN b.is_regex THEN x.v ~ b.value ELSE lower(trim(x.v)) = lower(trim(b.value)) END)"
        );
        let src: String = r.get(2);
        let ty: String = r.get(3);
        let ver: String = r.get(4);
        for e in c.query(&sql, &[&src, &ty, &ver, &a]).await.unwrap() {
            edges.push((e.get(0), format!("{a}\u{1}{}", e.get::<_, String>(1))));
        }
    }
    let events: Vec<String> = c
        .query("SELECT id::text FROM cdp_ce.customer_events", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut ev_ids: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut id_evs: HashMap<&str, Vec<&str>> = HashMap::new();
    for (e, i) in &edges {
        ev_ids.entry(e).or_default().push(i);
        id_evs.entry(i).or_default().push(e);
    }
    let mut out: HashMap<String, String> = HashMap::new();
    for s in &events {
        if out.contains_key(s) {
            continue;
        }
        let mut comp = vec![s.as_str()];
        let mut seen: std::collections::HashSet<&str> = [s.as_str()].into();
        let mut q = VecDeque::from([s.as_str()]);
        while let Some(e) = q.pop_front() {
            for i in ev_ids.get(e).map(|v| v.as_slice()).unwrap_or(&[]) {
                for f in &id_evs[i] {
                    if seen.insert(f) {
                        comp.push(f);
                        q.push_back(f);
                    }
                }
            }
        }
        let min = comp.iter().min().unwrap().to_string();
        for e in comp {
            out.insert(e.to_string(), min.clone());
        }
    }
    out
}

/// Entities, sizes and customer_entities agree with event_entities.
async fn assert_consistent(c: &tokio_postgres::Client) {
    let bad: i64 = c
        .query_one(
            "SELECT count(*) FROM (
               SELECT entity_id, count(*) AS n FROM cdp_ps.event_entities GROUP BY 1) x
               FULL JOIN cdp_ps.entities en ON en.id = x.entity_id
              WHERE x.n IS DISTINCT FROM en.events",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "entity sizes disagree with event_entities");
    let bad: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM cdp_ps.entities en WHERE NOT EXISTS (SELECT 1 FROM cdp_attr.customer_entities ce WHERE ce.id = en.id))
                  + (SELECT count(*) FROM cdp_attr.customer_entities ce WHERE NOT EXISTS (SELECT 1 FROM cdp_ps.entities en WHERE ce.id = en.id))
                  + (SELECT count(*) FROM cdp_ps.identifiers i WHERE NOT EXISTS (SELECT 1 FROM cdp_ps.entities en WHERE i.entity_id = en.id))
                  + (SELECT count(*) FROM cdp_ce.customer_events e WHERE NOT EXISTS (SELECT 1 FROM cdp_ps.event_entities x WHERE x.event_id = e.id)
                        AND NOT EXISTS (SELECT 1 FROM cdp_ps.customer_events_to_process q WHERE q.event_id = e.id))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        bad, 0,
        "entities, customer_entities, identifiers or the queue are inconsistent"
    );
}

/// Seeds the demo data set, then replays its events in random-sized chunks
/// (shuffled, with late events bridging the two long chains at the end),
/// stitching after each chunk; the partition must equal the BFS oracle and
/// a from-scratch run.
#[tokio::test(flavor = "multi_thread")]
async fn incremental_runs_equal_bfs_oracle_and_from_scratch() {
    let t = TestDb::new().await;
    let mut c = t.client().await;
    let opts = cdpctl::demo::GenOptions {
        customers: 300,
        chains: 2,
        chain_len: 400,
        junk_percent: 5,
        ..Default::default()
    };
    let schemas = t.db().await.schemas.clone();
    cdpctl::demo::load(&mut c, &schemas, &opts).await.unwrap();
    c.batch_execute(
        "CREATE TABLE hold AS SELECT * FROM cdp_ce.customer_events ORDER BY md5(id::text);
         TRUNCATE cdp_ce.customer_events, cdp_ps.customer_events_to_process;
         UPDATE cdp_ps.stitching_state SET full_run_pending = false;",
    )
    .await
    .unwrap();
    let total: i64 = c
        .query_one("SELECT count(*) FROM hold", &[])
        .await
        .unwrap()
        .get(0);
    let mut done = 0i64;
    for (k, size) in [1i64, 7, 50, 400, 1, 900, 3, 2000].into_iter().enumerate() {
        c.batch_execute(&format!(
            "INSERT INTO cdp_ce.customer_events SELECT * FROM hold ORDER BY md5(id::text) OFFSET {done} LIMIT {size}"
        ))
        .await
        .unwrap();
        done += size;
        let sum = stitch_run(
            &t,
            StitchOptions {
                batch_size: Some(if k % 2 == 0 { 1_000_000 } else { 97 }),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(sum.backlog_left, 0);
    }
    c.batch_execute(&format!(
        "INSERT INTO cdp_ce.customer_events SELECT * FROM hold ORDER BY md5(id::text) OFFSET {done}"
    ))
    .await
    .unwrap();
    incremental(&t).await;
    assert_eq!(
        partition(&c).await.len() as i64,
        total,
        "every event stitched once"
    );
    assert!(
        partition(&c).await == oracle(&c).await,
        "incremental partition differs from the BFS oracle"
    );
    assert_consistent(&c).await;
    // a late event bridging the two long chains
    c.batch_execute("DELETE FROM cdpctl.entity_changes")
        .await
        .unwrap();
    let late = hits_web(
        &c,
        &[json!({"cookie_id": "chain-0-1", "ga_id": "chainga-1-1"})],
    )
    .await;
    let before = c
        .query_one(
            "SELECT count(DISTINCT entity_id) FROM cdp_ps.event_entities",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    let sum = incremental(&t).await;
    assert_eq!(sum.merges, 1, "{sum:?}");
    let after: i64 = c
        .query_one(
            "SELECT count(DISTINCT entity_id) FROM cdp_ps.event_entities",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, before - 1);
    let merged = entity_of(&c, &late[0]).await;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM cdp_ps.event_entities WHERE entity_id = $1::text::uuid",
            &[&merged],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 801, "both chains and the bridging event");
    let journal: i64 = c
        .query_one(
            "SELECT count(*) FROM cdpctl.entity_changes WHERE kind = 'merged' AND entity_id = $1::text::uuid",
            &[&merged],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(journal, 1);

    let inc = partition(&c).await;
    let want = oracle(&c).await;
    assert_eq!(inc.len(), want.len());
    assert!(
        inc == want,
        "incremental partition differs from the BFS oracle"
    );
    assert_consistent(&c).await;

    let sum = stitch_run(
        &t,
        StitchOptions {
            from_scratch: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(sum.mode, "full");
    assert_eq!(sum.events as i64, total + 1);
    let full = partition(&c).await;
    assert!(
        full == want,
        "from-scratch partition differs from the oracle"
    );
    assert_consistent(&c).await;
    let refused: i64 = c
        .query_one("SELECT count(*) FROM cdp_ps.refused_edges", &[])
        .await
        .unwrap()
        .get(0);
    assert!(refused > 0, "the junk identifiers were recorded");
}

async fn hits_web(c: &tokio_postgres::Client, payloads: &[serde_json::Value]) -> Vec<String> {
    let mut ids = Vec::new();
    for p in payloads {
        ids.push(
            c.query_one(
                "INSERT INTO cdp_ce.customer_events (id, source_id, type, version, event_time, payload)
                 VALUES (gen_random_uuid(), 'web', 'page_view', '1-0-0', now(), $1) RETURNING id::text",
                &[p],
            )
            .await
            .unwrap()
            .get::<_, String>(0),
        );
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn blocked_values_and_limits_never_merge_and_are_recorded() {
    let t = TestDb::new().await;
    let c = t.client().await;
    setup_catalogue(&c).await;
    c.batch_execute(
        "INSERT INTO cdp_ps.stitching_limits VALUES ('user', 1);
         INSERT INTO cdp_ps.stitching_blocklist (attribute_id, value, is_regex) VALUES ('cookie', '^shared-', true);",
    )
    .await
    .unwrap();
    let e = hits(
        &c,
        &[
            json!({"cookie": "a", "user": "u1"}),
            json!({"email": "Test@Test.com", "cookie": "b"}),
            json!({"email": "test@test.com ", "cookie": "c"}),
            json!({"cookie": "shared-kiosk", "user": "u7"}),
            json!({"cookie": "shared-kiosk", "user": "u8"}),
            json!({"cookie": "   ", "email": "null"}),
            json!({"cookie": "", "user": "u9"}),
        ],
    )
    .await;
    let s1 = incremental(&t).await;
    assert_eq!(s1.mode, "full");
    // a second login id for the entity of cookie a: refused, no merge
    let e2 = hits(
        &c,
        &[
            json!({"cookie": "a", "user": "u2"}),
            json!({"user": "u2", "cookie": "d"}),
        ],
    )
    .await;
    let s2 = incremental(&t).await;
    assert_eq!(s2.mode, "incremental");
    assert_eq!(s2.refused_limit, 1, "{s2:?}");
    assert_eq!(s2.merges, 0);
    assert_eq!(entity_of(&c, &e2[0]).await, entity_of(&c, &e[0]).await);
    assert_ne!(entity_of(&c, &e2[1]).await, entity_of(&c, &e[0]).await);
    // blocked values did not join b/c nor the kiosk users
    assert_ne!(entity_of(&c, &e[1]).await, entity_of(&c, &e[2]).await);
    assert_ne!(entity_of(&c, &e[3]).await, entity_of(&c, &e[4]).await);
    let rows = c
        .query(
            "SELECT event_id::text, attribute_id, value, reason FROM cdp_ps.refused_edges ORDER BY reason, value",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(2), r.get::<_, String>(3)))
        .collect();
    assert_eq!(s1.refused_blocked, 7, "{got:?}");
    // empty and whitespace-only values are refused and recorded, never dropped
    assert!(got
        .iter()
        .any(|(ev, v, why)| *ev == e[6] && v.is_empty() && why.starts_with("blocklist")));
    assert!(got
        .iter()
        .any(|(ev, v, why)| *ev == e[5] && v == "   " && why.starts_with("blocklist")));
    assert!(got
        .iter()
        .any(|(ev, v, why)| *ev == e[1] && v == "test@test.com" && why.contains("test@test.com")));
    assert!(got
        .iter()
        .any(|(ev, v, why)| *ev == e[3] && v == "shared-kiosk" && why.contains("pattern")));
    assert!(got.iter().any(|(ev, v, _)| *ev == e[5] && v == "   "));
    assert!(got.iter().any(|(ev, v, why)| *ev == e2[0]
        && v == "u2"
        && why.contains("at most 1 value(s) of user")));
    // status and JSON summary show the counts
    let st = run(t.cli().args(["--format", "json", "status"]));
    assert_eq!(st.code, 0, "{}", st.stderr);
    let j = st.json();
    assert_eq!(
        j["details"]["stitching"]["refused edges (limits)"],
        json!(1)
    );
    assert_eq!(
        j["details"]["stitching"]["refused edges (blocklist)"],
        json!(7)
    );
    assert_eq!(
        j["details"]["stitching"]["events waiting for stitching"],
        json!(0)
    );
    assert_consistent(&c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_shows_multi_hop_merge_and_shortest_chain() {
    let t = TestDb::new().await;
    let c = t.client().await;
    setup_catalogue(&c).await;
    let a = hits(
        &c,
        &[
            json!({"cookie": "c1"}),
            json!({"cookie": "c1", "email": "x@example.com"}),
        ],
    )
    .await;
    let b = hits(
        &c,
        &[
            json!({"user": "u9", "cookie": "c2"}),
            json!({"cookie": "c2"}),
            json!({"cookie": "c2", "email": "y@example.com"}),
        ],
    )
    .await;
    incremental(&t).await;
    let absorbed = entity_of(&c, &a[0]).await;
    let survivor = entity_of(&c, &b[0]).await;
    assert_ne!(absorbed, survivor);
    // the bridge: e-mail x and y on one event
    let bridge = hits(&c, &[json!({"email": "X@example.com", "user": "u9"})]).await;
    let sum = incremental(&t).await;
    assert_eq!(sum.merges, 1);
    assert_eq!(
        entity_of(&c, &a[0]).await,
        survivor,
        "the larger entity keeps its id"
    );

    let out = run(t.cli().args([
        "--format",
        "json",
        "stitch",
        "explain",
        &format!("event:{}", a[0]),
        "user=u9",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["entity"], json!(survivor));
    assert_eq!(j["events"], json!(6));
    let path: Vec<String> = j["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(path.len(), 6, "{path:?}");
    assert!(path[0].starts_with(&a[0]));
    assert_eq!(path[1], "cookie=c1");
    assert!(path[2].starts_with(&a[1]));
    assert_eq!(path[3], "email=x@example.com");
    assert!(path[4].starts_with(&bridge[0]));
    assert_eq!(path[5], "user=u9");
    assert_eq!(j["merges"][0]["absorbed"], json!(absorbed));
    assert_eq!(j["merges"][0]["survivor"], json!(survivor));
    assert_eq!(j["merges"][0]["bridge_event"], json!(bridge[0]));
    let ids: Vec<&str> = j["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(ids.contains(&"cookie=c1") && ids.contains(&"email=y@example.com"));

    // the absorbed id leads to its survivor; human output names the chain
    let out = run(t
        .cli()
        .args(["stitch", "explain", &format!("entity:{absorbed}")]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("{absorbed} was absorbed into {survivor}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("merge history"), "{}", out.stdout);
    let out = run(t
        .cli()
        .args(["stitch", "explain", "cookie=c1", "cookie=nope"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("not linked"), "{}", out.stdout);
    let out = run(t.cli().args(["stitch", "explain", "nonsense"]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("ATTRIBUTE=VALUE"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_value_expression_names_row_and_event_and_writes_nothing() {
    let t = TestDb::new().await;
    let c = t.client().await;
    setup_catalogue(&c).await;
    hits(&c, &[json!({"cookie": "a", "user": "1"})]).await;
    incremental(&t).await;
    c.batch_execute(
        "UPDATE cdp_ps.stitching_attributes_config SET value_expression = '(payload->>''user'')::int::text' WHERE attribute_id = 'user'",
    )
    .await
    .unwrap();
    let good = hits(&c, &[json!({"cookie": "b", "user": "2"})]).await;
    let bad = hits(&c, &[json!({"cookie": "a", "user": "abc"})]).await;
    let out = run(t.cli().args(["stitch"]));
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("attribute_id \\\"user\\\"")
            || out.stderr.contains("attribute_id \"user\""),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(&bad[0]), "{}", out.stderr);
    assert!(
        out.stderr.contains("invalid input syntax"),
        "{}",
        out.stderr
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM cdp_ps.event_entities", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "nothing was written");
    let q: i64 = c
        .query_one(
            "SELECT count(*) FROM cdp_ps.customer_events_to_process",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(q, 2);
    // a syntax error is found before anything runs
    c.batch_execute(
        "UPDATE cdp_ps.stitching_attributes_config SET value_expression = 'payload->>>''user''' WHERE attribute_id = 'user'",
    )
    .await
    .unwrap();
    let out = run(t.cli().args(["stitch"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("is not a valid expression"),
        "{}",
        out.stderr
    );
    // fixed: the next run stitches both
    c.batch_execute(
        "UPDATE cdp_ps.stitching_attributes_config SET value_expression = 'payload->>''user''' WHERE attribute_id = 'user'",
    )
    .await
    .unwrap();
    let sum = incremental(&t).await;
    assert_eq!(sum.events, 2);
    assert_ne!(entity_of(&c, &good[0]).await, entity_of(&c, &bad[0]).await);
    assert_consistent(&c).await;
}

/// Runs stopped between batches (--max-batches) and inside a batch (SIGINT
/// while a run with tiny batches is going) leave a consistent database; the
/// next run ends in the oracle's partition.
#[tokio::test(flavor = "multi_thread")]
async fn interrupted_runs_leave_a_consistent_database() {
    let t = TestDb::new().await;
    let mut c = t.client().await;
    let schemas = t.db().await.schemas.clone();
    let opts = cdpctl::demo::GenOptions {
        customers: 400,
        chains: 1,
        chain_len: 300,
        ..Default::default()
    };
    cdpctl::demo::load(&mut c, &schemas, &opts).await.unwrap();
    c.batch_execute("UPDATE cdp_ps.stitching_state SET full_run_pending = false")
        .await
        .unwrap();
    let sum = stitch_run(
        &t,
        StitchOptions {
            batch_size: Some(300),
            max_batches: Some(2),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(sum.batches, 2);
    assert!(sum.backlog_left > 0);
    assert_consistent(&c).await;
    // interrupt a CLI run inside its batches
    let mut child = t
        .cli()
        .args(["stitch", "--batch-size", "40"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_consistent(&c).await;
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM cdp_ps.customer_events_to_process",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    if !status.success() {
        assert!(left > 0, "an interrupted run left work queued");
    }
    let sum = incremental(&t).await;
    assert_eq!(sum.backlog_left, 0);
    assert!(partition(&c).await == oracle(&c).await);
    assert_consistent(&c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_queue_means_from_scratch_and_inserts_keep_working() {
    let t = TestDb::new().await;
    let c = t.client().await;
    setup_catalogue(&c).await;
    let a = hits(
        &c,
        &[json!({"cookie": "a"}), json!({"cookie": "a", "email": "m"})],
    )
    .await;
    incremental(&t).await;
    let before = entity_of(&c, &a[0]).await;
    c.batch_execute("DROP TABLE cdp_ps.customer_events_to_process")
        .await
        .unwrap();
    // inserts never fail because the queue is gone
    let b = hits(&c, &[json!({"email": "m"})]).await;
    let st = run(t.cli().args(["--format", "json", "status"]));
    assert!(st.stdout.contains("from scratch"), "{}", st.stdout);
    let dry = run(t.cli().args(["--format", "json", "stitch", "--dry-run"]));
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json()["mode"], json!("full"));
    let sum = incremental(&t).await;
    assert_eq!(sum.mode, "full");
    assert_eq!(sum.events, 3);
    assert_eq!(entity_of(&c, &b[0]).await, entity_of(&c, &a[0]).await);
    assert_ne!(
        entity_of(&c, &a[0]).await,
        before,
        "entities are recomputed"
    );
    // one journal row says "every entity was rebuilt", not one per entity
    let journal: Vec<(String, String)> = c
        .query(
            "SELECT entity_id::text, kind FROM cdpctl.entity_changes",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        journal,
        vec![(
            "00000000-0000-0000-0000-000000000000".to_string(),
            "rebuilt".to_string()
        )]
    );
    // new events are queued again
    hits(&c, &[json!({"cookie": "z"})]).await;
    let sum = incremental(&t).await;
    assert_eq!((sum.mode.as_str(), sum.events), ("incremental", 1));
    // --from-scratch asks first and refuses without a terminal
    let out = run(t
        .cli()
        .env_remove("CDPCTL_YES")
        .args(["stitch", "--from-scratch"]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    let out = run(t
        .cli()
        .args(["--yes", "--format", "json", "stitch", "--from-scratch"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["events"], json!(4));
    assert_consistent(&c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn journal_and_attribute_marks_follow_the_contract() {
    let t = TestDb::new().await;
    let c = t.client().await;
    setup_catalogue(&c).await;
    let a = hits(&c, &[json!({"cookie": "a"}), json!({"cookie": "a"})]).await;
    let b = hits(&c, &[json!({"cookie": "b"})]).await;
    incremental(&t).await;
    let (ea, eb) = (entity_of(&c, &a[0]).await, entity_of(&c, &b[0]).await);
    c.batch_execute(
        "UPDATE cdp_attr.customer_entities SET calculated = now();
         INSERT INTO cdp_attr.customer_attributes (customer_entity_id, attribute_id, value)
           SELECT id, 'x', '1' FROM cdp_attr.customer_entities;
         DELETE FROM cdpctl.entity_changes;",
    )
    .await
    .unwrap();
    hits(
        &c,
        &[
            json!({"cookie": "a", "email": "e"}),
            json!({"cookie": "b", "email": "e"}),
        ],
    )
    .await;
    incremental(&t).await;
    let rows = c
        .query(
            "SELECT entity_id::text, kind, items FROM cdpctl.entity_changes ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, Vec<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            (ea.clone(), "events".into(), vec!["web/hit/1".into()]),
            (ea.clone(), "merged".into(), vec![eb.clone()]),
            (eb.clone(), "removed".into(), vec![ea.clone()]),
        ]
    );
    let ce: Vec<(String, Option<chrono::NaiveDateTime>)> = c
        .query(
            "SELECT id::text, calculated FROM cdp_attr.customer_entities",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        ce,
        vec![(ea.clone(), None)],
        "absorbed entity deleted, survivor marked"
    );
    let attrs: i64 = c
        .query_one(
            "SELECT count(*) FROM cdp_attr.customer_attributes WHERE customer_entity_id = $1::text::uuid",
            &[&eb],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(attrs, 0, "the absorbed entity's attribute rows went away");
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_runs_stitching_and_second_run_is_locked_out() {
    let t = TestDb::empty().await;
    let out = run(t
        .cli()
        .args(["--yes", "--format", "json", "demo", "--customers", "40"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    let steps = j["steps"].as_array().unwrap();
    let st = steps
        .iter()
        .find(|s| s[0] == json!("stitch"))
        .expect("stitch step");
    assert_eq!(st[1]["mode"], json!("full"));
    assert!(st[1]["entities_created"].as_u64().unwrap() > 0);
    // the job lock: exit code 3 while another session holds it
    let db = t.db().await;
    db.lock_job("stitch").await.unwrap();
    let out = run(t.cli().args(["stitch"]));
    assert_eq!(out.code, 3, "{}", out.stderr);
}

async fn queued(c: &tokio_postgres::Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM cdp_ps.customer_events_to_process",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// The index and constraint definitions of the stitching tables.
async fn index_defs(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT indexdef FROM pg_indexes WHERE schemaname IN ('cdp_ps', 'cdp_attr') ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// kill -9 of a run from scratch while it writes (its TRUNCATE done, its
/// indexes dropped) leaves the previous results, indexes and queue exactly
/// as they were; a rerun completes with the oracle's partition and the same
/// indexes.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_run_from_scratch_keeps_the_previous_results() {
    let t = TestDb::new().await;
    let mut c = t.client().await;
    let schemas = t.db().await.schemas.clone();
    let opts = cdpctl::demo::GenOptions {
        customers: 6000,
        chains: 2,
        chain_len: 300,
        ..Default::default()
    };
    cdpctl::demo::load(&mut c, &schemas, &opts).await.unwrap();
    let first = incremental(&t).await;
    assert_eq!(first.mode, "full");
    hits(&c, &[json!({"cookie": "late"}), json!({"cookie": "late"})]).await;
    let before = partition(&c).await;
    let defs = index_defs(&c).await;
    assert!(defs.len() >= 8, "{defs:?}");
    let queue_before = queued(&c).await;
    assert_eq!(queue_before, 2);
    for delay_ms in [0u64, 150] {
        let mut child = t
            .cli()
            .args(["--yes", "stitch", "--from-scratch"])
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // wait until the run holds the emptied tables (after its TRUNCATE)
        let mut seen = false;
        for _ in 0..2000 {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class r ON r.oid = l.relation
                      WHERE r.relname = 'event_entities' AND l.mode = 'AccessExclusiveLock'
                        AND l.granted AND l.pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if n > 0 {
                seen = true;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(seen, "the run never reached its write phase");
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        // the server notices the dead client and rolls back
        for _ in 0..2000 {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'cdpctl%'
                       AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if n == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            partition(&c).await == before,
            "delay {delay_ms} ms: partition changed"
        );
        assert_eq!(index_defs(&c).await, defs, "delay {delay_ms} ms");
        assert_eq!(queued(&c).await, queue_before, "delay {delay_ms} ms");
        assert_consistent(&c).await;
    }
    let sum = stitch_run(
        &t,
        StitchOptions {
            from_scratch: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(sum.mode, "full");
    assert_eq!(queued(&c).await, 0);
    assert_eq!(
        index_defs(&c).await,
        defs,
        "the rebuilt indexes are the same"
    );
    assert!(partition(&c).await == oracle(&c).await);
    assert_consistent(&c).await;
}

/// With no stitching rules, `stitch` (and `--dry-run`) say so, naming the
/// table, and every event becomes its own entity; never invalid SQL.
#[tokio::test(flavor = "multi_thread")]
async fn no_rules_is_a_clear_warning_and_every_event_its_own_entity() {
    let t = TestDb::new().await;
    let c = t.client().await;
    c.batch_execute("INSERT INTO public.sources (id, name) VALUES ('web', 'Web')")
        .await
        .unwrap();
    hits(&c, &[json!({"cookie": "a"}), json!({"cookie": "a"})]).await;
    let dry = run(t.cli().args(["--format", "json", "stitch", "--dry-run"]));
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let w = dry.json()["warning"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        w.contains("no stitching rules in cdp_ps.stitching_attributes_config"),
        "{}",
        dry.stdout
    );
    let out = run(t.cli().args(["stitch"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("every event becomes its own entity")
            || out.stderr.contains("every event becomes its own entity"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let n: i64 = c
        .query_one(
            "SELECT count(DISTINCT entity_id) FROM cdp_ps.event_entities",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    assert_consistent(&c).await;
}
