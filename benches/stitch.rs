//! Stitching benchmark (DESIGN §6): cdpctl from scratch against the I/O floor
//! (COPY the identifiers out + COPY the rows the run writes in) and against
//! iterative SQL label propagation run to convergence, then an incremental
//! run of new events into the big graph.
//!
//! Sizes: STITCH_BENCH_EVENTS (default 1,000,000; 10,000,000 for the DESIGN
//! target), STITCH_BENCH_CHAINS / STITCH_BENCH_CHAIN_LEN (default 10 × 1,000),
//! STITCH_BENCH_INCREMENTAL (default 10,000), STITCH_BENCH_BASELINE_LIMIT_S
//! (default 1,800: the baseline is stopped and reported as a lower bound).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use cdpctl::output::{Format, Output};
use cdpctl::stitch::{self, Setup, StitchOptions};
use futures_util::{SinkExt, StreamExt};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

const WRITTEN: &[(&str, &str)] = &[
    ("cdp_ps", "identifiers"),
    ("cdp_ps", "matching"),
    ("cdp_ps", "refused_edges"),
    ("cdp_ps", "event_entities"),
    ("cdp_ps", "entities"),
    ("cdp_attr", "customer_entities"),
    ("cdpctl", "entity_changes"),
];

#[tokio::main]
async fn main() {
    let events = env("STITCH_BENCH_EVENTS", 1_000_000);
    let chains = env("STITCH_BENCH_CHAINS", 10);
    let chain_len = env("STITCH_BENCH_CHAIN_LEN", 1_000);
    let incr = env("STITCH_BENCH_INCREMENTAL", 10_000);
    let limit = Duration::from_secs(env("STITCH_BENCH_BASELINE_LIMIT_S", 1_800));
    let quiet = Output {
        format: Format::Json,
        quiet: true,
        verbose: 0,
    };

    let t = common::TestDb::new().await;
    let mut c = t.client().await;
    let mut db = t.db().await;
    let schemas = db.schemas.clone();
    let opts = cdpctl::demo::GenOptions {
        customers: (events.saturating_sub(chains * chain_len) / 10).max(1),
        chains,
        chain_len,
        extra_identifiers: 1,
        ..Default::default()
    };
    let t0 = Instant::now();
    let gen = cdpctl::demo::load(&mut c, &schemas, &opts).await.unwrap();
    c.batch_execute("DROP TABLE cdp_ps.customer_events_to_process")
        .await
        .unwrap();
    c.batch_execute("VACUUM ANALYZE cdp_ce.customer_events")
        .await
        .unwrap();
    println!(
        "stitch bench: {} events, {} customers, {} chains × {} events (generated in {})",
        gen.events,
        gen.customers,
        chains,
        chain_len,
        secs(t0.elapsed())
    );

    // 1. cdpctl from scratch
    let t0 = Instant::now();
    let sum = stitch::run(
        &mut db,
        &StitchOptions {
            from_scratch: true,
            ..Default::default()
        },
        &quiet,
    )
    .await
    .unwrap();
    let t_cdpctl = t0.elapsed();
    println!(
        "cdpctl stitch --from-scratch        {:>10}  ({} edges, {} identifiers, {} entities, {} refused)",
        secs(t_cdpctl),
        sum.edges,
        sum.new_identifiers,
        sum.entities_created,
        sum.refused_blocked
    );

    // 2. the I/O floor: COPY the identifiers out ...
    let setup = Setup::load(&db).await.unwrap();
    let sql = setup.extract_sql(&schemas, "cdp_ce.customer_events e");
    let t0 = Instant::now();
    let stream = c
        .copy_out(&format!("COPY ({sql}) TO STDOUT (FORMAT binary)"))
        .await
        .unwrap();
    futures_util::pin_mut!(stream);
    let mut bytes = 0usize;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.unwrap().len();
    }
    let t_out = t0.elapsed();
    // ... plus COPY the rows the run wrote into tables of the same shape
    let mut data = Vec::new();
    let mut rows = 0i64;
    for (schema, table) in WRITTEN {
        let q = format!("COPY {schema}.{table} TO STDOUT (FORMAT binary)");
        let stream = c.copy_out(&q).await.unwrap();
        futures_util::pin_mut!(stream);
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.unwrap());
        }
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {schema}.{table}"), &[])
            .await
            .unwrap()
            .get(0);
        rows += n;
        c.batch_execute(&format!(
            "DROP TABLE IF EXISTS public.floor_{table}; CREATE TABLE public.floor_{table} (LIKE {schema}.{table} INCLUDING ALL)"
        ))
        .await
        .unwrap();
        data.push((table, buf));
    }
    let t0 = Instant::now();
    for (table, buf) in &data {
        let sink = c
            .copy_in::<_, bytes::Bytes>(&format!(
                "COPY public.floor_{table} FROM STDIN (FORMAT binary)"
            ))
            .await
            .unwrap();
        futures_util::pin_mut!(sink);
        for chunk in buf.chunks(1 << 20) {
            sink.send(bytes::Bytes::copy_from_slice(chunk))
                .await
                .unwrap();
        }
        sink.finish().await.unwrap();
    }
    let t_in = t0.elapsed();
    let floor = t_out + t_in;
    println!(
        "I/O floor: COPY identifiers out     {:>10}  ({} MB)",
        secs(t_out),
        bytes / 1_000_000
    );
    println!(
        "I/O floor: COPY written rows in     {:>10}  ({rows} rows)",
        secs(t_in)
    );
    println!("I/O floor total                     {:>10}", secs(floor));
    for (table, _) in &data {
        c.batch_execute(&format!("DROP TABLE public.floor_{table}"))
            .await
            .unwrap();
    }

    // 3. iterative SQL label propagation to convergence, on the same edges
    // (given to it already extracted and indexed: untimed, in its favour)
    c.batch_execute(
        "CREATE UNLOGGED TABLE lp_edges AS SELECT event_id AS ev, identifier_id AS idn FROM cdp_ps.matching;
         CREATE INDEX ON lp_edges (idn); CREATE INDEX ON lp_edges (ev);
         CREATE UNLOGGED TABLE lp_label AS SELECT id AS idn, id AS label FROM cdp_ps.identifiers;
         ALTER TABLE lp_label ADD PRIMARY KEY (idn);
         CREATE UNLOGGED TABLE lp_changed (idn bigint);
         CREATE UNLOGGED TABLE lp_next (idn bigint);
         ANALYZE lp_edges; ANALYZE lp_label;",
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    c.batch_execute("INSERT INTO lp_changed SELECT idn FROM lp_label")
        .await
        .unwrap();
    let mut passes = 0u64;
    let mut converged = false;
    while t0.elapsed() < limit {
        passes += 1;
        let changed = c
            .execute(
                "WITH ev AS (SELECT DISTINCT e.ev FROM lp_edges e JOIN lp_changed c ON c.idn = e.idn),
                      evmin AS (SELECT e.ev, min(l.label) AS label FROM lp_edges e JOIN ev USING (ev)
                                  JOIN lp_label l ON l.idn = e.idn GROUP BY e.ev),
                      idmin AS (SELECT e.idn, min(m.label) AS label FROM lp_edges e JOIN evmin m USING (ev) GROUP BY e.idn),
                      upd AS (UPDATE lp_label l SET label = i.label FROM idmin i
                               WHERE l.idn = i.idn AND i.label < l.label RETURNING l.idn)
                 INSERT INTO lp_next SELECT idn FROM upd",
                &[],
            )
            .await
            .unwrap();
        c.batch_execute(
            "TRUNCATE lp_changed; INSERT INTO lp_changed SELECT idn FROM lp_next; TRUNCATE lp_next; ANALYZE lp_changed",
        )
        .await
        .unwrap();
        if changed == 0 {
            converged = true;
            break;
        }
    }
    if converged {
        c.batch_execute(
            "CREATE UNLOGGED TABLE lp_event_entities AS
               SELECT x.event_id, coalesce(min(l.label)::text, x.event_id::text) AS label
                 FROM cdp_ps.event_entities x
                 LEFT JOIN lp_edges e ON e.ev = x.event_id LEFT JOIN lp_label l ON l.idn = e.idn
                GROUP BY x.event_id",
        )
        .await
        .unwrap();
    }
    let t_lp = t0.elapsed();
    if converged {
        let (a, b): (i64, i64) = {
            let r = c
                .query_one(
                    "SELECT (SELECT count(DISTINCT label) FROM lp_event_entities), (SELECT count(*) FROM cdp_ps.entities)",
                    &[],
                )
                .await
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!(
            a, b,
            "label propagation and cdpctl disagree on the number of entities"
        );
        println!(
            "iterative SQL label propagation     {:>10}  ({passes} passes to convergence)",
            secs(t_lp)
        );
    } else {
        println!(
            "iterative SQL label propagation    >{:>10}  (stopped after {passes} passes, not converged)",
            secs(t_lp)
        );
    }
    c.batch_execute(
        "DROP TABLE IF EXISTS lp_edges, lp_label, lp_changed, lp_next, lp_event_entities",
    )
    .await
    .unwrap();

    // 4. incremental: new events into the big graph (1% bridge two customers)
    c.batch_execute(&format!(
        "INSERT INTO cdp_ce.customer_events (id, source_id, type, version, event_time, payload)
         SELECT gen_random_uuid(), source_id, type, version, now(),
                CASE WHEN random() < 0.01 AND payload ? 'cookie_id'
                     THEN jsonb_set(payload, '{{cookie_id}}', to_jsonb('ck-' || (random() * {})::int || '-0'))
                     ELSE payload END
           FROM cdp_ce.customer_events TABLESAMPLE SYSTEM (5) LIMIT {incr}",
        gen.customers
    ))
    .await
    .unwrap();
    let t0 = Instant::now();
    let inc = stitch::run(&mut db, &StitchOptions::default(), &quiet)
        .await
        .unwrap();
    let t_inc = t0.elapsed();
    println!(
        "cdpctl stitch, {} new events        {:>10}  ({} merges, {} entities updated)",
        inc.events,
        secs(t_inc),
        inc.merges,
        inc.entities_updated
    );
    println!();
    println!(
        "ratio cdpctl / I/O floor            {:>10.2}×  (target ≤ 1.5×)",
        t_cdpctl.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "ratio label propagation / cdpctl    {}{:>9.1}×  (target ≥ 10×)",
        if converged { " " } else { ">" },
        t_lp.as_secs_f64() / t_cdpctl.as_secs_f64()
    );
    println!(
        "incremental {} events               {:>10}  (target < 1 s)",
        inc.events,
        secs(t_inc)
    );
}
