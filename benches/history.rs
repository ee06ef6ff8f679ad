//! Campaign history benchmark.
//!
//! 1. `history-at` for a customer with 1k campaigns in a table of N snapshots
//!    (HISTORY_BENCH_SNAPSHOTS, default 2M; the target is 10M) against a
//!    naive scan (the same DISTINCT ON query forced to a sequential scan) and
//!    against the planner's own plan for DISTINCT ON, all in the same run;
//!    the query plan must be index look-ups only.
//! 2. The capture trigger's overhead: one UPDATE touching the 1k campaigns
//!    of a customer (the priority shift when a campaign is created), with
//!    and without the triggers, interleaved (HISTORY_BENCH_ROUNDS, default 15).
//!
//! Run: `cargo bench --bench history` (or `bash bench/run.sh history`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use cdpctl::history::{capture, query, CaptureTarget, TableRef};
use chrono::{DateTime, TimeZone, Utc};

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

const NAIVE: &str = "
SELECT * FROM (
  SELECT DISTINCT ON (campaign_id) id, campaign_id, event_time, event_type, snapshot
    FROM inapp_campaigns.campaign_snapshots
   WHERE customer_id = $1 AND event_time <= $2
   ORDER BY campaign_id, event_time DESC, id DESC) x
 WHERE event_type <> 'deleted'";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total = env_u64("HISTORY_BENCH_SNAPSHOTS", 2_000_000);
    let rounds = env_u64("HISTORY_BENCH_ROUNDS", 15) as usize;
    let t = common::TestDb::new().await;
    let db = t.db().await;
    let c = &db.client;
    c.batch_execute("SET maintenance_work_mem = '512MB'; SET synchronous_commit = off")
        .await
        .unwrap();

    // --- data: customer 1 has 1,000 campaigns x 10 snapshots; the rest of
    // the rows belong to customers with 100 campaigns x 10 snapshots.
    let versions = 10i64;
    let target_rows = 1000 * versions;
    let others = ((total as i64 - target_rows).max(0)) / (100 * versions);
    let rows = target_rows + others * 100 * versions;
    eprintln!("generating {rows} snapshots ({} customers) ...", others + 1);
    let start = Instant::now();
    c.batch_execute("DROP INDEX inapp_campaigns.campaign_snapshots_lookup_idx")
        .await
        .unwrap();
    let base = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    // (customer, campaigns per customer, first customer id, count)
    for (first, count, per) in [(1i64, 1i64, 1000i64), (2, others, 100)] {
        if count == 0 {
            continue;
        }
        // in chunks of customers so progress is visible and WAL stays small
        let chunk = 500i64;
        let mut from = first;
        while from < first + count {
            let to = (from + chunk - 1).min(first + count - 1);
            c.execute(
                "INSERT INTO inapp_campaigns.campaign_snapshots (customer_id, campaign_id, event_time, event_type, snapshot)
                 SELECT cu, cu * 10000 + k,
                        $4::timestamptz + v * interval '9 days' + (cu % 97) * interval '1 hour' + k * interval '7 seconds',
                        CASE WHEN v = 0 THEN 'created' WHEN v = 9 AND k % 10 = 0 THEN 'deleted' ELSE 'updated' END,
                        jsonb_build_object(
                           'id', cu * 10000 + k, 'customer_id', cu,
                           'name', 'Campaign ' || k || ' v' || v,
                           'status', CASE WHEN (k + v) % 3 = 0 THEN 'paused' ELSE 'active' END,
                           'priority', k + v,
                           'updated_at', $4::timestamptz + v * interval '9 days',
                           'content', jsonb_build_object('headline', 'Headline of campaign ' || k,
                                                         'body', repeat('lorem ipsum ', 8),
                                                         'segments', jsonb_build_array(k % 7, k % 11)))
                   FROM generate_series($1::bigint, $2::bigint) cu,
                        generate_series(1, $3::bigint) k,
                        generate_series(0, 9) v",
                &[&from, &to, &per, &base],
            )
            .await
            .unwrap();
            from = to + 1;
        }
    }
    let load = start.elapsed();
    let start = Instant::now();
    c.batch_execute(
        "CREATE INDEX campaign_snapshots_lookup_idx ON inapp_campaigns.campaign_snapshots
             (customer_id, campaign_id, event_time DESC, id DESC)",
    )
    .await
    .unwrap();
    c.batch_execute("VACUUM ANALYZE inapp_campaigns.campaign_snapshots")
        .await
        .unwrap();
    let index = start.elapsed();
    let size: String = c
        .query_one(
            "SELECT pg_size_pretty(pg_total_relation_size('inapp_campaigns.campaign_snapshots'))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    println!(
        "history: {rows} snapshots ({size} with indexes), loaded in {:.1}s, indexed in {:.1}s",
        load.as_secs_f64(),
        index.as_secs_f64()
    );

    // --- history-at: times spread over the history of customer 1
    let probes: Vec<DateTime<Utc>> = (0..20)
        .map(|i| base + chrono::Duration::hours(12 + i * 5 * 24 - (i % 3)))
        .collect();
    // the plan: index probes only
    let plan: Vec<String> = c
        .query(
            &format!(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {}",
                query::state_at_sql(&db.schemas, false)
            ),
            &[&1i64, &probes[10], &false],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let plan_text = plan.join("\n");
    assert!(
        !plan_text.contains("Seq Scan"),
        "history-at must not scan:\n{plan_text}"
    );
    assert!(plan_text.contains("Index Only Scan") && plan_text.contains("Index Scan"));
    println!("history: EXPLAIN of history-at (customer 1, 1,000 campaigns):");
    for l in &plan {
        if l.contains("Scan") || l.contains("Execution Time") || l.contains("Recursive") {
            println!("    {l}");
        }
    }

    // the query alone (rows not decoded), the same way as the baselines
    let sql = query::state_at_sql(&db.schemas, false);
    let mut ours = Vec::new();
    let mut found = 0;
    for _ in 0..3 {
        for at in &probes {
            let s = Instant::now();
            let r = c.query(&sql, &[&1i64, at, &false]).await.unwrap();
            ours.push(s.elapsed());
            found = found.max(r.len());
        }
    }
    // end to end: the library call `history-at` makes, snapshots decoded
    let mut e2e = Vec::new();
    for at in &probes {
        let s = Instant::now();
        query::state_at(c, &db.schemas, 1, *at, None, false)
            .await
            .unwrap();
        e2e.push(s.elapsed());
    }
    let e2e_med = median(e2e.clone());
    let e2e_max = *e2e.iter().max().unwrap();
    let ours_med = median(ours.clone());
    let ours_max = *ours.iter().max().unwrap();

    // the planner's own plan for DISTINCT ON (reads every snapshot of the customer)
    let mut planner = Vec::new();
    for at in probes.iter().take(10) {
        let s = Instant::now();
        c.query(NAIVE, &[&1i64, at]).await.unwrap();
        planner.push(s.elapsed());
    }
    let planner_med = median(planner);

    // naive: no index, a scan over the whole table
    c.batch_execute(
        "SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off",
    )
    .await
    .unwrap();
    let mut naive = Vec::new();
    let mut naive_rows = 0;
    for at in probes.iter().take(3) {
        let s = Instant::now();
        naive_rows = c.query(NAIVE, &[&1i64, at]).await.unwrap().len();
        naive.push(s.elapsed());
    }
    c.batch_execute("RESET enable_indexscan; RESET enable_bitmapscan; RESET enable_indexonlyscan")
        .await
        .unwrap();
    let naive_med = median(naive);
    let check = query::state_at(c, &db.schemas, 1, probes[2], None, false)
        .await
        .unwrap()
        .len();
    assert_eq!(check, naive_rows, "naive and history-at disagree");

    println!("| measurement | time | vs history-at |");
    println!("|---|---|---|");
    println!(
        "| history-at query: skip scan + LATERAL index probe per campaign (median of {}) | {:.2} ms (max {:.2} ms) | 1.0× |",
        ours.len(),
        ms(ours_med),
        ms(ours_max)
    );
    println!(
        "| history-at end to end, 1,000 snapshots decoded (median of {}) | {:.2} ms (max {:.2} ms) | |",
        e2e.len(),
        ms(e2e_med),
        ms(e2e_max)
    );
    println!(
        "| DISTINCT ON, planner's choice (index range over all the customer's snapshots) | {:.2} ms | {:.2}× |",
        ms(planner_med),
        planner_med.as_secs_f64() / ours_med.as_secs_f64()
    );
    println!(
        "| naive scan (same DISTINCT ON, sequential scan) | {:.1} ms | {:.0}× |",
        ms(naive_med),
        naive_med.as_secs_f64() / ours_med.as_secs_f64()
    );
    println!(
        "history-at target < 50 ms: {}",
        if ms(e2e_med) < 50.0 { "met" } else { "NOT met" }
    );

    // --- trigger overhead
    c.batch_execute(
        "CREATE TABLE public.bench_campaigns (
             id          bigserial PRIMARY KEY,
             customer_id bigint NOT NULL,
             name        text NOT NULL,
             status      text NOT NULL,
             priority    int NOT NULL,
             content     jsonb NOT NULL,
             updated_at  timestamptz NOT NULL);
         INSERT INTO public.bench_campaigns (customer_id, name, status, priority, content, updated_at)
         SELECT cu, 'Campaign ' || k, 'active', k,
                jsonb_build_object('headline', 'Headline ' || k, 'body', repeat('lorem ipsum ', 8),
                                   'segments', jsonb_build_array(k % 7, k % 11)),
                now()
           FROM generate_series(1, 100) cu, generate_series(1, 1000) k;
         CREATE INDEX ON public.bench_campaigns (customer_id);",
    )
    .await
    .unwrap();
    c.batch_execute("VACUUM ANALYZE public.bench_campaigns")
        .await
        .unwrap();
    let target = CaptureTarget {
        table: TableRef {
            schema: "public".into(),
            name: "bench_campaigns".into(),
        },
        customer_column: "customer_id".into(),
        id_column: "id".into(),
    };
    capture::install_on(c, &db.schemas, &target).await.unwrap();
    let update = "UPDATE public.bench_campaigns SET priority = priority + 1, updated_at = clock_timestamp() WHERE customer_id = $1";
    let max_before: i64 = c
        .query_one(
            "SELECT max(id) FROM inapp_campaigns.campaign_snapshots",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..rounds + 2 {
        let cust = (round % 100) as i64 + 1;
        c.batch_execute("ALTER TABLE public.bench_campaigns DISABLE TRIGGER USER")
            .await
            .unwrap();
        let s = Instant::now();
        let n = c.execute(update, &[&cust]).await.unwrap();
        let d0 = s.elapsed();
        assert_eq!(n, 1000);
        c.batch_execute("ALTER TABLE public.bench_campaigns ENABLE TRIGGER USER")
            .await
            .unwrap();
        let s = Instant::now();
        c.execute(update, &[&(cust + 50)]).await.unwrap();
        let d1 = s.elapsed();
        if round >= 2 {
            // the first rounds warm the caches
            without.push(d0);
            with.push(d1);
        }
    }
    let captured: i64 = c
        .query_one(
            "SELECT count(*) FROM inapp_campaigns.campaign_snapshots WHERE id > $1",
            &[&max_before],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(captured as usize, (rounds + 2) * 1000);
    let (w0, w1) = (median(without), median(with));
    println!("| UPDATE of 1,000 campaigns (median of {rounds}) | time | ratio |");
    println!("|---|---|---|");
    println!("| without capture trigger | {:.2} ms | 1.0× |", ms(w0));
    println!(
        "| with capture trigger (1,000 snapshots, one INSERT ... SELECT) | {:.2} ms | {:.2}× |",
        ms(w1),
        w1.as_secs_f64() / w0.as_secs_f64()
    );
    println!(
        "trigger overhead target <= 3x: {}",
        if w1.as_secs_f64() <= 3.0 * w0.as_secs_f64() {
            "met"
        } else {
            "NOT met"
        }
    );
}
