//! calc-attrs benchmark: 20 attributes of mixed types over generated
//! customers (default 100k entities / ~1M events; CDPCTL_BENCH_ENTITIES and
//! CDPCTL_BENCH_EVENTS_PER scale it). Measures in one run:
//!   floor        one pass evaluating the same value expressions (and the
//!                custom queries) over the same events, output discarded
//!   full         cdpctl from scratch (every value written) and --all (recalculate, keep data)
//!   incremental  1k dirty entities
//!   per-entity   one SQL query per entity evaluating all 20 definitions,
//!                timed on a sample and extrapolated; and one query per
//!                (entity, definition), timed on 100 entities and extrapolated
//! and prints the ratios.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use cdpctl::attrs::definition::{Definition, Kind};
use cdpctl::attrs::{self, plan, CacheMode, CalcOptions};
use cdpctl::demo::GenOptions;
use futures_util::{pin_mut, StreamExt};
use serde_json::json;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

fn extra() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "last_page",
            json!({"type": "last", "value": "payload->>'page'", "types": ["page_view"]}),
        ),
        (
            "first_campaign",
            json!({"type": "first", "value": "payload->>'campaign'", "sources": ["email"]}),
        ),
        (
            "pages",
            json!({"type": "list", "value": "payload->>'page'"}),
        ),
        (
            "app_versions",
            json!({"type": "num_of_unique", "value": "payload->>'app_version'", "sources": ["app"]}),
        ),
        (
            "favourite_family",
            json!({"type": "most_frequent", "value": "payload->>'device_family'",
            "weight": "CASE WHEN type = 'signin' THEN 2 ELSE 1 END"}),
        ),
        (
            "items_bought",
            json!({"type": "sum", "value": "jsonb_array_length(payload->'items')", "types": ["purchase"]}),
        ),
    ]
}

/// SQL of one definition for the entity whose events are `base`.
fn per_entity_sql(d: &Definition) -> String {
    if d.kind == Kind::Custom {
        return format!(
            "SELECT CASE WHEN pg_typeof(value) = 'numeric'::regtype THEN trim_scale(value::text::numeric)::text
                         ELSE value::text END FROM ({}) q",
            d.query
        );
    }
    let cond = plan::condition(d).unwrap_or_else(|| "true".into());
    let inner = format!(
        "CROSS JOIN LATERAL (SELECT ({}) AS value, ({})::numeric AS weight WHERE {cond}) i",
        d.value,
        d.weight.as_deref().unwrap_or("1")
    );
    let vals = if d.has_outer() {
        format!(
            "SELECT e.id, e.event_time, o.value::text AS v, i.weight * o.weight AS w FROM base e {inner}
             CROSS JOIN LATERAL (SELECT * FROM (SELECT ({}) AS value, ({})::numeric AS weight
                                   FROM (SELECT i.value, i.weight) i) o {}) o
             WHERE o.value IS NOT NULL",
            d.outer_value.as_deref().unwrap_or("value"),
            d.outer_weight.as_deref().unwrap_or("1"),
            d.outer_filter.as_ref().map(|f| format!("WHERE {f}")).unwrap_or_default()
        )
    } else {
        format!("SELECT e.id, e.event_time, i.value::text AS v, i.weight AS w FROM base e {inner} WHERE i.value IS NOT NULL")
    };
    let num = r"v ~ '^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$'";
    match d.kind {
        Kind::First => format!("SELECT v FROM ({vals}) x ORDER BY event_time, id, v COLLATE \"C\" LIMIT 1"),
        Kind::Last => format!("SELECT v FROM ({vals}) x ORDER BY event_time DESC, id DESC, v COLLATE \"C\" LIMIT 1"),
        Kind::MostFrequent => format!("SELECT v FROM ({vals}) x GROUP BY v ORDER BY sum(w) DESC, v COLLATE \"C\" LIMIT 1"),
        Kind::LeastFrequent => format!("SELECT v FROM ({vals}) x GROUP BY v ORDER BY sum(w), v COLLATE \"C\" LIMIT 1"),
        Kind::List => format!("SELECT DISTINCT v FROM ({vals}) x"),
        Kind::NumOfUnique => format!("SELECT count(DISTINCT v)::text FROM ({vals}) x HAVING count(*) > 0"),
        Kind::Value => format!("SELECT min(v COLLATE \"C\") FROM ({vals}) x HAVING count(*) > 0"),
        Kind::Sum => format!("SELECT trim_scale(sum(v::numeric))::text FROM ({vals}) x WHERE {num} HAVING count(*) > 0"),
        Kind::Avg => format!("SELECT trim_scale(round(avg(v::numeric), 10))::text FROM ({vals}) x WHERE {num} HAVING count(*) > 0"),
        Kind::Min | Kind::Max => {
            let agg = if d.kind == Kind::Min { "min" } else { "max" };
            format!("SELECT CASE WHEN bool_and({num}) THEN trim_scale({agg}(CASE WHEN {num} THEN v::numeric END))::text ELSE {agg}(v) END FROM ({vals}) x HAVING count(*) > 0")
        }
        Kind::Custom => unreachable!(),
    }
}

