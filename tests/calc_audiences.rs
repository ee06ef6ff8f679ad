//! calc-audiences: results equal a per-entity oracle written in Rust over the
//! same generated attributes and events (every operator, nested all/any/not,
//! activity windows, payload filters, custom predicates); incremental runs
//! after arbitrary changes equal a full recalculation; dependency filtering
//! skips groups by count; linked groups feed the segment queue; validation
//! names the group and the leaf.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use cdpctl::groups::rules::{self, Cmp, Lit, Op, Rule};
use chrono::{DateTime, Duration, Utc};
use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

// ---------------------------------------------------------------- the model

#[derive(Debug, Clone)]
struct Ev {
    id: String,
    source: &'static str,
    ty: &'static str,
    version: &'static str,
    time: DateTime<Utc>,
    payload: Value,
}

#[derive(Debug, Clone, Default)]
struct Entity {
    attrs: BTreeMap<String, Vec<String>>,
    events: Vec<Ev>,
}

/// The CDP as the test knows it: entity id → attributes and events.
#[derive(Debug, Clone, Default)]
struct Model {
    entities: BTreeMap<String, Entity>,
}

const CATALOG: &[(&str, &str, &str)] = &[
    ("web", "page_view", "1-0-0"),
    ("web", "signin", "1-0-0"),
    ("app", "purchase", "1-0-0"),
    ("app", "purchase", "2-0-0"),
    ("email", "email_open", "1-0-0"),
    ("email", "email_click", "1-0-0"),
];
const ATTRS: &[&str] = &[
    "country",
    "total_spent",
    "tags",
    "name",
    "contact_id",
    "unused_attr",
];
const PAGES: &[&str] = &["/", "/pricing", "/blog", "/docs"];

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn uuid(rng: &mut SmallRng) -> String {
    cdpctl::demo::generate::uuid_from(rng)
}

fn gen_attrs(rng: &mut SmallRng, e: &mut Entity) {
    e.attrs.clear();
    let mut put = |k: &str, v: String| e.attrs.entry(k.to_string()).or_default().push(v);
    if rng.gen_bool(0.9) {
        put(
            "country",
            ["CZ", "DE", "SK", "AT"][rng.gen_range(0..4)].into(),
        );
    }
    match rng.gen_range(0..10) {
        0 => {}
        1 => put("total_spent", "n/a".into()),
        2 => put("total_spent", "123.40".into()),
        _ => put(
            "total_spent",
            format!("{}.{:02}", rng.gen_range(0..300), rng.gen_range(0..100)),
        ),
    }
    for _ in 0..rng.gen_range(0..3) {
        put(
            "tags",
            ["vip", "new", "v2", "beta", "x'y", "7"][rng.gen_range(0..6)].into(),
        );
    }
    put(
        "name",
        ["anna", "Bob", "dan", "mia", "zoe", "ivan", "Ólga"][rng.gen_range(0..7)].into(),
    );
    if rng.gen_bool(0.85) {
        put("contact_id", rng.gen_range(1000..100_000).to_string());
    }
}

fn gen_event(rng: &mut SmallRng) -> Ev {
    let (source, ty, version) = CATALOG[rng.gen_range(0..CATALOG.len())];
    let time = now() - Duration::minutes(rng.gen_range(-3 * 1440..60 * 1440));
    let mut payload = json!({"page": PAGES[rng.gen_range(0..PAGES.len())]});
    if ty == "purchase" {
        payload["amount"] = json!(rng.gen_range(1..300));
        if rng.gen_bool(0.5) {
            payload["meta"] = json!({"campaign": format!("c{}", rng.gen_range(1..4))});
        }
    }
    Ev {
        id: uuid(rng),
        source,
        ty,
        version,
        time,
        payload,
    }
}

fn gen_model(seed: u64, n: usize) -> Model {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut m = Model::default();
    for _ in 0..n {
        let id = uuid(&mut rng);
        let mut e = Entity::default();
        gen_attrs(&mut rng, &mut e);
        for _ in 0..rng.gen_range(0..9) {
            e.events.push(gen_event(&mut rng));
        }
        m.entities.insert(id, e);
    }
    m
}

// ---------------------------------------------------------------- loading

async fn load_catalog(c: &tokio_postgres::Client) {
    for (s, t, v) in CATALOG {
        c.execute(
            "INSERT INTO public.sources (id, name) VALUES ($1::text, $1::text) ON CONFLICT DO NOTHING",
            &[s],
        )
        .await
        .unwrap();
        c.execute(
            "INSERT INTO public.events (id, source_id, type, version) VALUES ($1::text || '/' || $2::text || '/' || $3::text, $1, $2, $3)",
            &[s, t, v],
        )
        .await
        .unwrap();
    }
    for a in ATTRS {
        c.execute(
            "INSERT INTO cdp_attr.attributes (id, definition) VALUES ($1, '{}')",
            &[a],
        )
        .await
        .unwrap();
    }
}

