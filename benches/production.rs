//! Production switch benchmark: how long go-production and rollback take on a
//! large CDP compared with a tiny one (the switch only touches the catalogue,
//! so it should not grow with the data), and what applications pay for reading
//! the new `pivoted_customer_attributes` view instead of the legacy table.
//!
//! `cargo bench --bench production`; sizes: PROD_BENCH_ENTITIES (default
//! 100000), PROD_BENCH_ATTRIBUTES (20), PROD_BENCH_LOOKUPS (2000).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use cdpctl::production::{self, sql::AttrColumn};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A CDP with `entities` customers and `attributes` attribute values each, a
/// legacy pivoted table holding the same values, a legacy events view and a
/// view depending on the pivoted table.
async fn build(entities: u64, attributes: u64) -> common::TestDb {
    let t = common::TestDb::new().await;
    let c = t.client().await;
    c.batch_execute(&format!(
        "INSERT INTO cdp_attr.attributes
              SELECT 'attr_' || lpad(i::text, 2, '0'),
                     jsonb_build_object('type', CASE WHEN i % 5 = 0 THEN 'list' ELSE 'last' END)
                FROM generate_series(1, {attributes}) i;
         INSERT INTO cdp_attr.customer_entities (id, calculated)
              SELECT md5('e' || g)::uuid, now() FROM generate_series(1, {entities}) g;
         INSERT INTO cdp_attr.customer_attributes (customer_entity_id, attribute_id, value)
              SELECT md5('e' || g)::uuid, 'attr_' || lpad(i::text, 2, '0'), 'value ' || (g % 1000)
                FROM generate_series(1, {entities}) g, generate_series(1, {attributes}) i;
         CREATE TABLE cdp_ps.customer_events_to_process (event_id uuid);
         CREATE VIEW public.customer_events AS
              SELECT id, NULL::uuid AS customer_entity_id, source_id, type, version, event_time, payload
                FROM cdp_ce.customer_events;
         ANALYZE;"
    ))
    .await
    .unwrap();
    // the legacy table: the same pivot, materialized
    let db = t.db().await;
    let cols: Vec<AttrColumn> = production::attribute_columns(&db).await.unwrap();
    let view = production::sql::pivot_view_sql(&db.schemas, &cols).replace(
        "\"public\".\"pivoted_customer_attributes\"",
        "\"public\".\"tmp_pivot\"",
    );
    c.batch_execute(&format!(
        "{view};
         CREATE TABLE public.pivoted_customer_attributes AS SELECT * FROM public.tmp_pivot;
         DROP VIEW public.tmp_pivot;
         ALTER TABLE public.pivoted_customer_attributes ADD PRIMARY KEY (customer_entity_id);
         CREATE VIEW public.pivoted_customer_attributes_view AS
              SELECT customer_entity_id, attr_01 FROM public.pivoted_customer_attributes;"
    ))
    .await
    .unwrap();
    c.batch_execute("VACUUM ANALYZE public.pivoted_customer_attributes")
        .await
        .unwrap();
    t
}

/// Median time of a go-production and of a rollback over `rounds` round trips.
async fn switch_times(t: &common::TestDb, rounds: usize) -> (Duration, Duration) {
    let db = t.app().connect("go-production").await.unwrap();
    let timeout = Duration::from_secs(5);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let s = Instant::now();
        let plan = production::go_plan(&db).await.unwrap();
        production::execute(&db, &plan, timeout).await.unwrap();
        on.push(s.elapsed());
        let s = Instant::now();
        let (_, id) = production::rollback_checks(&db).await.unwrap();
        let plan = production::rollback_plan(&db, id.unwrap()).await.unwrap();
        production::execute(&db, &plan, timeout).await.unwrap();
        off.push(s.elapsed());
    }
    (median(on), median(off))
}

async fn timed(c: &tokio_postgres::Client, sql: &str, rounds: usize) -> Duration {
    let mut v = Vec::new();
    for _ in 0..rounds {
        let s = Instant::now();
        c.batch_execute(sql).await.unwrap();
        v.push(s.elapsed());
    }
    median(v)
}

