//! calc-audiences benchmark: 20 groups over N entities (default 1M,
//! `CDPCTL_BENCH_ENTITIES`), 4 events and ~4.5 attribute values per entity.
//!
//! Measured in one run against the same data:
//! - full recalculation (`--all`): first run (every membership is new) and a
//!   second run (nothing changes);
//! - the baseline: each group evaluated per entity (one query per entity per
//!   group, the same compiled predicate), on a sample of
//!   `CDPCTL_BENCH_SAMPLE` entities (default 500), extrapolated to N;
//! - an incremental run after 1k entities changed (attributes and events),
//!   with the count of groups evaluated;
//! - an incremental run after 1k entities got an event type no group reads.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use cdpctl::groups::{self, rules, GroupSpec, RunOptions, Settings};
use chrono::{DateTime, Utc};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The 20 groups (also usable with `cdpctl calc-audiences --define`).
fn specs() -> Vec<GroupSpec> {
    groups::parse_specs(
        include_str!("calc_audiences_groups.json"),
        "benches/calc_audiences_groups.json",
    )
    .unwrap()
}

const CATALOG: &[(&str, &str)] = &[
    ("web", "page_view"),
    ("web", "signin"),
    ("app", "purchase"),
    ("email", "email_open"),
    ("email", "email_click"),
];

async fn generate(c: &tokio_postgres::Client, n: u64) {
    let t = Instant::now();
    for (s, ty) in CATALOG {
        c.execute(
            "INSERT INTO public.sources (id, name) VALUES ($1::text, $1::text) ON CONFLICT DO NOTHING",
            &[s],
        )
        .await
        .unwrap();
        c.execute(
            "INSERT INTO public.events (id, source_id, type, version) VALUES ($1::text || '/' || $2::text, $1, $2, '1-0-0')",
            &[s, ty],
        )
        .await
        .unwrap();
    }
    let n = n as i64;
    c.execute(
        "INSERT INTO cdp_attr.attributes (id, definition)
         SELECT unnest(ARRAY['country', 'total_spent', 'tags', 'name', 'contact_id']), '{}'",
        &[],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO cdp_attr.customer_entities (id) SELECT md5('e' || i)::uuid FROM generate_series(1, $1::int8) i",
        &[&n],
    )
    .await
    .unwrap();
    // attribute values from a hash of the entity number: deterministic
    c.execute(
        "INSERT INTO cdp_attr.customer_attributes (customer_entity_id, attribute_id, value)
         SELECT md5('e' || i)::uuid, a.k, a.v FROM generate_series(1, $1::int8) i,
         LATERAL (SELECT abs(hashint8(i)) AS h) r,
         LATERAL (VALUES
             ('country', (ARRAY['CZ', 'DE', 'SK', 'AT', 'PL'])[1 + r.h % 5], true),
             ('total_spent', ((r.h / 5) % 30000 / 100.0)::text, r.h % 7 <> 0),
             ('tags', (ARRAY['vip', 'new', 'beta', 'old'])[1 + (r.h / 7) % 4], r.h % 3 = 0),
             ('tags', (ARRAY['vip', 'new', 'beta', 'old'])[1 + (r.h / 11) % 4], r.h % 5 = 0),
             ('name', (ARRAY['anna', 'bob', 'dan', 'mia', 'zoe', 'ivan'])[1 + (r.h / 13) % 6], true),
             ('contact_id', (i + 100000)::text, r.h % 10 <> 0)
         ) AS a(k, v, keep)
         WHERE a.keep",
        &[&n],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO cdp_ce.customer_events (id, source_id, type, version, event_time, payload)
         SELECT md5('v' || j)::uuid, t.s, t.ty, '1-0-0',
                '2026-11-01T12:00:00Z'::timestamptz - make_interval(secs => (r.h % (90 * 86400))::float8),
                jsonb_build_object('page', (ARRAY['/', '/pricing', '/blog', '/docs'])[1 + (r.h / 7) % 4],
                                   'amount', (r.h / 11) % 300)
           FROM generate_series(1, 4 * $1::int8) j,
           LATERAL (SELECT abs(hashint8(j + 1000000000)) AS h) r,
           LATERAL (SELECT (ARRAY['web', 'web', 'web', 'app', 'email', 'email', 'web'])[1 + r.h % 7] AS s,
                           (ARRAY['page_view', 'page_view', 'signin', 'purchase', 'email_open', 'email_click', 'page_view'])[1 + r.h % 7] AS ty) t",
        &[&n],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO cdp_ps.event_entities (event_id, entity_id)
         SELECT md5('v' || j)::uuid, md5('e' || (1 + abs(hashint8(j)) % $1::int8))::uuid FROM generate_series(1, 4 * $1::int8) j",
        &[&n],
    )
    .await
    .unwrap();
    c.batch_execute("VACUUM ANALYZE").await.unwrap();
    println!(
        "generated {n} entities, {} events in {:.1}s",
        4 * n,
        t.elapsed().as_secs_f64()
    );
}