async fn run() {
    let entities = env("CDPCTL_BENCH_ENTITIES", 100_000);
    let per = env("CDPCTL_BENCH_EVENTS_PER", 10) as u32;
    let sample = env("CDPCTL_BENCH_SAMPLE", 300) as usize;
    let dirty = env("CDPCTL_BENCH_DIRTY", 1000);
    let t = common::TestDb::new().await;
    let app = t.app();
    let mut db = app.connect("bench").await.unwrap();
    let c = t.client().await;
    let t0 = Instant::now();
    let schemas = db.schemas.clone();
    let seeded = cdpctl::demo::load(
        &mut db.client,
        &schemas,
        &GenOptions {
            customers: entities,
            events_per_customer: per,
            chains: 0,
            contact_ids: false,
            ..GenOptions::default()
        },
    )
    .await
    .unwrap();
    c.batch_execute(
        "INSERT INTO cdp_ps.event_entities (event_id, entity_id)
         SELECT id, md5('c' || coalesce(substring(coalesce(payload->>'cookie_id', payload->>'device_id',
                                                            payload->>'email', payload->>'ga_id') from '(\\d+)'), 'x'))::uuid
           FROM cdp_ce.customer_events;
         INSERT INTO cdp_attr.customer_entities (id) SELECT DISTINCT entity_id FROM cdp_ps.event_entities;",
    )
    .await
    .unwrap();
    for t in [
        "cdp_ce.customer_events",
        "cdp_ps.event_entities",
        "cdp_attr.customer_entities",
    ] {
        c.batch_execute(&format!("VACUUM ANALYZE {t}"))
            .await
            .unwrap();
    }
    for (id, d) in extra() {
        c.execute(
            "INSERT INTO cdp_attr.attributes (id, definition) VALUES ($1, $2)",
            &[&id, &d],
        )
        .await
        .unwrap();
    }
    let n_entities: i64 = c
        .query_one("SELECT count(*) FROM cdp_attr.customer_entities", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "calc_attrs: {} entities, {} events, 20 attributes (seeded in {:.1}s)",
        n_entities,
        seeded.events,
        t0.elapsed().as_secs_f64()
    );
    // context computed once up front, so every run below does the same work
    let keys = attrs::context::resolve_keys(&db, &[]).await.unwrap();
    attrs::context::refresh(&mut db, &keys).await.unwrap();
    let plan = attrs::build_plan(&db, &[]).await.unwrap();
    assert_eq!(plan.defs.len(), 20);

    // floor: the same value expressions, one pass, output discarded (on
    // the main session, over its own copy of the batch)
    db.client
        .batch_execute(&format!(
            "TRUNCATE {b}; INSERT INTO {b} SELECT (row_number() OVER (ORDER BY id))::int4 - 1, id, xmin::text
               FROM cdp_attr.customer_entities; ANALYZE {b};",
            b = plan::BATCH
        ))
        .await
        .unwrap();
    let mut cols = vec![
        "e.cdpctl_idx".to_string(),
        "e.event_time".into(),
        "e.id".into(),
    ];
    for (i, _) in &plan.builtin {
        let d = &plan.defs[*i];
        cols.push(match &d.outer_value {
            Some(o) => format!(
                "ARRAY(SELECT ({o})::text FROM (SELECT ({}) AS value) v)",
                d.value
            ),
            None => format!("({})::text", d.value),
        });
    }
    let mut floor_sql = vec![format!(
        "SELECT {} FROM {}",
        cols.join(", "),
        plan::events_scope(&db)
    )];
    for (i, numeric) in &plan.customs {
        floor_sql.push(plan::custom_sql(&plan.defs[*i], *numeric));
    }
    let mut floor_parts = Vec::new();
    let floor = {
        let mut bytes = 0usize;
        for (k, sql) in floor_sql.iter().enumerate() {
            let t = Instant::now();
            if k == 1 {
                // the custom queries read the batch's events copied once
                db.client
                    .batch_execute(&format!(
                        "{}; {}",
                        plan::events_table_sql(&db),
                        plan::fill_events_sql(&db)
                    ))
                    .await
                    .unwrap();
            }
            let stream = db
                .client
                .copy_out(&format!("COPY ({sql}) TO STDOUT (FORMAT binary)"))
                .await
                .unwrap();
            pin_mut!(stream);
            while let Some(chunk) = stream.next().await {
                bytes += chunk.unwrap().len();
            }
            floor_parts.push(t.elapsed().as_secs_f64());
        }
        let s: f64 = floor_parts.iter().sum();
        println!(
            "floor (one pass evaluating the value expressions + custom queries): {s:.2}s = {:.2}s pass + {:.2}s custom queries ({} MB streamed)",
            floor_parts[0],
            s - floor_parts[0],
            bytes >> 20
        );
        s
    };
    let calc = |opts: CalcOptions| {
        let app = t.app();
        async move {
            let mut db = app.connect("calc-attrs").await.unwrap();
            let t = Instant::now();
            let sum = attrs::calculate(&mut db, &opts, &app.out).await.unwrap();
            (t.elapsed().as_secs_f64(), sum)
        }
    };
    let base = CalcOptions {
        cache: CacheMode::Skip,
        batch_size: Some(100_000),
        ..CalcOptions::default()
    };
    let (scratch, sum) = calc(CalcOptions {
        from_scratch: true,
        ..base.clone()
    })
    .await;
    println!(
        "cdpctl calc-attrs --from-scratch: {scratch:.2}s ({} entities, {} values written, {} batches; pass {:.2}s, custom {:.2}s, diff+write {:.2}s)",
        sum.entities_calculated, sum.values_written, sum.batches, sum.seconds_pass, sum.seconds_custom, sum.seconds_write
    );
    let (all, sum) = calc(CalcOptions {
        all: true,
        ..base.clone()
    })
    .await;
    println!(
        "cdpctl calc-attrs --all (nothing changed): {all:.2}s ({} entities, {} changed; pass {:.2}s, custom {:.2}s, diff+write {:.2}s)",
        sum.entities_calculated, sum.entities_changed, sum.seconds_pass, sum.seconds_custom, sum.seconds_write
    );
    c.execute(
        "UPDATE cdp_attr.customer_entities SET calculated = NULL
          WHERE id IN (SELECT id FROM cdp_attr.customer_entities ORDER BY md5(id::text) LIMIT $1)",
        &[&(dirty as i64)],
    )
    .await
    .unwrap();
    let (incr, sum) = calc(base.clone()).await;
    println!(
        "cdpctl calc-attrs incremental, {} dirty entities: {:.3}s (pass {:.3}s, custom {:.3}s, diff+write {:.3}s, rest {:.3}s)",
        sum.entities_calculated,
        incr,
        sum.seconds_pass,
        sum.seconds_custom,
        sum.seconds_write,
        incr - sum.seconds_pass - sum.seconds_custom - sum.seconds_write
    );

    // per-entity baseline: one query per entity evaluating all 20 definitions
    let parts: Vec<String> = plan
        .defs
        .iter()
        .map(|d| {
            format!(
                "SELECT {} AS a, x.v FROM ({}) x(v)",
                cdpctl::db::quote_literal(&d.id),
                per_entity_sql(d)
            )
        })
        .collect();
    let per_sql = format!(
        "WITH base AS (SELECT e.id, e.source_id, e.type, e.version, e.event_time, e.payload
                         FROM cdp_ps.event_entities ee JOIN cdp_ce.customer_events e ON e.id = ee.event_id
                        WHERE ee.entity_id = $1::text::uuid)
         {}",
        parts.join("\nUNION ALL\n")
    );
    let stmt = c.prepare(&per_sql).await.unwrap();
    let ids: Vec<String> = c
        .query(
            "SELECT id::text FROM cdp_attr.customer_entities ORDER BY md5(id::text || 'sample') LIMIT $1",
            &[&(sample as i64)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let t1 = Instant::now();
    for id in &ids {
        c.query(&stmt, &[id]).await.unwrap();
    }
    let per_sample = t1.elapsed().as_secs_f64();
    let per_entity = per_sample * n_entities as f64 / ids.len() as f64;
    // the seed component's shape: one query per (entity, attribute)
    let base_cte = "WITH base AS (SELECT e.id, e.source_id, e.type, e.version, e.event_time, e.payload
                         FROM cdp_ps.event_entities ee JOIN cdp_ce.customer_events e ON e.id = ee.event_id
                        WHERE ee.entity_id = $1::text::uuid)";
    let mut per_attr_stmts = Vec::new();
    for d in &plan.defs {
        per_attr_stmts.push(
            c.prepare(&format!("{base_cte} {}", per_entity_sql(d)))
                .await
                .unwrap(),
        );
    }
    let small = &ids[..ids.len().min(100)];
    let t3 = Instant::now();
    for id in small {
        for s in &per_attr_stmts {
            c.query(s, &[id]).await.unwrap();
        }
    }
    let per_attr = t3.elapsed().as_secs_f64() * n_entities as f64 / small.len() as f64;
    println!(
        "per-(entity, attribute) baseline: extrapolated from {} entities: {per_attr:.1}s",
        small.len()
    );
    // the baseline doubles as a cross-check of the stored values
    let mut mismatches = 0;
    for id in &ids {
        let rows = c.query(&stmt, &[id]).await.unwrap();
        let mut want: Vec<(String, String)> = rows
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(1).map(|v| (r.get(0), v)))
            .collect();
        want.sort();
        let mut got: Vec<(String, String)> = c
            .query(
                "SELECT attribute_id, value FROM cdp_attr.customer_attributes WHERE customer_entity_id = $1::text::uuid",
                &[id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        got.sort();
        if want != got {
            if mismatches == 0 {
                eprintln!("first mismatch, entity {id}:\n per-entity SQL {want:?}\n cdpctl         {got:?}");
            }
            mismatches += 1;
        }
    }
    println!(
        "per-entity baseline: {per_sample:.2}s for {} entities, extrapolated to {per_entity:.1}s for {n_entities} ({} of {} sampled entities differ from cdpctl)",
        ids.len(),
        mismatches,
        ids.len()
    );
    println!();
    println!("| measurement | seconds | ratio |");
    println!("|---|---|---|");
    println!("| floor: one pass evaluating the same expressions (built-in {:.2}s + custom queries {:.2}s) | {floor:.2} | 1.00× |", floor_parts[0], floor - floor_parts[0]);
    println!(
        "| cdpctl --from-scratch (all values written) | {scratch:.2} | {:.2}× floor |",
        scratch / floor
    );
    println!(
        "| cdpctl --all (recalculate, values unchanged) | {all:.2} | {:.2}× floor |",
        all / floor
    );
    println!("| per-entity queries (extrapolated from {} entities) | {per_entity:.1} | {:.1}× floor, {:.1}× cdpctl --from-scratch |", ids.len(), per_entity / floor, per_entity / scratch);
    println!("| per-(entity, attribute) queries (extrapolated from {} entities) | {per_attr:.1} | {:.1}× floor, {:.1}× cdpctl --from-scratch |", small.len(), per_attr / floor, per_attr / scratch);
    println!("| cdpctl incremental, {dirty} dirty entities | {incr:.3} | |");
}