/// Writes entities (replacing their attributes; events are appended).
async fn write_entities(
    c: &tokio_postgres::Client,
    m: &Model,
    ids: &[String],
    new_events: &[(String, Ev)],
) {
    c.execute(
        "INSERT INTO cdp_attr.customer_entities (id) SELECT unnest($1::text[])::uuid ON CONFLICT DO NOTHING",
        &[&ids],
    )
    .await
    .unwrap();
    c.execute(
        "DELETE FROM cdp_attr.customer_attributes WHERE customer_entity_id = ANY($1::text[]::uuid[])",
        &[&ids],
    )
    .await
    .unwrap();
    let (mut ai, mut ak, mut av) = (Vec::new(), Vec::new(), Vec::new());
    for id in ids {
        for (k, vs) in &m.entities[id].attrs {
            for v in vs {
                ai.push(id.clone());
                ak.push(k.clone());
                av.push(v.clone());
            }
        }
    }
    c.execute(
        "INSERT INTO cdp_attr.customer_attributes (customer_entity_id, attribute_id, value)
         SELECT i::uuid, k, v FROM unnest($1::text[], $2::text[], $3::text[]) AS x(i, k, v)",
        &[&ai, &ak, &av],
    )
    .await
    .unwrap();
    let (mut ei, mut es, mut et, mut ev, mut etime, mut ep, mut eent) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for (ent, e) in new_events {
        ei.push(e.id.clone());
        es.push(e.source.to_string());
        et.push(e.ty.to_string());
        ev.push(e.version.to_string());
        etime.push(e.time);
        ep.push(e.payload.clone());
        eent.push(ent.clone());
    }
    c.execute(
        "INSERT INTO cdp_ce.customer_events (id, source_id, type, version, event_time, payload)
         SELECT i::uuid, s, t, v, tm, p FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[]) AS x(i, s, t, v, tm, p)",
        &[&ei, &es, &et, &ev, &etime, &ep],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO cdp_ps.event_entities (event_id, entity_id)
         SELECT i::uuid, e::uuid FROM unnest($1::text[], $2::text[]) AS x(i, e)",
        &[&ei, &eent],
    )
    .await
    .unwrap();
}

async fn load_model(c: &tokio_postgres::Client, m: &Model) {
    load_catalog(c).await;
    let ids: Vec<String> = m.entities.keys().cloned().collect();
    let evs: Vec<(String, Ev)> = m
        .entities
        .iter()
        .flat_map(|(id, e)| e.events.iter().map(move |x| (id.clone(), x.clone())))
        .collect();
    write_entities(c, m, &ids, &evs).await;
}

async fn journal(c: &tokio_postgres::Client, entity: &str, kind: &str, items: &[String]) {
    c.execute(
        "INSERT INTO cdpctl.entity_changes (entity_id, kind, items) VALUES ($1::text::uuid, $2, $3)",
        &[&entity, &kind, &items],
    )
    .await
    .unwrap();
}

// ---------------------------------------------------------------- the groups

const CUSTOM_TAG: &str = "EXISTS (SELECT 1 FROM {{attr}}.customer_attributes a WHERE a.customer_entity_id = e.id AND a.attribute_id = 'tags' AND a.value LIKE 'v%')";
const CUSTOM_SIGNIN: &str = "EXISTS (SELECT 1 FROM {{ps}}.event_entities ee JOIN {{ce}}.customer_events ce ON ce.id = ee.event_id WHERE ee.entity_id = e.id AND ce.type = 'signin' AND ce.event_time > {{now}} - interval '10 days' AND ce.event_time <= {{now}})";

fn group_specs() -> Vec<Value> {
    let act = |v: Value| json!({"activity": v});
    vec![
        json!({"id": "eq", "rule": {"attribute": "country", "op": "eq", "value": "CZ"}}),
        json!({"id": "ne", "rule": {"attribute": "country", "op": "ne", "value": "CZ"}}),
        json!({"id": "in", "rule": {"any": [
            {"attribute": "country", "op": "in", "value": ["DE", "SK"]},
            {"attribute": "tags", "op": "in", "value": ["vip", 7]}]}}),
        json!({"id": "gt_num", "rule": {"attribute": "total_spent", "op": "gt", "value": 100}}),
        json!({"id": "range", "rule": {"all": [
            {"attribute": "total_spent", "op": "gte", "value": 50},
            {"attribute": "total_spent", "op": "lte", "value": 200.5}]}}),
        json!({"id": "lt_str", "rule": {"any": [
            {"attribute": "name", "op": "lt", "value": "m"},
            {"attribute": "total_spent", "op": "lt", "value": 10}]}}),
        json!({"id": "eq_num", "rule": {"attribute": "total_spent", "op": "eq", "value": 123.4}}),
        json!({"id": "contains", "rule": {"attribute": "name", "op": "contains", "value": "an"}}),
        json!({"id": "no_contact", "rule": {"not": {"attribute": "contact_id", "op": "exists"}}}),
        json!({"id": "pricing_window", "rule": act(json!({"source": "web", "type": "page_view",
            "where": [{"field": "page", "op": "eq", "value": "/pricing"}], "at_least": 2, "within_days": 30}))}),
        json!({"id": "nested", "rule": {"all": [
            act(json!({"source": "app", "type": "purchase", "at_most": 1})),
            {"not": {"any": [
                act(json!({"type": "email_open", "within_days": 7})),
                {"attribute": "country", "op": "eq", "value": "DE"}]}}]}}),
        json!({"id": "payload", "rule": act(json!({"source": "app", "type": "purchase", "version": "1-0-0",
            "where": [{"field": "amount", "op": "gt", "value": 100},
                      {"field": "meta.campaign", "op": "exists"},
                      {"field": "page", "op": "ne", "value": "/docs"}]}))}),
        json!({"id": "payload2", "rule": {"any": [
            act(json!({"type": "purchase", "where": [{"field": "meta.campaign", "op": "in", "value": ["c1", "c3"]},
                                                      {"field": "amount", "op": "lte", "value": 150}]})),
            act(json!({"source": "web", "type": "page_view", "within_days": 14, "at_least": 3,
                       "where": [{"field": "page", "op": "contains", "value": "o"}, {"field": "page", "op": "gte", "value": "/c"}]}))]}}),
        json!({"id": "custom", "rule": {"any": [
            {"sql": CUSTOM_TAG, "depends_on": {"attributes": ["tags"]}},
            {"all": [{"sql": CUSTOM_SIGNIN, "depends_on": {"events": ["web/signin"], "time": true}},
                     {"attribute": "country", "op": "ne", "value": "SK"}]}]}}),
        json!({"id": "linked", "campaign_id": 77, "rule": {"attribute": "total_spent", "op": "gt", "value": 150}}),
    ]
}