async fn per_entity_baseline(db: &cdpctl::db::Db, now: DateTime<Utc>, sample: u64) -> (f64, u64) {
    let env = rules::SqlEnv {
        schemas: db.schemas.clone(),
        now,
    };
    let mut stmts = Vec::new();
    for s in specs() {
        let c = rules::compile(&rules::parse(&s.rule).unwrap(), &env);
        let feats = rules::features_select(
            &env,
            &rules::Batch::One("$1::text::uuid".into()),
            &c.attributes,
            &c.activities,
        );
        let sql = format!(
            "SELECT coalesce((SELECT {} FROM ({feats}) e), false)",
            c.predicate
        );
        stmts.push(db.client.prepare(&sql).await.unwrap());
    }
    let ids: Vec<String> = db
        .client
        .query(
            "SELECT id::text FROM cdp_attr.customer_entities ORDER BY md5(id::text) LIMIT $1",
            &[&(sample as i64)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let t = Instant::now();
    let mut members = 0u64;
    for id in &ids {
        for st in &stmts {
            let ok: bool = db.client.query_one(st, &[id]).await.unwrap().get(0);
            members += ok as u64;
        }
    }
    (t.elapsed().as_secs_f64(), members)
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let n = env_num("CDPCTL_BENCH_ENTITIES", 1_000_000);
    let sample = env_num("CDPCTL_BENCH_SAMPLE", 500).min(n);
    let t = common::TestDb::new().await;
    let c = t.client().await;
    generate(&c, n).await;
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let app = t.app();
    let mut db = app.connect("calc-audiences").await.unwrap();
    let settings = Settings::from_config(&app.config).unwrap();
    groups::define(&mut db, &settings, &specs(), false)
        .await
        .unwrap();
    let opts = |all: bool| RunOptions {
        all,
        now: Some(now),
        ..RunOptions::default()
    };

    let r = groups::run(&db, &settings, &opts(true), None)
        .await
        .unwrap();
    let full = r.seconds;
    println!(
        "full recalculation, first run: {:.2}s ({} groups, {} batches, {} memberships added) {:?}",
        full, r.groups_evaluated, r.batches, r.added, r.timings
    );
    let r = groups::run(&db, &settings, &opts(true), None)
        .await
        .unwrap();
    let full2 = r.seconds;
    println!(
        "full recalculation, nothing changed: {:.2}s (+{} -{}) {:?}",
        full2, r.added, r.removed, r.timings
    );

    let (base, _) = per_entity_baseline(&db, now, sample).await;
    let per = base / sample as f64;
    let extrapolated = per * n as f64;
    println!(
        "per-entity baseline: {} entities x 20 groups = {} queries in {:.2}s ({:.0} us/query); extrapolated to {n} entities: {:.0}s",
        sample,
        sample * 20,
        base,
        base * 1e6 / (sample * 20) as f64,
        extrapolated
    );
    println!(
        "ratio: per-entity baseline / full recalculation = {:.0}x (first run), {:.0}x (nothing changed)",
        extrapolated / full,
        extrapolated / full2
    );

    // 1k changed entities: 500 get a new total_spent, 500 a new page view
    c.batch_execute(
        "WITH picked AS (SELECT md5('e' || i)::uuid AS id, i FROM generate_series(1, 500) i)
         UPDATE cdp_attr.customer_attributes a SET value = ((p.i * 37) % 300)::text
           FROM picked p WHERE a.customer_entity_id = p.id AND a.attribute_id = 'total_spent';
         INSERT INTO cdpctl.entity_changes (entity_id, kind, items)
         SELECT md5('e' || i)::uuid, 'attributes', ARRAY['total_spent'] FROM generate_series(1, 500) i;
         INSERT INTO cdp_ce.customer_events (id, source_id, type, version, event_time, payload)
         SELECT md5('new' || i)::uuid, 'web', 'page_view', '1-0-0', '2026-11-01T11:00:00Z', '{\"page\": \"/pricing\"}'
           FROM generate_series(501, 1000) i;
         INSERT INTO cdp_ps.event_entities SELECT md5('new' || i)::uuid, md5('e' || i)::uuid FROM generate_series(501, 1000) i;
         INSERT INTO cdpctl.entity_changes (entity_id, kind, items)
         SELECT md5('e' || i)::uuid, 'events', ARRAY['web/page_view/1-0-0'] FROM generate_series(501, 1000) i;",
    )
    .await
    .unwrap();
    let r = groups::run(&db, &settings, &opts(false), None)
        .await
        .unwrap();
    println!(
        "incremental, 1k changed entities: {:.3}s; {} groups evaluated, {} skipped; {} (group, entity) pairs evaluated; +{} -{}",
        r.seconds,
        r.groups_evaluated,
        r.groups_skipped,
        r.groups.iter().map(|g| g.evaluated).sum::<i64>(),
        r.added,
        r.removed
    );
    println!("  phases: {:?}", r.timings);
    c.batch_execute(
        "INSERT INTO cdpctl.entity_changes (entity_id, kind, items)
         SELECT md5('e' || i)::uuid, 'events', ARRAY['email/email_click/1-0-0'] FROM generate_series(2001, 3000) i;",
    )
    .await
    .unwrap();
    let r = groups::run(&db, &settings, &opts(false), None)
        .await
        .unwrap();
    println!(
        "incremental, 1k entities with an event type no group reads: {:.3}s; {} groups evaluated, {} skipped",
        r.seconds, r.groups_evaluated, r.groups_skipped
    );
}
