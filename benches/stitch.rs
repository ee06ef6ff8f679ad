//! Stitching benchmark (DESIGN §6, issue "stitching at the I/O floor"). In
//! one run on the same generated identity graph it measures:
//! - `cdpctl stitch --from-scratch`, with its phases and peak RSS;
//! - the fixed I/O floor: the identifier extraction COPYed out (binary,
//!   drained) plus one `(event_id, entity_id)` row per event COPYed into an
//!   unindexed table — the same whatever cdpctl chooses to persist;
//! - frontier SQL label propagation over an indexed edge list (each pass
//!   touches only the neighbours of labels that changed in the previous
//!   pass), run to convergence; the edge list is built for it untimed;
//! - a streaming union-find in Python (bench/stitch_uf.py) reading
//!   `COPY ... TO STDOUT` through psql, blocklist applied;
//! - an incremental run of new events (some join existing entities, some
//!   bridge two) into the big graph.
//!
//! It checks that every method yields the same canonical partition (each
//! event labelled by the smallest event id of its entity, hashed).
//!
//! Sizes: STITCH_BENCH_EVENTS (default 1,000,000), STITCH_BENCH_CHAINS /
//! STITCH_BENCH_CHAIN_LEN (default 4 × 1,000), STITCH_BENCH_INCREMENTAL
//! (default 10,000), STITCH_BENCH_BASELINE_LIMIT_S (default 3,600: a
//! baseline still running then is reported as a lower bound).
//! Run: `STITCH_BENCH_EVENTS=5000000 bash bench/run.sh stitch`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use cdpctl::output::{Format, Output};
use cdpctl::stitch::{self, Setup, StitchOptions};
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Resets the peak RSS of this process (Linux `clear_refs` 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak RSS of this process since the last reset, in MiB.
fn peak_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The canonical partition hash of `(event, smallest event of its entity)`
/// rows produced by `sql` (text columns), as bench/stitch_uf.py computes it.
async fn partition_hash(c: &tokio_postgres::Client, sql: &str) -> (u64, u64) {
    let stream = c
        .copy_out(&format!("COPY ({sql}) TO STDOUT"))
        .await
        .unwrap();
    futures_util::pin_mut!(stream);
    let (mut h, mut n, mut rest) = (0u64, 0u64, Vec::<u8>::new());
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
        let mut start = 0;
        while let Some(p) = rest[start..].iter().position(|b| *b == b'\n') {
            let line = &rest[start..start + p];
            let line: Vec<u8> = line
                .iter()
                .map(|b| if *b == b'\t' { b'|' } else { *b })
                .collect();
            let d = Sha256::digest(&line);
            h = h.wrapping_add(u64::from_le_bytes(d[..8].try_into().unwrap()));
            n += 1;
            start += p + 1;
        }
        rest.drain(..start);
    }
    (h, n)
}

const CDPCTL_PARTITION: &str =
    "SELECT event_id::text, min(event_id::text) OVER (PARTITION BY entity_id)
                                  FROM cdp_ps.event_entities";

struct Row {
    method: String,
    seconds: Option<f64>,
    lower_bound: bool,
    note: String,
}