// ---------------------------------------------------------------- the oracle

fn to_num(s: &str) -> Option<f64> {
    let re =
        regex::Regex::new(r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$").unwrap();
    re.is_match(s).then(|| s.trim().parse::<f64>().unwrap())
}

fn lit_matches(v: &str, l: &Lit, op: Op) -> bool {
    use std::cmp::Ordering::*;
    let ord = match l {
        Lit::Str(s) => Some(v.as_bytes().cmp(s.as_bytes())),
        Lit::Num(n) => to_num(v).and_then(|x| x.partial_cmp(&n.parse::<f64>().unwrap())),
    };
    let Some(o) = ord else { return false };
    match op {
        Op::Eq | Op::In => o == Equal,
        Op::Gt => o == Greater,
        Op::Gte => o != Less,
        Op::Lt => o == Less,
        Op::Lte => o != Greater,
        _ => unreachable!(),
    }
}

/// Does any of `values` satisfy the comparison? (`ne` is "none equals".)
fn cmp_values(values: &[String], cmp: &Cmp) -> bool {
    match cmp.op {
        Op::Exists => !values.is_empty(),
        Op::Ne => !cmp_values(
            values,
            &Cmp {
                op: Op::Eq,
                values: cmp.values.clone(),
            },
        ),
        Op::Contains => {
            let Lit::Str(s) = &cmp.values[0] else {
                unreachable!()
            };
            values.iter().any(|v| v.contains(s.as_str()))
        }
        Op::In => values
            .iter()
            .any(|v| cmp.values.iter().any(|l| lit_matches(v, l, Op::In))),
        op => values.iter().any(|v| lit_matches(v, &cmp.values[0], op)),
    }
}

fn payload_text(p: &Value, path: &[String]) -> Vec<String> {
    let mut cur = p;
    for k in path {
        match cur.get(k) {
            Some(x) => cur = x,
            None => return vec![],
        }
    }
    match cur {
        Value::Null => vec![],
        Value::String(s) => vec![s.clone()],
        other => vec![other.to_string()],
    }
}

fn custom(sql: &str, e: &Entity, now: DateTime<Utc>) -> bool {
    if sql == CUSTOM_TAG {
        e.attrs
            .get("tags")
            .is_some_and(|t| t.iter().any(|v| v.starts_with('v')))
    } else if sql == CUSTOM_SIGNIN {
        e.events
            .iter()
            .any(|x| x.ty == "signin" && x.time > now - Duration::days(10) && x.time <= now)
    } else {
        panic!("no oracle for {sql}")
    }
}

fn eval(rule: &Rule, e: &Entity, now: DateTime<Utc>) -> bool {
    match rule {
        Rule::All(rs) => rs.iter().all(|r| eval(r, e, now)),
        Rule::Any(rs) => rs.iter().any(|r| eval(r, e, now)),
        Rule::Not(r) => !eval(r, e, now),
        Rule::Attr(a) => cmp_values(
            e.attrs.get(&a.attribute).map(Vec::as_slice).unwrap_or(&[]),
            &a.cmp,
        ),
        Rule::Activity(a) => {
            let n = e
                .events
                .iter()
                .filter(|x| {
                    a.event.source.as_deref().is_none_or(|s| s == x.source)
                        && a.event.event_type == x.ty
                        && a.event.version.as_deref().is_none_or(|v| v == x.version)
                        && a.within_days.is_none_or(|d| {
                            x.time > now - Duration::days(d as i64) && x.time <= now
                        })
                        && a.filters
                            .iter()
                            .all(|f| cmp_values(&payload_text(&x.payload, &f.path), &f.cmp))
                })
                .count() as u64;
            n >= a.at_least && a.at_most.is_none_or(|m| n <= m)
        }
        Rule::Sql(s) => custom(&s.sql, e, now),
    }
}

fn oracle(m: &Model, now: DateTime<Utc>) -> BTreeMap<String, BTreeSet<String>> {
    group_specs()
        .iter()
        .map(|g| {
            let rule = rules::parse(&g["rule"]).unwrap();
            let members = m
                .entities
                .iter()
                .filter(|(_, e)| eval(&rule, e, now))
                .map(|(id, _)| id.clone())
                .collect();
            (g["id"].as_str().unwrap().to_string(), members)
        })
        .collect()
}

async fn members(c: &tokio_postgres::Client) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = group_specs()
        .iter()
        .map(|g| (g["id"].as_str().unwrap().to_string(), BTreeSet::new()))
        .collect();
    for r in c
        .query(
            "SELECT group_id, entity_id::text FROM audience_data.group_members",
            &[],
        )
        .await
        .unwrap()
    {
        out.get_mut(&r.get::<_, String>(0))
            .unwrap()
            .insert(r.get(1));
    }
    out
}