/// Mean time of one `WHERE customer_entity_id = $1` look-up.
async fn lookups(c: &tokio_postgres::Client, ids: &[String]) -> Duration {
    let st = c
        .prepare("SELECT * FROM public.pivoted_customer_attributes WHERE customer_entity_id = $1::text::uuid")
        .await
        .unwrap();
    let s = Instant::now();
    for id in ids {
        let rows = c.query(&st, &[id]).await.unwrap();
        assert_eq!(rows.len(), 1);
    }
    s.elapsed() / ids.len() as u32
}

#[tokio::main]
async fn main() {
    let entities = env("PROD_BENCH_ENTITIES", 100_000);
    let attributes = env("PROD_BENCH_ATTRIBUTES", 20);
    let n_lookups = env("PROD_BENCH_LOOKUPS", 2_000);
    println!(
        "production switch: {entities} entities x {attributes} attributes ({} attribute rows)",
        entities * attributes
    );
    let s = Instant::now();
    let big = build(entities, attributes).await;
    println!("built in {:.1}s", s.elapsed().as_secs_f64());
    let small = build(1_000, attributes).await;
    let c = big.client().await;
    let ids: Vec<String> = c
        .query(
            &format!(
                "SELECT md5('e' || (1 + (g * 7919) % {entities}))::uuid::text FROM generate_series(1, {n_lookups}) g"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    let full =
        "SELECT count(*), count(attr_01), count(attr_05) FROM public.pivoted_customer_attributes";
    let raw = "SELECT count(*), count(value) FROM cdp_attr.customer_attributes";
    let table_scan = timed(&c, full, 5).await;
    let table_lookup = lookups(&c, &ids).await;
    let raw_scan = timed(&c, raw, 5).await;

    let (small_on, small_off) = switch_times(&small, 5).await;
    let (big_on, big_off) = switch_times(&big, 5).await;

    let db = big.app().connect("go-production").await.unwrap();
    let plan = production::go_plan(&db).await.unwrap();
    production::execute(&db, &plan, Duration::from_secs(5))
        .await
        .unwrap();
    let view_scan = timed(&c, full, 5).await;
    let view_lookup = lookups(&c, &ids).await;

    println!();
    println!("| measurement | time | ratio |");
    println!("|---|---:|---:|");
    println!(
        "| go-production, 1k entities | {:.1} ms | 1.00 |",
        ms(small_on)
    );
    println!(
        "| go-production, {entities} entities | {:.1} ms | {:.2}x the 1k switch |",
        ms(big_on),
        big_on.as_secs_f64() / small_on.as_secs_f64()
    );
    println!("| rollback, 1k entities | {:.1} ms | 1.00 |", ms(small_off));
    println!(
        "| rollback, {entities} entities | {:.1} ms | {:.2}x the 1k rollback |",
        ms(big_off),
        big_off.as_secs_f64() / small_off.as_secs_f64()
    );
    println!(
        "| full read, legacy table | {:.0} ms | 1.00 |",
        ms(table_scan)
    );
    println!(
        "| full read, cdpctl view | {:.0} ms | {:.2}x the table |",
        ms(view_scan),
        view_scan.as_secs_f64() / table_scan.as_secs_f64()
    );
    println!(
        "| floor: one pass over the {} attribute rows | {:.0} ms | view = {:.2}x the floor |",
        entities * attributes,
        ms(raw_scan),
        view_scan.as_secs_f64() / raw_scan.as_secs_f64()
    );
    println!(
        "| one customer, legacy table | {:.0} µs | 1.00 |",
        table_lookup.as_secs_f64() * 1e6
    );
    println!(
        "| one customer, cdpctl view | {:.0} µs | {:.2}x the table |",
        view_lookup.as_secs_f64() * 1e6,
        view_lookup.as_secs_f64() / table_lookup.as_secs_f64()
    );
}