#[tokio::main]
async fn main() {
    let events = env("STITCH_BENCH_EVENTS", 1_000_000);
    let chains = env("STITCH_BENCH_CHAINS", 4);
    let chain_len = env("STITCH_BENCH_CHAIN_LEN", 1_000);
    let incr = env("STITCH_BENCH_INCREMENTAL", 10_000);
    let limit = Duration::from_secs(env("STITCH_BENCH_BASELINE_LIMIT_S", 3_600));
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
        contact_ids: false,
        ..Default::default()
    };
    let t0 = Instant::now();
    let gen = cdpctl::demo::load(&mut c, &schemas, &opts).await.unwrap();
    for sql in [
        "DROP TABLE cdp_ps.customer_events_to_process",
        "VACUUM ANALYZE cdp_ce.customer_events",
        "CHECKPOINT",
    ] {
        c.batch_execute(sql).await.unwrap();
    }
    eprintln!(
        "stitch bench: {} events, {} customers, {chains} chains × {chain_len} events (generated in {:.1}s)",
        gen.events,
        gen.customers,
        t0.elapsed().as_secs_f64()
    );
    let mut rows: Vec<Row> = Vec::new();

    // 1. cdpctl from scratch
    reset_peak();
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
    let t_cdpctl = t0.elapsed().as_secs_f64();
    let rss_cdpctl = peak_mib();
    let phases: Vec<String> = sum
        .phases_ms
        .iter()
        .map(|(k, v)| format!("{k} {:.2}", *v as f64 / 1000.0))
        .collect();
    let (h_cdpctl, n_events) = partition_hash(&c, CDPCTL_PARTITION).await;
    let entities: i64 = c
        .query_one("SELECT count(*) FROM cdp_ps.entities", &[])
        .await
        .unwrap()
        .get(0);
    c.batch_execute("CHECKPOINT").await.unwrap();

    // 2. the fixed floor: extraction out + one row per event in
    let setup = Setup::load(&db).await.unwrap();
    let extract = setup.extract_sql(&schemas, "cdp_ce.customer_events e");
    let t0 = Instant::now();
    let stream = c
        .copy_out(&format!("COPY ({extract}) TO STDOUT (FORMAT binary)"))
        .await
        .unwrap();
    futures_util::pin_mut!(stream);
    let mut bytes = 0usize;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.unwrap().len();
    }
    let t_out = t0.elapsed().as_secs_f64();
    let mut buf = Vec::new();
    {
        let stream = c
            .copy_out("COPY cdp_ps.event_entities TO STDOUT (FORMAT binary)")
            .await
            .unwrap();
        futures_util::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.unwrap());
        }
    }
    c.batch_execute("CREATE TABLE public.floor_rows (event_id uuid, entity_id uuid)")
        .await
        .unwrap();
    let t0 = Instant::now();
    {
        let sink = c
            .copy_in::<_, bytes::Bytes>("COPY public.floor_rows FROM STDIN (FORMAT binary)")
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
    let t_in = t0.elapsed().as_secs_f64();
    drop(buf);
    c.batch_execute("DROP TABLE public.floor_rows; CHECKPOINT")
        .await
        .unwrap();
    let floor = t_out + t_in;
    rows.push(Row {
        method: "fixed floor: extraction COPY out + one row per event COPY in".into(),
        seconds: Some(floor),
        lower_bound: false,
        note: format!(
            "out {t_out:.2} s ({} MB), in {t_in:.2} s ({n_events} rows)",
            bytes / 1_000_000
        ),
    });
    rows.push(Row {
        method: "`cdpctl stitch --from-scratch`".into(),
        seconds: Some(t_cdpctl),
        lower_bound: false,
        note: format!(
            "{}; peak RSS {rss_cdpctl:.0} MiB; {} identifiers, {entities} entities",
            phases.join(", "),
            sum.new_identifiers
        ),
    });

    // the attribute names by position in the extraction's value array
    let attrs_json = serde_json::to_string(&setup.attrs).unwrap();
    let unnested = format!(
        "SELECT x.id, u.k, u.v FROM ({extract}) x(id, t, vals, key)
           LEFT JOIN LATERAL unnest(x.vals) WITH ORDINALITY AS u(v, k) ON u.v IS NOT NULL"
    );

    // 3. frontier label propagation over an indexed edge list (built untimed)
    let attr_list: Vec<String> = setup.attrs.clone();
    c.execute(
        &format!(
            "CREATE UNLOGGED TABLE lp_edges AS
             SELECT x.id AS ev, i.id AS idn FROM ({unnested}) x
               JOIN cdp_ps.identifiers i ON i.attribute_id = ($1::text[])[x.k] AND i.value = x.v"
        ),
        &[&attr_list],
    )
    .await
    .unwrap();
    c.batch_execute(
        "CREATE INDEX ON lp_edges (idn, ev); CREATE INDEX ON lp_edges (ev, idn);
         CREATE UNLOGGED TABLE lp_label AS SELECT DISTINCT idn, idn AS label FROM lp_edges;
         ALTER TABLE lp_label ADD PRIMARY KEY (idn);
         CREATE UNLOGGED TABLE lp_ev AS SELECT DISTINCT ev, 9223372036854775807::bigint AS label FROM lp_edges;
         ALTER TABLE lp_ev ADD PRIMARY KEY (ev);
         CREATE UNLOGGED TABLE lp_front_a (idn bigint, label bigint);
         CREATE UNLOGGED TABLE lp_front_b (idn bigint, label bigint)",
    )
    .await
    .unwrap();
    for sql in ["VACUUM ANALYZE lp_edges, lp_label, lp_ev", "CHECKPOINT"] {
        c.batch_execute(sql).await.unwrap();
    }
    let t0 = Instant::now();
    c.batch_execute("INSERT INTO lp_front_a SELECT idn, label FROM lp_label; ANALYZE lp_front_a")
        .await
        .unwrap();
    let (mut passes, mut converged) = (0u64, false);
    let (mut cur, mut next) = ("lp_front_a", "lp_front_b");
    while t0.elapsed() < limit {
        passes += 1;
        // events next to changed identifiers take the smaller label; the
        // identifiers next to events that changed take theirs
        let changed = c
            .execute(
                &format!(
                    "WITH cand AS (SELECT e.ev, min(f.label) AS label FROM {cur} f JOIN lp_edges e ON e.idn = f.idn GROUP BY e.ev),
                          upd AS (UPDATE lp_ev l SET label = cand.label FROM cand
                                   WHERE l.ev = cand.ev AND cand.label < l.label RETURNING l.ev, l.label),
                          cand2 AS (SELECT e.idn, min(u.label) AS label FROM upd u JOIN lp_edges e ON e.ev = u.ev GROUP BY e.idn),
                          upd2 AS (UPDATE lp_label l SET label = cand2.label FROM cand2
                                    WHERE l.idn = cand2.idn AND cand2.label < l.label RETURNING l.idn, l.label)
                     INSERT INTO {next} SELECT idn, label FROM upd2"
                ),
                &[],
            )
            .await
            .unwrap();
        // TRUNCATE (a DELETE would leave dead rows that inflate the
        // planner's size estimate) and fresh statistics of the new frontier,
        // so each pass gets the plan its frontier size calls for
        c.batch_execute(&format!("TRUNCATE {cur}; ANALYZE {next}"))
            .await
            .unwrap();
        std::mem::swap(&mut cur, &mut next);
        if changed == 0 {
            converged = true;
            break;
        }
    }
    let t_lp = t0.elapsed().as_secs_f64();
    let h_lp = if converged {
        let (h, _) = partition_hash(
            &c,
            "SELECT e.id::text, min(e.id::text) OVER (PARTITION BY coalesce(l.label::text, e.id::text))
               FROM cdp_ce.customer_events e LEFT JOIN lp_ev l ON l.ev = e.id",
        )
        .await;
        Some(h)
    } else {
        None
    };
    c.batch_execute("DROP TABLE lp_edges, lp_label, lp_ev, lp_front_a, lp_front_b; CHECKPOINT")
        .await
        .unwrap();
    rows.push(Row {
        method: "frontier SQL label propagation, to convergence".into(),
        seconds: Some(t_lp),
        lower_bound: !converged,
        note: if converged {
            format!("{passes} passes")
        } else {
            format!("stopped after {passes} passes, not converged")
        },
    });

    // 4. streaming union-find in Python over psql's COPY output
    let rules: Vec<(Option<String>, String, bool)> = c
        .query(
            "SELECT attribute_id, value, is_regex FROM cdp_ps.stitching_blocklist",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/stitch_uf.py");
    let copy = format!("\\copy ({}) TO STDOUT", unnested.replace('\n', " "));
    let t0 = Instant::now();
    let py = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"set -o pipefail; psql -X -q -d "$1" -c "$2" | python3 "$3" "$4" "$5""#)
        .arg("bash")
        .arg(&t.url)
        .arg(&copy)
        .arg(script)
        .arg(serde_json::to_string(&rules).unwrap())
        .arg(&attrs_json)
        .output()
        .unwrap();
    let t_py_wall = t0.elapsed().as_secs_f64();
    assert!(
        py.status.success(),
        "python union-find failed: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let out = String::from_utf8_lossy(&py.stdout).into_owned();
    let field = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .unwrap_or("0")
            .to_string()
    };
    let t_py: f64 = field("seconds").parse().unwrap();
    let h_py: u64 = field("hash").parse().unwrap();
    rows.push(Row {
        method: "streaming union-find in Python (psql `\\copy` → stdin)".into(),
        seconds: Some(t_py),
        lower_bound: false,
        note: format!(
            "{} entities; peak RSS {:.0} MiB; {t_py_wall:.1} s with hashing",
            field("entities"),
            field("rss_kb").parse::<f64>().unwrap_or(0.0) / 1024.0
        ),
    });

    // 5. incremental: new events into the big graph, 1% bridge two customers
    c.batch_execute(&format!(
        "INSERT INTO cdp_ce.customer_events (id, source_id, type, version, event_time, payload)
         SELECT gen_random_uuid(), source_id, type, version, now(),
                CASE WHEN random() < 0.01 AND payload ? 'cookie_id'
                     THEN jsonb_set(payload, '{{cookie_id}}', to_jsonb('ck-' || (random() * {})::int || '-0'))
                     ELSE payload END
           FROM cdp_ce.customer_events TABLESAMPLE SYSTEM (5) LIMIT {incr};
         CHECKPOINT",
        gen.customers
    ))
    .await
    .unwrap();
    reset_peak();
    let t0 = Instant::now();
    let inc = stitch::run(&mut db, &StitchOptions::default(), &quiet)
        .await
        .unwrap();
    let t_inc = t0.elapsed().as_secs_f64();
    let rss_inc = peak_mib();
    let (h_inc, _) = partition_hash(&c, CDPCTL_PARTITION).await;
    // the same events from scratch must give the same partition
    stitch::run(
        &mut db,
        &StitchOptions {
            from_scratch: true,
            ..Default::default()
        },
        &quiet,
    )
    .await
    .unwrap();
    let (h_full2, _) = partition_hash(&c, CDPCTL_PARTITION).await;
    rows.push(Row {
        method: format!("`cdpctl stitch`, {} new events (incremental)", inc.events),
        seconds: Some(t_inc),
        lower_bound: false,
        note: format!(
            "{} merges, {} entities updated; peak RSS {rss_inc:.0} MiB",
            inc.merges, inc.entities_updated
        ),
    });

    println!(
        "| {} events, {} entities, {chains} chains × {chain_len} | seconds | notes |",
        n_events, entities
    );
    println!("|---|---:|---|");
    for r in &rows {
        println!(
            "| {} | {}{} | {} |",
            r.method,
            if r.lower_bound { "> " } else { "" },
            r.seconds.map(|s| format!("{s:.2}")).unwrap_or_default(),
            r.note
        );
    }
    println!();
    let ok = |b: bool| if b { "met" } else { "NOT met" };
    println!("| ratio (same run) | value | target | |");
    println!("|---|---:|---|---|");
    let r1 = t_cdpctl / floor;
    println!(
        "| cdpctl / fixed floor | {r1:.2}× | ≤ 3× | {} |",
        ok(r1 <= 3.0)
    );
    let r2 = t_lp / t_cdpctl;
    println!(
        "| label propagation / cdpctl | {}{r2:.1}× | ≥ 8× | {} |",
        if converged { "" } else { "> " },
        ok(r2 >= 8.0)
    );
    let r3 = t_py / t_cdpctl;
    println!(
        "| Python union-find / cdpctl | {r3:.1}× | ≥ 4× | {} |",
        ok(r3 >= 4.0)
    );
    println!(
        "| incremental, {} events | {t_inc:.2} s | < 1 s | {} |",
        inc.events,
        ok(t_inc < 1.0)
    );
    let same = Some(h_cdpctl) == h_lp.or(Some(h_cdpctl)) && h_cdpctl == h_py && h_inc == h_full2;
    println!(
        "| same partition: from scratch = label propagation = Python; incremental = from scratch | {} | identical | {} |",
        if same { "yes" } else { "NO" },
        ok(same)
    );
    assert_eq!(h_cdpctl, h_py, "cdpctl and the Python union-find disagree");
    if let Some(h) = h_lp {
        assert_eq!(h_cdpctl, h, "cdpctl and label propagation disagree");
    }
    assert_eq!(h_inc, h_full2, "incremental and from-scratch disagree");
}