fn assert_same(
    got: &BTreeMap<String, BTreeSet<String>>,
    want: &BTreeMap<String, BTreeSet<String>>,
) {
    for (g, w) in want {
        let have = &got[g];
        let missing: Vec<_> = w.difference(have).collect();
        let extra: Vec<_> = have.difference(w).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "group {g}: {} missing {missing:?}, {} extra {extra:?}",
            missing.len(),
            extra.len()
        );
    }
}

// ---------------------------------------------------------------- harness

struct Setup {
    t: TestDb,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn new(m: &Model) -> Setup {
        let t = TestDb::new().await;
        load_model(&t.client().await, m).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("groups.json");
        std::fs::write(&path, serde_json::to_string(&group_specs()).unwrap()).unwrap();
        let out = run(t.cli().args(["calc-audiences", "--define"]).arg(&path));
        assert_eq!(out.code, 0, "{}", out.stderr);
        Setup { t, _dir: dir }
    }

    fn calc(&self, args: &[&str], now: DateTime<Utc>) -> Value {
        let now = now.to_rfc3339();
        let out = run(self
            .t
            .cli()
            .args(["--format", "json", "calc-audiences", "--now", &now])
            .args(args));
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.json()
    }
}

fn group_mode<'a>(report: &'a Value, id: &str) -> &'a str {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == id)
        .unwrap()["mode"]
        .as_str()
        .unwrap()
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread")]
async fn full_run_equals_per_entity_oracle() {
    let m = gen_model(1, 300);
    let s = Setup::new(&m).await;
    let r = s.calc(&[], now());
    assert_eq!(r["groups_evaluated"], group_specs().len());
    let c = s.t.client().await;
    let want = oracle(&m, now());
    for (g, w) in &want {
        assert!(
            !w.is_empty() && w.len() < m.entities.len(),
            "group {g} is trivial ({} members)",
            w.len()
        );
    }
    assert_same(&members(&c).await, &want);
    // the report's member counts agree, and a second full run changes nothing
    for g in r["groups"].as_array().unwrap() {
        assert_eq!(
            g["members"].as_u64().unwrap() as usize,
            want[g["id"].as_str().unwrap()].len()
        );
        assert_eq!(g["reason"], "new group");
    }
    let again = s.calc(&["--all"], now());
    assert_eq!(
        (again["added"].as_i64(), again["removed"].as_i64()),
        (Some(0), Some(0))
    );
    // the member journal holds one 'added' row per member
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM audience_data.group_member_changes WHERE change = 'added'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, want.values().map(BTreeSet::len).sum::<usize>());
    // a smaller batch size gives the same result (batch boundaries)
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &json!({"postgresql": pg_block(&s.t.url), "audiences": {"groups": {"batch_size": 7}}}),
    );
    c.batch_execute(
        "DELETE FROM audience_data.group_members; UPDATE audience_data.groups SET member_count = 0",
    )
    .await
    .unwrap();
    let out = run(cli().arg("--config").arg(&cfg).args([
        "--format",
        "json",
        "calc-audiences",
        "--all",
        "--now",
        &now().to_rfc3339(),
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.json()["batches"].as_u64().unwrap() > 40);
    assert_same(&members(&c).await, &want);
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_runs_equal_full_recalculation() {
    let mut m = gen_model(2, 200);
    let s = Setup::new(&m).await;
    s.calc(&[], now());
    let c = s.t.client().await;
    let mut rng = SmallRng::seed_from_u64(99);
    for round in 0..2 {
        let ids: Vec<String> = m.entities.keys().cloned().collect();
        let mut touched = BTreeSet::new();
        let mut new_events = Vec::new();
        // attribute changes
        for _ in 0..15 {
            let id = ids[rng.gen_range(0..ids.len())].clone();
            let e = m.entities.get_mut(&id).unwrap();
            let before = e.attrs.clone();
            gen_attrs(&mut rng, e);
            let changed: Vec<String> = ATTRS
                .iter()
                .filter(|a| before.get(**a) != e.attrs.get(**a))
                .map(|a| a.to_string())
                .collect();
            journal(&c, &id, "attributes", &changed).await;
            touched.insert(id);
        }
        // new events
        for _ in 0..15 {
            let id = ids[rng.gen_range(0..ids.len())].clone();
            let ev = gen_event(&mut rng);
            let key = format!("{}/{}/{}", ev.source, ev.ty, ev.version);
            m.entities.get_mut(&id).unwrap().events.push(ev.clone());
            new_events.push((id.clone(), ev));
            journal(&c, &id, "events", &[key]).await;
            touched.insert(id);
        }
        // a merge: b's events move to a, b disappears
        let (a, b) = (
            ids[rng.gen_range(0..ids.len())].clone(),
            ids[rng.gen_range(0..ids.len())].clone(),
        );
        if a != b && !touched.contains(&b) {
            let gone = m.entities.remove(&b).unwrap();
            m.entities.get_mut(&a).unwrap().events.extend(gone.events);
            c.execute(
                "UPDATE cdp_ps.event_entities SET entity_id = $1::text::uuid WHERE entity_id = $2::text::uuid",
                &[&a, &b],
            )
            .await
            .unwrap();
            c.execute(
                "DELETE FROM cdp_attr.customer_entities WHERE id = $1::text::uuid",
                &[&b],
            )
            .await
            .unwrap();
            journal(&c, &a, "merged", std::slice::from_ref(&b)).await;
            journal(&c, &b, "removed", std::slice::from_ref(&a)).await;
            touched.insert(a);
        }
        // a brand-new entity
        let id = uuid(&mut rng);
        let mut e = Entity::default();
        gen_attrs(&mut rng, &mut e);
        for _ in 0..4 {
            let ev = gen_event(&mut rng);
            journal(
                &c,
                &id,
                "events",
                &[format!("{}/{}/{}", ev.source, ev.ty, ev.version)],
            )
            .await;
            new_events.push((id.clone(), ev.clone()));
            e.events.push(ev);
        }
        journal(
            &c,
            &id,
            "attributes",
            &e.attrs.keys().cloned().collect::<Vec<_>>(),
        )
        .await;
        m.entities.insert(id.clone(), e);
        touched.insert(id);
        let touched: Vec<String> = touched.into_iter().collect();
        write_entities(&c, &m, &touched, &new_events).await;

        let r = s.calc(&[], now());
        assert!(
            r["journal_rows"].as_i64().unwrap() >= 31,
            "round {round}: {r}"
        );
        assert_eq!(
            r["new_entities"], 1,
            "the brand-new entity is evaluated by every group: {r}"
        );
        assert_same(&members(&c).await, &oracle(&m, now()));
        let left: i64 = c
            .query_one("SELECT count(*) FROM cdpctl.entity_changes", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "the run consumes the journal");
        // a full recalculation finds nothing left to change
        let full = s.calc(&["--all"], now());
        assert_eq!(
            (full["added"].as_i64(), full["removed"].as_i64()),
            (Some(0), Some(0)),
            "round {round}: incremental differs from full: {full}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dependency_filtering_skips_unaffected_groups() {
    let m = gen_model(3, 60);
    let s = Setup::new(&m).await;
    s.calc(&[], now());
    let c = s.t.client().await;
    let id = m.entities.keys().next().unwrap().clone();
    let n_groups = group_specs().len();

    // an event type and an attribute no group depends on: nothing evaluated
    journal(&c, &id, "events", &["email/email_click/1-0-0".into()]).await;
    journal(&c, &id, "attributes", &["unused_attr".into()]).await;
    let r = s.calc(&[], now());
    assert_eq!(r["journal_rows"], 2);
    assert_eq!(r["new_entities"], 0);
    assert_eq!(r["groups_evaluated"], 0, "{r}");
    assert_eq!(r["groups_skipped"], n_groups);
    let left: i64 = c
        .query_one("SELECT count(*) FROM cdpctl.entity_changes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);

    // the name attribute: exactly the groups that read it
    journal(&c, &id, "attributes", &["name".into()]).await;
    let r = s.calc(&[], now());
    assert_eq!(r["groups_evaluated"], 2, "{r}");
    assert_eq!(group_mode(&r, "lt_str"), "incremental");
    assert_eq!(group_mode(&r, "contains"), "incremental");
    assert_eq!(group_mode(&r, "eq"), "skipped");

    // signin events: the custom predicate's declared dependency
    journal(&c, &id, "events", &["web/signin/1-0-0".into()]).await;
    let r = s.calc(&[], now());
    assert_eq!(r["groups_evaluated"], 1, "{r}");
    assert_eq!(group_mode(&r, "custom"), "incremental");

    // purchases (any version) reach the activity groups on purchases
    journal(&c, &id, "events", &["app/purchase/2-0-0".into()]).await;
    let r = s.calc(&[], now());
    let evaluated: BTreeSet<&str> = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["mode"] != "skipped")
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        evaluated,
        BTreeSet::from(["nested", "payload2"]),
        "payload only reads version 1-0-0"
    );

    // a changed definition is recalculated in full, the rest skipped
    c.execute(
        "UPDATE audience_data.groups SET definition = '{\"attribute\": \"country\", \"op\": \"eq\", \"value\": \"DE\"}' WHERE id = 'eq'",
        &[],
    )
    .await
    .unwrap();
    let r = s.calc(&[], now());
    assert_eq!(r["groups_evaluated"], 1);
    assert_eq!(group_mode(&r, "eq"), "full");
    assert_eq!(
        r["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == "eq")
            .unwrap()["reason"],
        "definition changed"
    );

    // deleting a group removes its members
    c.execute(
        "DELETE FROM audience_data.groups WHERE id = 'no_contact'",
        &[],
    )
    .await
    .unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM audience_data.group_members WHERE group_id = 'no_contact'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    // --group recalculates only that group and leaves the journal alone
    journal(&c, &id, "attributes", &["country".into()]).await;
    let r = s.calc(&["--group", "ne"], now());
    assert_eq!(r["groups"].as_array().unwrap().len(), 1);
    assert_eq!(r["journal_rows"], 0);
    let left: i64 = c
        .query_one("SELECT count(*) FROM cdpctl.entity_changes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn time_window_groups_refresh_daily() {
    let m = gen_model(4, 200);
    let s = Setup::new(&m).await;
    s.calc(&[], now());
    let c = s.t.client().await;
    let later = now() + Duration::days(2);
    let r = s.calc(&[], later);
    let full: BTreeSet<&str> = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["mode"] == "full")
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        full,
        BTreeSet::from(["custom", "nested", "payload2", "pricing_window"])
    );
    assert_eq!(r["groups_skipped"], group_specs().len() - 4);
    assert!(
        r["added"].as_i64().unwrap() + r["removed"].as_i64().unwrap() > 0,
        "time alone changed nothing: {r}"
    );
    assert_same(&members(&c).await, &oracle(&m, later));
    // within the refresh interval nothing is evaluated again
    let r = s.calc(&[], later + Duration::hours(1));
    assert_eq!(r["groups_evaluated"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn linked_group_changes_reach_the_segment_queue() {
    let mut m = gen_model(5, 200);
    let s = Setup::new(&m).await;
    let r = s.calc(&[], now());
    let c = s.t.client().await;
    let want = &oracle(&m, now())["linked"];
    let with_contact: BTreeMap<String, String> = want
        .iter()
        .filter_map(|id| {
            m.entities[id]
                .attrs
                .get("contact_id")
                .map(|v| (id.clone(), v[0].clone()))
        })
        .collect();
    assert!(
        with_contact.len() < want.len(),
        "the data has linked members without a contact id"
    );
    assert_eq!(
        r["unmapped_contacts"].as_u64().unwrap() as usize,
        want.len() - with_contact.len()
    );
    assert_eq!(
        r["segment_changes"].as_u64().unwrap() as usize,
        with_contact.len()
    );
    let queued: BTreeSet<String> = c
        .query(
            "SELECT key FROM audience_data.segment_changes WHERE segment = '77' AND verb = 'add' AND key_kind = 'contact_id'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(queued, with_contact.values().cloned().collect());

    // a member drops out (attribute change) and another is absorbed (removed)
    let mut it = with_contact.iter();
    let (leaver, leaver_contact) = it.next().unwrap();
    let (absorbed, absorbed_contact) = it.next().unwrap();
    m.entities
        .get_mut(leaver)
        .unwrap()
        .attrs
        .insert("total_spent".into(), vec!["1.00".into()]);
    write_entities(&c, &m, std::slice::from_ref(leaver), &[]).await;
    journal(&c, leaver, "attributes", &["total_spent".into()]).await;
    c.execute(
        "DELETE FROM cdp_attr.customer_entities WHERE id = $1::text::uuid",
        &[absorbed],
    )
    .await
    .unwrap();
    journal(&c, absorbed, "removed", std::slice::from_ref(leaver)).await;
    let r = s.calc(&[], now());
    assert_eq!(r["removed_entities"], 1);
    let removes: BTreeSet<String> = c
        .query("SELECT key FROM audience_data.segment_changes WHERE segment = '77' AND verb = 'remove'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        removes,
        BTreeSet::from([leaver_contact.clone(), absorbed_contact.clone()])
    );
    // the absorbed entity left every group, and the change journal says so
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM audience_data.group_members WHERE entity_id = $1::text::uuid",
            &[absorbed],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM audience_data.group_member_changes WHERE entity_id = $1::text::uuid AND change = 'removed' AND group_id = 'linked'",
            &[leaver],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_names_group_and_leaf_and_saves_nothing() {
    let t = TestDb::new().await;
    load_catalog(&t.client().await).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        json!([
            {"id": "ok", "rule": {"attribute": "country", "op": "eq", "value": "CZ"}},
            {"id": "bad_attr", "rule": {"all": [{"attribute": "country", "op": "eq", "value": "CZ"},
                                                {"attribute": "cuntry", "op": "eq", "value": "CZ"}]}},
            {"id": "bad_op", "rule": {"any": [{"attribute": "country", "op": "like", "value": "C%"}]}},
            {"id": "bad_sql", "rule": {"not": {"sql": "e.nope > 1", "depends_on": {}}}},
            {"id": "bad_event", "rule": {"activity": {"source": "web", "type": "page_veiw"}}}
        ])
        .to_string(),
    )
    .unwrap();
    let out = run(t.cli().args(["calc-audiences", "--define"]).arg(&path));
    assert_eq!(out.code, 1);
    let e = &out.stderr;
    assert!(
        e.contains("4 invalid group definition(s), nothing saved"),
        "{e}"
    );
    assert!(
        e.contains(
            "group \"bad_attr\": rule all[1].attribute(cuntry): unknown attribute \"cuntry\""
        ),
        "{e}"
    );
    assert!(
        e.contains("group \"bad_op\": rule any[0].attribute(country): unknown operator \"like\""),
        "{e}"
    );
    assert!(
        e.contains("group \"bad_sql\": rule not.sql: SQL error: column e.nope does not exist"),
        "{e}"
    );
    assert!(
        e.contains("group \"bad_event\": rule activity(web/page_veiw/*): unknown event type"),
        "{e}"
    );
    let c = t.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM audience_data.groups", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    // --check finds a definition broken after it was saved
    c.execute(
        "INSERT INTO audience_data.groups (id, definition) VALUES ('later', '{\"attribute\": \"gone\", \"op\": \"exists\"}')",
        &[],
    )
    .await
    .unwrap();
    let out = run(t.cli().args(["calc-audiences", "--check"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("group \"later\": rule attribute(gone): unknown attribute \"gone\""),
        "{}",
        out.stdout
    );

    // --explain prints the compiled SQL
    let out = run(t.cli().args([
        "calc-audiences",
        "--explain",
        "later",
        "--now",
        "2026-11-01T12:00:00Z",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("-- depends on attributes: gone"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("SELECT e.id FROM batch_features e WHERE (coalesce(cardinality(e.\"attr:gone\") > 0, false));"), "{}", out.stdout);
    let out = run(t.cli().args(["calc-audiences", "--explain", "nope"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("group \"nope\" does not exist"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_stops_cleanly_on_sigterm() {
    let m = gen_model(6, 30);
    let s = Setup::new(&m).await;
    let child =
        s.t.cli()
            .args([
                "--format",
                "json",
                "calc-audiences",
                "--watch",
                "--interval",
                "200ms",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let c = s.t.client().await;
    // wait for the first round to calculate the new groups
    for _ in 0..100 {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM audience_data.groups WHERE evaluated_hash IS NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["groups_evaluated"], group_specs().len());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped after"));
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_reconnects_after_its_sessions_are_terminated() {
    let m = gen_model(6, 30);
    let s = Setup::new(&m).await;
    let mut child =
        s.t.cli()
            .args([
                "--format",
                "json",
                "calc-audiences",
                "--watch",
                "--interval",
                "200ms",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let c = s.t.client().await;
    let pending = || async {
        c.query_one(
            "SELECT count(*) FROM audience_data.groups WHERE evaluated_hash IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };
    let wait_evaluated = || async {
        for _ in 0..300 {
            if pending().await == 0 {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    };
    assert!(wait_evaluated().await, "the first round never finished");
    // kill every session of the watcher, as a server restart would
    let killed = common::terminate_cdpctl_sessions(&c).await;
    assert!(killed >= 1, "no session of the watcher found");
    // work for a later round: only a reconnected watcher can do it
    c.batch_execute("UPDATE audience_data.groups SET evaluated_hash = NULL")
        .await
        .unwrap();
    let done = wait_evaluated().await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the watcher exited after losing its connection"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        done,
        "no round after the sessions were terminated: {stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("connection lost"), "{stderr}");
}

/// The demo step over the sample CDP, with stitching and attribute
/// calculation stood in for by plain SQL (one entity per generated customer).
#[tokio::test(flavor = "multi_thread")]
async fn demo_groups_over_the_sample_data() {
    let t = TestDb::new().await;
    let mut db = t.db().await;
    // without entities the step is skipped with a reason
    let skipped = cdpctl::groups::demo(&mut db, now()).await.unwrap();
    assert!(skipped["skipped"]
        .as_str()
        .unwrap()
        .contains("no customer entities"));

    let opts = cdpctl::demo::GenOptions {
        customers: 300,
        chains: 0,
        ..Default::default()
    };
    let schemas = db.schemas.clone();
    cdpctl::demo::load(&mut db.client, &schemas, &opts)
        .await
        .unwrap();
    db.client
        .batch_execute(
            "INSERT INTO cdp_ps.event_entities (event_id, entity_id)
             SELECT id, md5('c' || coalesce(substring(payload->>'cookie_id' from 'ck-(\\d+)-'),
                                           substring(payload->>'email' from '(?i)user(\\d+)@'),
                                           substring(payload->>'device_id' from 'dev-(\\d+)'), id::text))::uuid
               FROM cdp_ce.customer_events;
             INSERT INTO cdp_attr.customer_entities (id) SELECT DISTINCT entity_id FROM cdp_ps.event_entities;
             INSERT INTO cdp_attr.customer_attributes (customer_entity_id, attribute_id, value)
             SELECT ee.entity_id, 'total_spent', sum((ce.payload->>'amount')::numeric)::text
               FROM cdp_ps.event_entities ee JOIN cdp_ce.customer_events ce ON ce.id = ee.event_id
              WHERE ce.type = 'purchase' AND ce.payload->>'currency' = 'EUR' AND ce.payload->>'amount' ~ '^[0-9.]+$'
              GROUP BY 1;
             INSERT INTO cdp_attr.customer_attributes (customer_entity_id, attribute_id, value)
             SELECT DISTINCT ON (ee.entity_id) ee.entity_id, 'favourite_page', ce.payload->>'page'
               FROM cdp_ps.event_entities ee JOIN cdp_ce.customer_events ce ON ce.id = ee.event_id
              WHERE ce.type = 'page_view'
              GROUP BY ee.entity_id, ce.payload->>'page' ORDER BY ee.entity_id, count(*) DESC, ce.payload->>'page';",
        )
        .await
        .unwrap();
    let res = cdpctl::groups::demo(&mut db, opts.now).await.unwrap();
    let sizes = res["groups"].as_object().unwrap();
    assert_eq!(sizes.len(), cdpctl::groups::demo_specs().len());
    for (g, n) in sizes {
        let n = n.as_i64().unwrap();
        assert!(
            n > 0 && n < res["entities"].as_i64().unwrap(),
            "demo group {g} has {n} members"
        );
    }
}

/// A custom predicate reading a context key is recalculated in full when the
/// key changes, and not otherwise.
#[tokio::test(flavor = "multi_thread")]
async fn context_changes_recalculate_dependent_groups() {
    let m = gen_model(7, 40);
    let s = Setup::new(&m).await;
    let c = s.t.client().await;
    c.batch_execute(
        "INSERT INTO cdp_attr.context (key, value, modified) VALUES ('min_spent', '100', '2026-11-01 00:00:00')",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctx.json");
    std::fs::write(
        &path,
        json!([{"id": "above_context", "rule": {"sql":
            "EXISTS (SELECT 1 FROM {{attr}}.customer_attributes a WHERE a.customer_entity_id = e.id AND a.attribute_id = 'total_spent' AND {{audience}}.to_num(a.value) > (SELECT value::numeric FROM {{attr}}.context WHERE key = 'min_spent'))",
            "depends_on": {"attributes": ["total_spent"], "context": ["min_spent"]}}}])
        .to_string(),
    )
    .unwrap();
    let out = run(s.t.cli().args(["calc-audiences", "--define"]).arg(&path));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let count = |min: f64| {
        m.entities
            .values()
            .filter(|e| {
                e.attrs
                    .get("total_spent")
                    .is_some_and(|v| v.iter().any(|x| to_num(x).is_some_and(|n| n > min)))
            })
            .count() as i64
    };
    let members = |r: &Value| {
        r["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == "above_context")
            .unwrap()["members"]
            .as_i64()
            .unwrap()
    };
    let r = s.calc(&[], now());
    assert_eq!(members(&r), count(100.0));
    let r = s.calc(&[], now());
    assert_eq!(group_mode(&r, "above_context"), "skipped");
    c.batch_execute("UPDATE cdp_attr.context SET value = '200', modified = '2026-11-01 06:00:00' WHERE key = 'min_spent'")
        .await
        .unwrap();
    let r = s.calc(&[], now());
    assert_eq!(group_mode(&r, "above_context"), "full");
    assert_eq!(members(&r), count(200.0));
    assert!(count(200.0) < count(100.0));
}

/// Custom predicates run inside READ ONLY transactions as the evaluation
/// role: one that writes fails the run (naming the group) and changes
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn custom_predicates_cannot_write() {
    let m = gen_model(8, 5);
    let t = TestDb::new().await;
    let c = t.client().await;
    load_model(&c, &m).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.json");
    std::fs::write(
        &path,
        json!([{"id": "writer", "rule": {"sql": "(SELECT nextval('{{audience}}.group_member_changes_id_seq') > 0)",
                                         "depends_on": {}}}])
        .to_string(),
    )
    .unwrap();
    let out = run(t.cli().args(["calc-audiences", "--define"]).arg(&path));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(t.cli().args(["calc-audiences"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("evaluating group \"writer\""),
        "{}",
        out.stderr
    );
    // refused by the database: the evaluation role may not use the sequence
    // (and the transaction is read-only anyway)
    assert!(
        out.stderr.contains("read-only transaction") || out.stderr.contains("permission denied"),
        "{}",
        out.stderr
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM audience_data.group_members", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

/// A stitching run from scratch gives entities new ids and journals one
/// 'rebuilt' row: every group is recalculated in full, members of entities
/// that no longer exist leave, and the result equals the oracle.
#[tokio::test(flavor = "multi_thread")]
async fn rebuilt_marker_recalculates_every_group() {
    let mut m = gen_model(5, 120);
    let s = Setup::new(&m).await;
    s.calc(&[], now());
    let c = s.t.client().await;
    let mut rng = SmallRng::seed_from_u64(7);
    // half of the entities get new ids, as a rebuild gives them
    let old: Vec<String> = m.entities.keys().step_by(2).cloned().collect();
    let mut renamed = Vec::new();
    for id in &old {
        let e = m.entities.remove(id).unwrap();
        let new = uuid(&mut rng);
        c.execute(
            "INSERT INTO cdp_attr.customer_entities (id) VALUES ($1::text::uuid)",
            &[&new],
        )
        .await
        .unwrap();
        c.execute(
            "UPDATE cdp_ps.event_entities SET entity_id = $1::text::uuid WHERE entity_id = $2::text::uuid",
            &[&new, id],
        )
        .await
        .unwrap();
        c.execute(
            "DELETE FROM cdp_attr.customer_entities WHERE id = $1::text::uuid",
            &[id],
        )
        .await
        .unwrap();
        m.entities.insert(new.clone(), e);
        renamed.push(new);
    }
    write_entities(&c, &m, &renamed, &[]).await;
    c.batch_execute(
        "DELETE FROM cdpctl.entity_changes;
         INSERT INTO cdpctl.entity_changes (entity_id, kind) VALUES ('00000000-0000-0000-0000-000000000000', 'rebuilt')",
    )
    .await
    .unwrap();
    let r = s.calc(&[], now());
    for g in group_specs() {
        let id = g["id"].as_str().unwrap();
        assert_eq!(group_mode(&r, id), "full", "{id}: {r}");
    }
    assert_same(&members(&c).await, &oracle(&m, now()));
    let (left, stale, nil): (i64, i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM cdpctl.entity_changes),
                        (SELECT count(*) FROM audience_data.group_entities_seen s
                          WHERE NOT EXISTS (SELECT 1 FROM cdp_attr.customer_entities ce WHERE ce.id = s.entity_id)),
                        (SELECT count(*) FROM audience_data.group_entities_seen
                          WHERE entity_id = '00000000-0000-0000-0000-000000000000')",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((left, stale, nil), (0, 0, 0));
    // and an incremental run afterwards finds nothing to change
    let full = s.calc(&["--all"], now());
    assert_eq!(
        (full["added"].as_i64(), full["removed"].as_i64()),
        (Some(0), Some(0)),
        "{full}"
    );
}
