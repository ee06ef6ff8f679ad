//! calc-attrs and reset-context: every attribute type against oracles
//! computed independently in SQL over the same events, incremental runs
//! equal to full ones, read-only evaluation of configured SQL, --check,
//! --entity, context keys, caches.

mod common;

use std::collections::BTreeMap;

use cdpctl::attrs::{self, CacheMode, CalcOptions, CalcSummary};
use cdpctl::demo::GenOptions;
use common::*;
use serde_json::json;

type Values = BTreeMap<(String, String), Vec<String>>;

/// Stands in for stitching: one entity per generated customer (the number
/// in its identifiers), ids derived with md5.
async fn stitch_by_customer_number(c: &tokio_postgres::Client) {
    c.batch_execute(
        "INSERT INTO cdp_ps.event_entities (event_id, entity_id)
         SELECT id, md5('c' || coalesce(substring(coalesce(payload->>'cookie_id', payload->>'device_id',
                                                            payload->>'email', payload->>'ga_id') from '(\\d+)'), 'x'))::uuid
           FROM cdp_ce.customer_events
         ON CONFLICT (event_id) DO NOTHING;
         INSERT INTO cdp_attr.customer_entities (id)
         SELECT DISTINCT entity_id FROM cdp_ps.event_entities ON CONFLICT DO NOTHING;",
    )
    .await
    .unwrap();
}

async fn seeded(customers: u64) -> TestDb {
    let t = TestDb::new().await;
    let mut db = t.db().await;
    let schemas = db.schemas.clone();
    cdpctl::demo::load(
        &mut db.client,
        &schemas,
        &GenOptions {
            customers,
            ..GenOptions::default()
        },
    )
    .await
    .unwrap();
    stitch_by_customer_number(&t.client().await).await;
    t
}

async fn define(c: &tokio_postgres::Client, id: &str, def: serde_json::Value) {
    c.execute(
        "INSERT INTO cdp_attr.attributes (id, definition) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET definition = EXCLUDED.definition",
        &[&id, &def],
    )
    .await
    .unwrap();
}

async fn calc(t: &TestDb, opts: CalcOptions) -> anyhow::Result<CalcSummary> {
    let app = t.app();
    let mut db = app.connect("calc-attrs").await.unwrap();
    attrs::calculate(&mut db, &opts, &app.out).await
}

fn opts() -> CalcOptions {
    CalcOptions {
        cache: CacheMode::Skip,
        ..CalcOptions::default()
    }
}

async fn stored(c: &tokio_postgres::Client) -> Values {
    rows_to_values(
        c.query(
            "SELECT customer_entity_id::text, attribute_id, value FROM cdp_attr.customer_attributes",
            &[],
        )
        .await
        .unwrap(),
    )
}

fn rows_to_values(rows: Vec<tokio_postgres::Row>) -> Values {
    let mut m: Values = BTreeMap::new();
    for r in rows {
        m.entry((r.get(0), r.get(1))).or_default().push(r.get(2));
    }
    for v in m.values_mut() {
        v.sort();
    }
    m
}

/// `max`/`min` in SQL: numeric when every value of the entity is a number,
/// else PostgreSQL's own `max(text)`/`min(text)` in the database's collation.
/// `values` returns (entity_id, v).
fn extreme_oracle(agg: &str, values: &str) -> String {
    let num = r"'^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$'";
    format!(
        "SELECT entity_id, CASE WHEN bool_and(v ~ {num})
                                THEN trim_scale({agg}(CASE WHEN v ~ {num} THEN v::numeric END))::text
                                ELSE {agg}(v) END
           FROM ({values}) x WHERE v IS NOT NULL GROUP BY 1"
    )
}

/// Independent SQL for each demo definition: (attribute, query returning
/// entity id, value).
fn oracles() -> Vec<(&'static str, String)> {
    let ev = "(SELECT ee.entity_id, e.* FROM cdp_ps.event_entities ee JOIN cdp_ce.customer_events e ON e.id = ee.event_id)";
    let num = r"'^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$'";
    vec![
        ("first_source", format!(
            "SELECT DISTINCT ON (entity_id) entity_id, source_id FROM {ev} e
              ORDER BY entity_id, event_time, id, source_id COLLATE \"C\"")),
        ("last_device_family", format!(
            "SELECT DISTINCT ON (entity_id) entity_id, payload->>'device_family' FROM {ev} e
              WHERE source_id IN ('web', 'app') AND payload->>'device_family' IS NOT NULL
              ORDER BY entity_id, event_time DESC, id DESC, payload->>'device_family' COLLATE \"C\"")),
        ("favourite_page", format!(
            "SELECT DISTINCT ON (entity_id) entity_id, v FROM
               (SELECT entity_id, payload->>'page' AS v, count(*) AS n FROM {ev} e
                 WHERE type = 'page_view' AND payload->>'page' IS NOT NULL GROUP BY 1, 2) x
              ORDER BY entity_id, n DESC, v COLLATE \"C\"")),
        ("rarest_page", format!(
            "SELECT DISTINCT ON (entity_id) entity_id, v FROM
               (SELECT entity_id, payload->>'page' AS v, count(*) AS n FROM {ev} e
                 WHERE type = 'page_view' AND payload->>'page' IS NOT NULL GROUP BY 1, 2) x
              ORDER BY entity_id, n, v COLLATE \"C\"")),
        ("emails", format!(
            "SELECT DISTINCT entity_id, lower(payload->>'email') FROM {ev} e WHERE payload->>'email' IS NOT NULL")),
        ("avg_purchase", format!(
            "SELECT entity_id, trim_scale(round(avg((payload->>'amount')::numeric), 10))::text FROM {ev} e
              WHERE type = 'purchase' AND payload->>'amount' ~ {num} GROUP BY 1")),
        ("total_spent", format!(
            "SELECT entity_id, trim_scale(sum((payload->>'amount')::numeric))::text FROM {ev} e
              WHERE type = 'purchase' AND payload->>'currency' = 'EUR' AND payload->>'amount' ~ {num} GROUP BY 1")),
        ("max_purchase", extreme_oracle("max", &format!(
            "SELECT entity_id, payload->>'amount' AS v FROM {ev} e WHERE type = 'purchase'"))),
        ("min_purchase", extreme_oracle("min", &format!(
            "SELECT entity_id, payload->>'amount' AS v FROM {ev} e WHERE type = 'purchase'"))),
        ("unique_pages", format!(
            "SELECT entity_id, count(DISTINCT payload->>'page')::text FROM {ev} e
              WHERE payload->>'page' IS NOT NULL GROUP BY 1")),
        ("any_campaign", format!(
            "SELECT entity_id, min(payload->>'campaign' COLLATE \"C\") FROM {ev} e
              WHERE source_id = 'email' AND payload->>'campaign' IS NOT NULL GROUP BY 1")),
        ("favourite_category", format!(
            "SELECT DISTINCT ON (entity_id) entity_id, v FROM
               (SELECT entity_id, v, count(*) AS n FROM {ev} e,
                       LATERAL (SELECT x->>'category' AS v FROM jsonb_array_elements(e.payload->'items') x) i
                 WHERE type = 'purchase' AND v IS NOT NULL GROUP BY 1, 2) x
              ORDER BY entity_id, n DESC, v COLLATE \"C\"")),
        ("contact_id", format!(
            "SELECT DISTINCT ON (entity_id) entity_id, payload->>'contact_id' FROM {ev} e
              WHERE source_id = 'email' AND payload->>'contact_id' IS NOT NULL
              ORDER BY entity_id, event_time DESC, id DESC, payload->>'contact_id' COLLATE \"C\"")),
        ("event_count", format!("SELECT entity_id, count(*)::text FROM {ev} e GROUP BY 1")),
        ("engagement", format!(
            "SELECT entity_id, trim_scale(count(*)::numeric / greatest(
                 (SELECT round(count(*)::numeric / (SELECT count(*) FROM cdp_attr.customer_entities), 2)
                    FROM cdp_ce.customer_events), 1))::text
               FROM {ev} e GROUP BY 1")),
        // extra definitions of the tests
        ("weighted_page", format!(
            "SELECT DISTINCT ON (entity_id) entity_id, v FROM
               (SELECT entity_id, payload->>'page' AS v, sum(length(payload->>'page') * 0.5) AS n FROM {ev} e
                 WHERE payload->>'page' IS NOT NULL GROUP BY 1, 2) x
              ORDER BY entity_id, n DESC, v COLLATE \"C\"")),
        ("cheap_item_categories", format!(
            "SELECT DISTINCT entity_id, x::text FROM {ev} e, jsonb_array_elements(e.payload->'items') x
              WHERE type = 'purchase' AND version = '1-0-0' AND (x->>'price')::int < 50")),
        ("priciest_category", format!(
            "SELECT DISTINCT ON (entity_id) entity_id, v FROM
               (SELECT entity_id, x->>'category' AS v, sum((x->>'price')::numeric * 2) AS n
                  FROM {ev} e, jsonb_array_elements(e.payload->'items') x
                 WHERE type = 'purchase' GROUP BY 1, 2) x
              ORDER BY entity_id, n DESC, v COLLATE \"C\"")),
        ("first_page_same_day", format!(
            "SELECT DISTINCT ON (entity_id) entity_id, payload->>'page' FROM {ev} e
              WHERE payload->>'page' IS NOT NULL
              ORDER BY entity_id, event_time, id, payload->>'page' COLLATE \"C\"")),
        ("last_page_same_day", format!(
            "SELECT DISTINCT ON (entity_id) entity_id, payload->>'page' FROM {ev} e
              WHERE payload->>'page' IS NOT NULL
              ORDER BY entity_id, event_time DESC, id DESC, payload->>'page' COLLATE \"C\"")),
        ("no_versions", "SELECT NULL::uuid, NULL::text WHERE false".to_string()),
        ("app_version_list", format!(
            "SELECT DISTINCT entity_id, payload->>'app_version' FROM {ev} e
              WHERE source_id = 'app' AND version IN ('1-0-0') AND payload->>'app_version' IS NOT NULL")),
    ]
}

async fn extra_definitions(c: &tokio_postgres::Client) {
    define(
        c,
        "weighted_page",
        json!({"type": "most_frequent", "value": "payload->>'page'",
        "weight": "length(payload->>'page') * 0.5"}),
    )
    .await;
    define(
        c,
        "cheap_item_categories",
        json!({"type": "list", "value": "payload->'items'",
        "outer_value": "jsonb_array_elements(value)", "outer_filter": "(value->>'price')::int < 50",
        "types": ["purchase"], "versions": ["1-0-0"]}),
    )
    .await;
    // outer weight referring to the element; the list is filtered after extraction
    define(
        c,
        "priciest_category",
        json!({"type": "most_frequent", "value": "payload->'items'",
        "outer_value": "jsonb_array_elements(value)->>'category'",
        "weight": "2", "outer_weight": "(jsonb_array_elements(value)->>'price')::numeric",
        "types": ["purchase"]}),
    )
    .await;
    define(
        c,
        "first_page_same_day",
        json!({"type": "first", "value": "payload->>'page'"}),
    )
    .await;
    define(
        c,
        "last_page_same_day",
        json!({"type": "last", "value": "payload->>'page'"}),
    )
    .await;
    define(
        c,
        "no_versions",
        json!({"type": "list", "value": "payload->>'page'", "versions": ["9-9-9"]}),
    )
    .await;
    define(
        c,
        "app_version_list",
        json!({"type": "list", "value": "payload->>'app_version'",
        "sources": ["app"], "versions": ["1-0-0"]}),
    )
    .await;
}

async fn oracle_values(c: &tokio_postgres::Client) -> Values {
    let mut all = Values::new();
    for (attr, sql) in oracles() {
        let rows = c
            .query(
                &format!("SELECT o.e::text, $1::text, o.v FROM ({sql}) AS o(e, v)"),
                &[&attr],
            )
            .await
            .unwrap_or_else(|e| panic!("oracle {attr}: {e:?}"));
        for (k, v) in rows_to_values(rows) {
            all.insert(k, v);
        }
    }
    all
}

fn assert_same(got: &Values, want: &Values) {
    let mut diffs = Vec::new();
    for (k, w) in want {
        match got.get(k) {
            Some(g) if g == w => {}
            other => diffs.push(format!("{k:?}: want {w:?}, got {other:?}")),
        }
    }
    for (k, g) in got {
        if !want.contains_key(k) {
            diffs.push(format!("{k:?}: unexpected {g:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences, e.g.:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_matches_an_sql_oracle_on_generated_events() {
    let t = seeded(400).await;
    let c = t.client().await;
    extra_definitions(&c).await;
    // many ties on event time: first/last fall back to the event id
    c.batch_execute(
        "UPDATE cdp_ce.customer_events SET event_time = date_trunc('day', event_time)
          WHERE payload ? 'page' AND abs(hashtext(id::text)) % 2 = 0",
    )
    .await
    .unwrap();
    let sum = calc(
        &t,
        CalcOptions {
            batch_size: Some(37),
            ..opts()
        },
    )
    .await
    .unwrap();
    let entities: i64 = c
        .query_one("SELECT count(*) FROM cdp_attr.customer_entities", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum.entities_calculated, entities as u64);
    assert!(sum.batches > 5, "{sum:?}");
    // 'n/a' amounts are skipped and counted
    let skipped = sum
        .skipped
        .iter()
        .find(|s| s.attribute == "avg_purchase")
        .unwrap();
    let na: i64 = c
        .query_one(
            "SELECT count(*) FROM cdp_ce.customer_events WHERE type = 'purchase' AND payload->>'amount' = 'n/a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(na > 0);
    assert_eq!(skipped.not_numeric, na as u64);
    let got = stored(&c).await;
    let want = oracle_values(&c).await;
    assert!(want.len() > 3000, "oracle too small: {}", want.len());
    assert_same(&got, &want);
    // everything is marked calculated, and journalled once per entity
    let (dirty, journal): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM cdp_attr.customer_entities WHERE calculated IS NULL),
                        (SELECT count(*) FROM cdpctl.entity_changes WHERE kind = 'attributes')",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(dirty, 0);
    assert_eq!(journal, entities);
    // a second run finds nothing to do
    let again = calc(&t, opts()).await.unwrap();
    assert_eq!(again.entities_calculated, 0);
}

/// Hand-built events with known answers: ties, NULLs, junk, weights.
#[tokio::test(flavor = "multi_thread")]
async fn ties_nulls_junk_and_weights_on_crafted_events() {
    let t = TestDb::new().await;
    let c = t.client().await;
    let e1 = "00000000-0000-4000-8000-000000000001";
    let e2 = "00000000-0000-4000-8000-000000000002";
    // (event id, entity, type, version, time, payload)
    let events = [
        (
            "10000000-0000-4000-8000-00000000000b",
            e1,
            "view",
            "1",
            "2026-01-01T10:00:00Z",
            json!({"p": "b", "n": "1", "tags": ["x", "y"]}),
        ),
        (
            "10000000-0000-4000-8000-00000000000a",
            e1,
            "view",
            "1",
            "2026-01-01T10:00:00Z",
            json!({"p": "a", "n": "2", "tags": ["y"]}),
        ),
        (
            "10000000-0000-4000-8000-00000000000c",
            e1,
            "view",
            "2",
            "2026-01-02T10:00:00Z",
            json!({"p": null, "n": "abc"}),
        ),
        (
            "10000000-0000-4000-8000-00000000000d",
            e1,
            "buy",
            "1",
            "2026-01-03T10:00:00Z",
            json!({"p": "B", "n": "0.1", "amount": "1e2"}),
        ),
        (
            "10000000-0000-4000-8000-00000000000e",
            e1,
            "buy",
            "1",
            "2026-01-04T10:00:00Z",
            json!({"p": "a", "n": "-1", "amount": "junk"}),
        ),
        (
            "20000000-0000-4000-8000-000000000001",
            e2,
            "view",
            "1",
            "2026-01-01T10:00:00Z",
            json!({"p": "z"}),
        ),
    ];
    for (id, ent, ty, ver, ts, payload) in &events {
        c.execute(
            "INSERT INTO cdp_ce.customer_events (id, source_id, type, version, event_time, payload)
             VALUES ($1::text::uuid, 'web', $2, $3, $4::text::timestamptz, $5)",
            &[id, ty, ver, ts, payload],
        )
        .await
        .unwrap();
        c.execute(
            "INSERT INTO cdp_ps.event_entities VALUES ($1::text::uuid, $2::text::uuid)",
            &[id, ent],
        )
        .await
        .unwrap();
    }
    c.batch_execute(&format!(
        "INSERT INTO cdp_attr.customer_entities (id) VALUES ('{e1}'), ('{e2}')"
    ))
    .await
    .unwrap();
    let defs = [
        (
            "first_p",
            json!({"type": "first", "value": "payload->>'p'"}),
        ),
        ("last_p", json!({"type": "last", "value": "payload->>'p'"})),
        (
            "first_view_v2",
            json!({"type": "first", "value": "payload->>'n'", "types": ["view"], "versions": ["2"]}),
        ),
        (
            "top_weighted",
            json!({"type": "most_frequent", "value": "payload->>'p'", "weight": "payload->>'n'"}),
        ),
        (
            "least_p",
            json!({"type": "least_frequent", "value": "payload->>'p'"}),
        ),
        (
            "tags",
            json!({"type": "list", "value": "jsonb_array_elements_text(payload->'tags')"}),
        ),
        (
            "tags_filtered",
            json!({"type": "num_of_unique", "value": "jsonb_array_elements_text(payload->'tags')", "types": ["view"]}),
        ),
        (
            "top_tag",
            json!({"type": "most_frequent", "value": "payload->'tags'", "outer_value": "jsonb_array_elements_text(value)", "outer_filter": "value <> 'y'"}),
        ),
        ("sum_n", json!({"type": "sum", "value": "payload->>'n'"})),
        (
            "avg_amount",
            json!({"type": "avg", "value": "payload->>'amount'"}),
        ),
        ("max_n", json!({"type": "max", "value": "payload->>'n'"})),
        (
            "any_p",
            json!({"type": "value", "value": "payload->>'p'", "filter": "type = 'buy'"}),
        ),
        (
            "nothing",
            json!({"type": "avg", "value": "payload->>'missing'"}),
        ),
        (
            "n_rows",
            json!({"type": "custom", "query": "SELECT type AS value FROM base WHERE version = '1'"}),
        ),
    ];
    for (id, d) in &defs {
        define(&c, id, d.clone()).await;
    }
    let sum = calc(&t, opts()).await.unwrap();
    let got = stored(&c).await;
    let v = |e: &str, a: &str| {
        got.get(&(e.to_string(), a.to_string()))
            .cloned()
            .unwrap_or_default()
    };
    // equal time: the smaller event id (…0a) is first, the larger (…0b) last
    // of that instant; the latest event overall is the last.
    assert_eq!(v(e1, "first_p"), ["a"]);
    assert_eq!(v(e1, "last_p"), ["a"]);
    assert_eq!(v(e2, "last_p"), ["z"]);
    assert_eq!(v(e1, "first_view_v2"), ["abc"]);
    // weights: a = 2 + (-1) = 1, b = 1, B = 0.1, and the NULL p is no value;
    // a and b tie at 1: the smaller value wins
    assert_eq!(v(e1, "top_weighted"), ["a"]);
    // counts: a 2, b 1, B 1 -> least frequent tie: "B" < "b" in byte order
    assert_eq!(v(e1, "least_p"), ["B"]);
    assert_eq!(v(e1, "tags"), ["x", "y"]);
    assert_eq!(v(e1, "tags_filtered"), ["2"]);
    assert_eq!(v(e1, "top_tag"), ["x"]);
    // 1 + 2 + 0.1 - 1 = 2.1 ("abc" skipped)
    assert_eq!(v(e1, "sum_n"), ["2.1"]);
    // "abc" is not a number: max compares every value as text
    assert_eq!(v(e1, "max_n"), ["abc"]);
    assert_eq!(v(e1, "avg_amount"), ["100"]);
    assert_eq!(v(e1, "any_p"), ["B"]);
    assert!(v(e1, "nothing").is_empty());
    assert!(v(e2, "sum_n").is_empty());
    assert_eq!(v(e1, "n_rows"), ["buy", "view"]);
    assert_eq!(v(e2, "n_rows"), ["view"]);
    let sk = |a: &str| {
        sum.skipped
            .iter()
            .find(|s| s.attribute == a)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(sk("sum_n").not_numeric, 1);
    assert_eq!(sk("avg_amount").not_numeric, 1);
    assert_eq!(sk("top_weighted").bad_weight, 1, "{:?}", sum.skipped);
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_runs_touch_only_dirty_entities_and_equal_a_full_run() {
    let t = seeded(200).await;
    let c = t.client().await;
    extra_definitions(&c).await;
    calc(&t, opts()).await.unwrap();
    c.batch_execute(
        "UPDATE cdp_attr.customer_attributes SET modified = '2000-01-01';
         DELETE FROM cdpctl.entity_changes;",
    )
    .await
    .unwrap();
    let ids: Vec<String> = c
        .query(
            "SELECT id::text FROM cdp_attr.customer_entities ORDER BY id LIMIT 4",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // new events for ids[0] (a big purchase), merge ids[2] into ids[1]
    c.batch_execute(&format!(
        "INSERT INTO cdp_ce.customer_events (id, source_id, type, version, event_time, payload)
         VALUES ('f0000000-0000-4000-8000-000000000001', 'app', 'purchase', '1-0-0', '2030-01-01',
                 '{{\"amount\": \"99999.99\", \"currency\": \"EUR\", \"page\": \"/new\", \"items\": [{{\"category\": \"cars\", \"price\": 1}}]}}');
         INSERT INTO cdp_ps.event_entities VALUES ('f0000000-0000-4000-8000-000000000001', '{a}');
         UPDATE cdp_ps.event_entities SET entity_id = '{b}' WHERE entity_id = '{m}';
         DELETE FROM cdp_attr.customer_entities WHERE id = '{m}';
         UPDATE cdp_attr.customer_entities SET calculated = NULL WHERE id IN ('{a}', '{b}');
         -- one entity calculated long ago is due again; one recently is not
         UPDATE cdp_attr.customer_entities SET calculated = (now() AT TIME ZONE 'UTC') - interval '3 days' WHERE id = '{old}';",
        a = ids[0],
        b = ids[1],
        m = ids[2],
        old = ids[3]
    ))
    .await
    .unwrap();
    let sum = calc(&t, opts()).await.unwrap();
    assert_eq!(sum.entities_calculated, 3, "{sum:?}");
    let incremental = stored(&c).await;
    // untouched entities kept their rows as they were
    let touched: i64 = c
        .query_one(
            "SELECT count(DISTINCT customer_entity_id) FROM cdp_attr.customer_attributes WHERE modified > '2000-01-01'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(touched <= 2, "{touched} entities rewritten");
    assert_eq!(
        incremental[&(ids[0].clone(), "max_purchase".into())],
        ["99999.99"]
    );
    assert_eq!(
        incremental[&(ids[0].clone(), "last_device_family".into())].len(),
        1
    );
    assert!(!incremental.keys().any(|(e, _)| *e == ids[2]));
    // the journal names the entities and the attributes that changed
    let journal: Vec<(String, Vec<String>)> = c
        .query("SELECT entity_id::text, items FROM cdpctl.entity_changes WHERE kind = 'attributes' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let a_items = &journal.iter().find(|(e, _)| *e == ids[0]).unwrap().1;
    assert!(
        a_items.contains(&"max_purchase".to_string())
            && a_items.contains(&"event_count".to_string()),
        "{a_items:?}"
    );
    assert!(
        !journal.iter().any(|(e, _)| *e == ids[3]),
        "unchanged entity journalled"
    );
    // a full recalculation gives the same values
    let full = calc(
        &t,
        CalcOptions {
            all: true,
            ..opts()
        },
    )
    .await
    .unwrap();
    assert_eq!(full.mode, "all");
    assert_eq!(full.entities_changed, 0, "{full:?}");
    assert_same(&stored(&c).await, &incremental);
    // from scratch (which also recomputes the context the custom
    // "engagement" reads) equals the oracle
    let scratch = calc(
        &t,
        CalcOptions {
            from_scratch: true,
            ..opts()
        },
    )
    .await
    .unwrap();
    assert_eq!(scratch.mode, "from-scratch");
    assert_same(&stored(&c).await, &oracle_values(&c).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_sql_cannot_write() {
    let t = seeded(30).await;
    let c = t.client().await;
    c.batch_execute(
        "CREATE TABLE public.victim (x int);
         INSERT INTO public.victim VALUES (1);
         CREATE FUNCTION public.evil(p jsonb) RETURNS text LANGUAGE plpgsql AS
           $$ BEGIN DELETE FROM public.victim; RETURN 'x'; END $$;
         DELETE FROM cdp_attr.attributes;",
    )
    .await
    .unwrap();
    define(
        &c,
        "sneaky",
        json!({"type": "last", "value": "public.evil(payload)"}),
    )
    .await;
    define(&c, "fine", json!({"type": "first", "value": "source_id"})).await;
    let err = calc(&t, opts()).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("attribute \"sneaky\""), "{msg}");
    assert!(msg.contains("read-only transaction"), "{msg}");
    let victims: i64 = c
        .query_one("SELECT count(*) FROM public.victim", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(victims, 1);
    assert!(stored(&c).await.is_empty());

    c.batch_execute("DELETE FROM cdp_attr.attributes")
        .await
        .unwrap();
    define(
        &c,
        "dropper",
        json!({"type": "custom",
        "query": "SELECT 1 AS value FROM base; DROP TABLE public.victim"}),
    )
    .await;
    let msg = format!("{:#}", calc(&t, opts()).await.unwrap_err());
    assert!(msg.contains("attribute \"dropper\""), "{msg}");
    define(
        &c,
        "dropper",
        json!({"type": "custom",
        "query": "SELECT count(*) AS value FROM base WHERE public.evil(payload) = 'x'"}),
    )
    .await;
    let msg = format!("{:#}", calc(&t, opts()).await.unwrap_err());
    assert!(
        msg.contains("attribute \"dropper\"") && msg.contains("read-only"),
        "{msg}"
    );
    define(
        &c,
        "dropper",
        json!({"type": "custom", "query": "SELECT 1 AS value, 2 AS n FROM base"}),
    )
    .await;
    let msg = format!("{:#}", calc(&t, opts()).await.unwrap_err());
    assert!(
        msg.contains("attribute \"dropper\": custom query must return one column named \"value\", got 2 columns (value, n)"),
        "{msg}"
    );
    let victims: i64 = c
        .query_one("SELECT count(*) FROM public.victim", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(victims, 1);
    assert!(stored(&c).await.is_empty());
    let dirty: i64 = c
        .query_one(
            "SELECT count(*) FROM cdp_attr.customer_entities WHERE calculated IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(dirty > 0);
    let all: i64 = c
        .query_one("SELECT count(*) FROM cdp_attr.customer_entities", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dirty, all, "entities were marked calculated");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_every_broken_definition_and_writes_nothing() {
    let t = seeded(20).await;
    let c = t.client().await;
    c.batch_execute(
        "CREATE TABLE public.victim (x int);
         CREATE FUNCTION public.evil(p jsonb) RETURNS text LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.victim VALUES (1); RETURN 'x'; END $$;",
    )
    .await
    .unwrap();
    define(&c, "bad_type", json!({"type": "median", "value": "x"})).await;
    define(&c, "no_value", json!({"type": "sum"})).await;
    define(
        &c,
        "bad_column",
        json!({"type": "sum", "value": "payload->>nope"}),
    )
    .await;
    define(
        &c,
        "two_columns",
        json!({"type": "custom", "query": "SELECT 1 AS value, 2 AS n"}),
    )
    .await;
    define(
        &c,
        "writer",
        json!({"type": "list", "value": "public.evil(payload)"}),
    )
    .await;
    c.batch_execute(
        "INSERT INTO cdp_attr.context (key, query) VALUES ('broken', 'SELECT nope FROM nowhere')",
    )
    .await
    .unwrap();
    let out = run(t.cli().args(["--format", "json", "calc-attrs", "--check"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("6 of"), "{}", out.stderr);
    let j = out.json();
    let err = |a: &str| {
        j["checked"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["attribute"] == a)
            .unwrap_or_else(|| panic!("{a} missing"))["error"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(err("bad_type").contains("attribute \"bad_type\": unknown type \"median\""));
    assert!(err("no_value").contains("attribute \"no_value\": missing field \"value\""));
    assert!(
        err("bad_column").contains("attribute \"bad_column\"")
            && err("bad_column").contains("nope")
    );
    assert!(
        err("two_columns").contains("got 2 columns (value, n)"),
        "{}",
        err("two_columns")
    );
    assert!(
        err("writer").contains("attribute \"writer\"") && err("writer").contains("read-only"),
        "{}",
        err("writer")
    );
    assert!(
        err("context:broken").contains("context \"broken\""),
        "{}",
        err("context:broken")
    );
    assert_eq!(err("first_source"), "");
    assert!(stored(&c).await.is_empty());
    let n: i64 = c
        .query_one("SELECT count(*) FROM public.victim", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // a normal run refuses before writing anything and lists every error
    let out = run(t.cli().args(["calc-attrs"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("definitions are invalid; nothing was written"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("attribute \"bad_type\"")
            && out.stderr.contains("attribute \"no_value\""),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn entity_flag_prints_values_and_writes_only_when_asked() {
    let t = seeded(20).await;
    let c = t.client().await;
    let id: String = c
        .query_one(
            "SELECT entity_id::text FROM cdp_ps.event_entities GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let out = run(t
        .cli()
        .args(["--format", "json", "calc-attrs", "--entity", &id]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    let values = j["entity"].as_array().unwrap();
    let ev = values
        .iter()
        .find(|v| v["attribute"] == "event_count")
        .unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM cdp_ps.event_entities WHERE entity_id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ev["values"], json!([n.to_string()]));
    assert_eq!(ev["stored"], json!([]));
    assert_eq!(ev["changed"], json!(true));
    assert!(
        stored(&c).await.is_empty(),
        "--entity without --write wrote"
    );
    let human = run(t.cli().args(["calc-attrs", "--entity", &id]));
    assert!(
        human.stdout.contains("nothing written (pass --write"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("event_count"), "{}", human.stdout);
    let out = run(t
        .cli()
        .args(["--format", "json", "calc-attrs", "--entity", &id, "--write"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = stored(&c).await;
    assert_eq!(
        got[&(id.clone(), "event_count".to_string())],
        [n.to_string()]
    );
    assert!(got.keys().all(|(e, _)| *e == id));
    let bad = run(t.cli().args([
        "calc-attrs",
        "--entity",
        "00000000-0000-4000-8000-0000000000ff",
    ]));
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("not found"), "{}", bad.stderr);
    let bad = run(t.cli().args(["calc-attrs", "--entity", "nope"]));
    assert!(bad.stderr.contains("is not a UUID"), "{}", bad.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_context_marks_keys_stale_and_now_recomputes() {
    let t = seeded(20).await;
    let c = t.client().await;
    c.batch_execute(
        "INSERT INTO cdp_attr.context (key, value, query, modified)
         VALUES ('k2', 'old', 'SELECT 42, ''ignored''', now() AT TIME ZONE 'UTC')",
    )
    .await
    .unwrap();
    // the first run computes the stale key the demo seeded; k2 is fresh
    let sum = calc(&t, opts()).await.unwrap();
    let keys: Vec<&str> = sum
        .contexts_refreshed
        .iter()
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(keys, ["avg_events_per_entity"]);
    let k2: Option<String> = c
        .query_one("SELECT value FROM cdp_attr.context WHERE key = 'k2'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(k2.as_deref(), Some("old"));
    // the custom attribute reading the context used the fresh value
    let avg: String = c
        .query_one(
            "SELECT value FROM cdp_attr.context WHERE key = 'avg_events_per_entity'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (ent, cnt): (String, i64) = {
        let r = c
            .query_one(
                "SELECT entity_id::text, count(*) FROM cdp_ps.event_entities GROUP BY 1 ORDER BY 1 LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    let want: String = c
        .query_one(
            "SELECT trim_scale($1::int8::numeric / greatest($2::text::numeric, 1))::text",
            &[&cnt, &avg],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored(&c).await[&(ent, "engagement".to_string())], [want]);

    let out = run(t.cli().args(["reset-context", "k2"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("marked 1 key(s) stale: k2"),
        "{}",
        out.stdout
    );
    let m: Option<chrono::NaiveDateTime> = c
        .query_one(
            "SELECT modified FROM cdp_attr.context WHERE key = 'k2'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(m.is_none());
    let out = run(t.cli().args(["reset-context", "nope"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("unknown context key \"nope\"; known keys: avg_events_per_entity, k2"),
        "{}",
        out.stderr
    );
    let out = run(t.cli().args(["--format", "json", "reset-context", "--now"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json()["recomputed"][1],
        json!({"key": "k2", "value": "42"})
    );
    let (v, fresh): (String, bool) = {
        let r = c
            .query_one(
                "SELECT value, modified > (now() AT TIME ZONE 'UTC') - interval '1 minute' FROM cdp_attr.context WHERE key = 'k2'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((v.as_str(), fresh), ("42", true));
    // a context query cannot write either
    c.batch_execute("INSERT INTO cdp_attr.context (key, query) VALUES ('w', 'DELETE FROM cdp_attr.context RETURNING 1')")
        .await
        .unwrap();
    let out = run(t.cli().args(["reset-context", "--now", "w"]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("context \"w\""), "{}", out.stderr);
    let n: i64 = c
        .query_one("SELECT count(*) FROM cdp_attr.context", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn attribute_flag_caches_dry_run_and_config() {
    let t = seeded(40).await;
    let c = t.client().await;
    // --dry-run evaluates, reports and writes nothing
    let sum = calc(
        &t,
        CalcOptions {
            dry_run: true,
            ..opts()
        },
    )
    .await
    .unwrap();
    assert!(sum.entities_changed > 0 && sum.values_written > 0);
    assert!(stored(&c).await.is_empty());
    assert_eq!(sum.contexts_stale, ["avg_events_per_entity"]);
    // --attribute computes one attribute and leaves the entities due
    let sum = calc(
        &t,
        CalcOptions {
            attributes: vec!["event_count".into()],
            ..opts()
        },
    )
    .await
    .unwrap();
    assert_eq!(sum.attributes, 1);
    let got = stored(&c).await;
    assert!(!got.is_empty() && got.keys().all(|(_, a)| a == "event_count"));
    let dirty: i64 = c
        .query_one(
            "SELECT count(*) FROM cdp_attr.customer_entities WHERE calculated IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(dirty > 0);
    let err = calc(
        &t,
        CalcOptions {
            attributes: vec!["nope".into()],
            ..opts()
        },
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown attribute \"nope\""),
        "{err}"
    );
    // the full run refreshes the caches (they were never filled)
    let out = run(t.cli().args(["--format", "json", "calc-attrs"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["cache_refreshed"], json!(true));
    let (n, want): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT count FROM cdp_attr.cached_attributes_counts_customers_per_attribute WHERE attribute_id = 'first_source'),
                        (SELECT count(DISTINCT customer_entity_id) FROM cdp_attr.customer_attributes WHERE attribute_id = 'first_source')",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(n, want);
    let vc: i64 = c
        .query_one(
            "SELECT count FROM cdp_attr.cached_attribute_values_counts WHERE attribute_id = 'first_source' AND value = 'web'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let want_web: i64 = c
        .query_one("SELECT count(*) FROM cdp_attr.customer_attributes WHERE attribute_id = 'first_source' AND value = 'web'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(vc, want_web);
    // fresh caches are kept; the seed's "modified = NULL" forces a refresh
    let sum = calc(
        &t,
        CalcOptions {
            cache: CacheMode::Auto,
            ..opts()
        },
    )
    .await
    .unwrap();
    assert!(!sum.cache_refreshed);
    c.batch_execute("UPDATE cdp_attr.cached_attribute_values_counts SET modified = NULL")
        .await
        .unwrap();
    let sum = calc(
        &t,
        CalcOptions {
            cache: CacheMode::Auto,
            ..opts()
        },
    )
    .await
    .unwrap();
    assert!(sum.cache_refreshed);
    // status shows the area
    let out = run(t.cli().args(["status"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("last calc-attrs run"), "{}", out.stdout);
    assert!(out.stdout.contains("incremental"), "{}", out.stdout);
    // config errors name the key
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &json!({"postgresql": pg_block(&t.url), "attributes": {"batch_sise": 10}}),
    );
    let out = run(cli().arg("--config").arg(&cfg).arg("calc-attrs"));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("attributes") && out.stderr.contains("batch_sise"),
        "{}",
        out.stderr
    );
    // --from-scratch refuses without confirmation
    let out = run(t.cli().args(["calc-attrs", "--from-scratch"]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("pass --yes"), "{}", out.stderr);
    assert!(!stored(&c).await.is_empty());
}

#[test]
fn example_config_documents_the_attributes_section() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cdpctl.json"))
            .unwrap();
    let cfg = cdpctl::config::Config::from_json(&text, "examples/cdpctl.json").unwrap();
    assert_eq!(
        attrs::Settings::from_config(&cfg).unwrap(),
        attrs::Settings::default()
    );
    let bad = cdpctl::config::Config::from_json(r#"{"attributes": {"batch_size": "many"}}"#, "x")
        .unwrap();
    let err = attrs::Settings::from_config(&bad).unwrap_err().to_string();
    assert!(err.contains("key \"attributes.batch_size\""), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn awkward_attribute_ids_are_written_replaced_and_journalled() {
    let t = seeded(20).await;
    let c = t.client().await;
    c.batch_execute("DELETE FROM cdp_attr.attributes")
        .await
        .unwrap();
    let ids = ["we\"ird", "back\\slash, {comma}", "plain"];
    for id in ids {
        define(&c, id, json!({"type": "max", "value": "1"})).await;
    }
    calc(&t, opts()).await.unwrap();
    let entities: i64 = c
        .query_one("SELECT count(*) FROM cdp_attr.customer_entities", &[])
        .await
        .unwrap()
        .get(0);
    let first = journal_items(&c).await;
    assert_eq!(first.len() as i64, entities);
    let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    want.sort();
    for items in &first {
        let mut got = items.clone();
        got.sort();
        assert_eq!(got, want);
    }
    // change two definitions: their old values are replaced, not duplicated
    c.batch_execute("DELETE FROM cdpctl.entity_changes")
        .await
        .unwrap();
    define(&c, ids[0], json!({"type": "max", "value": "2"})).await;
    define(&c, ids[1], json!({"type": "max", "value": "3"})).await;
    calc(
        &t,
        CalcOptions {
            all: true,
            ..opts()
        },
    )
    .await
    .unwrap();
    let rows = c
        .query(
            "SELECT attribute_id, value, count(*) FROM cdp_attr.customer_attributes GROUP BY 1, 2 ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut want_rows = vec![
        (ids[0].to_string(), "2".to_string(), entities),
        (ids[1].to_string(), "3".to_string(), entities),
        (ids[2].to_string(), "1".to_string(), entities),
    ];
    want_rows.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want_rows);
    let second = journal_items(&c).await;
    assert_eq!(second.len() as i64, entities);
    let mut want2 = vec![ids[0].to_string(), ids[1].to_string()];
    want2.sort();
    for items in &second {
        let mut g = items.clone();
        g.sort();
        assert_eq!(g, want2);
    }
}

async fn journal_items(c: &tokio_postgres::Client) -> Vec<Vec<String>> {
    c.query(
        "SELECT items FROM cdpctl.entity_changes WHERE kind = 'attributes'",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Runs `max`/`min` over the same values in `t` and returns, per entity,
/// (min, max) as cdpctl stored them and as PostgreSQL computes them.
async fn extremes(t: &TestDb) -> Vec<(String, [Vec<String>; 2], [Vec<String>; 2])> {
    let c = t.client().await;
    let entities = [
        // numeric and lexical answers differ: numbers compare as numbers
        (
            "e0000000-0000-4000-8000-000000000001",
            vec!["9.99", "10.00", "2"],
        ),
        // one value is not a number: all compare as text
        (
            "e0000000-0000-4000-8000-000000000002",
            vec!["9.99", "10.00", "n/a"],
        ),
        // collation: case and accents (byte order differs from most collations)
        (
            "e0000000-0000-4000-8000-000000000003",
            vec!["apple", "Banana", "Éclair", "zebra"],
        ),
        // ISO dates and plan names kept as strings
        (
            "e0000000-0000-4000-8000-000000000004",
            vec!["2024-03-01", "2023-12-31", "2024-02-29"],
        ),
        (
            "e0000000-0000-4000-8000-000000000005",
            vec!["pro", "basic", "Enterprise"],
        ),
    ];
    let mut n = 0;
    for (ent, values) in &entities {
        c.execute(
            "INSERT INTO cdp_attr.customer_entities (id) VALUES ($1::text::uuid)",
            &[ent],
        )
        .await
        .unwrap();
        for v in values {
            n += 1;
            let id = format!("f0000000-0000-4000-8000-{n:012}");
            c.execute(
                "INSERT INTO cdp_ce.customer_events (id, source_id, type, version, event_time, payload)
                 VALUES ($1::text::uuid, 'web', 'buy', '1', now(), jsonb_build_object('x', $2::text))",
                &[&id, v],
            )
            .await
            .unwrap();
            c.execute(
                "INSERT INTO cdp_ps.event_entities VALUES ($1::text::uuid, $2::text::uuid)",
                &[&id, ent],
            )
            .await
            .unwrap();
        }
    }
    for (id, kind) in [("min_x", "min"), ("max_x", "max")] {
        define(&c, id, json!({"type": kind, "value": "payload->>'x'"})).await;
    }
    calc(t, opts()).await.unwrap();
    let got = stored(&c).await;
    let values = "SELECT ee.entity_id, e.payload->>'x' AS v FROM cdp_ps.event_entities ee
                    JOIN cdp_ce.customer_events e ON e.id = ee.event_id";
    let mut want: Values = BTreeMap::new();
    for (attr, agg) in [("min_x", "min"), ("max_x", "max")] {
        let sql = format!(
            "SELECT o.e::text, o.v FROM ({}) AS o(e, v)",
            extreme_oracle(agg, values)
        );
        for r in c.query(&sql, &[]).await.unwrap() {
            want.insert((r.get(0), attr.to_string()), vec![r.get(1)]);
        }
    }
    let pick = |m: &Values, e: &str| {
        ["min_x", "max_x"].map(|a| {
            m.get(&(e.to_string(), a.to_string()))
                .cloned()
                .unwrap_or_default()
        })
    };
    entities
        .iter()
        .map(|(e, _)| (e.to_string(), pick(&got, e), pick(&want, e)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn max_and_min_compare_numbers_as_numbers_and_text_in_the_database_collation() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // the server's default collation (the test cluster's: C.UTF-8 or the like)
    let plain = TestDb::new().await;
    let rows = extremes(&plain).await;
    for (e, got, want) in &rows {
        assert_eq!(got, want, "entity {e}: (min, max) against PostgreSQL");
    }
    assert_eq!(
        rows[0].1,
        [s(&["2"]), s(&["10"])],
        "numbers, canonical form"
    );
    assert_eq!(rows[1].1[0], s(&["10.00"]), "text: the original value");
    assert_eq!(rows[3].1, [s(&["2023-12-31"]), s(&["2024-03-01"])]);
    // an ICU collation, where case and accents do not sort in byte order
    let icu = TestDb::with_locale("LOCALE_PROVIDER icu ICU_LOCALE 'und' LOCALE 'C.UTF-8'").await;
    let rows = extremes(&icu).await;
    for (e, got, want) in &rows {
        assert_eq!(got, want, "entity {e}: (min, max) against PostgreSQL (ICU)");
    }
    assert_eq!(rows[0].1, [s(&["2"]), s(&["10"])]);
    assert_eq!(rows[1].1, [s(&["10.00"]), s(&["n/a"])]);
    // byte order would answer "Banana" and "Éclair"
    assert_eq!(rows[2].1, [s(&["apple"]), s(&["zebra"])]);
    assert_eq!(rows[4].1, [s(&["basic"]), s(&["pro"])]);
}
