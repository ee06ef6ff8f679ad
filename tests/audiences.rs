//! Contact-id audiences: the DynamoDB look-up module, `migrate-audiences` and
//! `membership`, against a real PostgreSQL and a real DynamoDB-protocol
//! server (dynalite) on loopback.

mod common;

use common::dynamo::Dynalite;

fn refs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("ref-{i:06}")).collect()
}

#[tokio::test]
async fn lookup_resolves_mapped_references_only() {
    let d = Dynalite::start().await;
    let all = refs(1_050);
    // every third reference has no mapping
    let mapped: Vec<(&str, i64)> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(i, r)| (r.as_str(), 1_000_000 + i as i64))
        .collect();
    d.load(mapped.iter().copied()).await;
    let mapper = d.mapper.clone().with_concurrency(4);
    let mut query = all.clone();
    query.push(all[1].clone()); // duplicates are asked once
    query.push(String::new()); // never a valid key
    let got = mapper.lookup(&query).await.unwrap();
    assert_eq!(got.len(), mapped.len());
    for (r, id) in &mapped {
        assert_eq!(got.get(*r), Some(id), "{r}");
    }
    let s = mapper.stats();
    assert_eq!(s.keys, 1_050);
    assert_eq!(s.found, mapped.len() as u64);
    assert_eq!(s.requests, 11, "1050 keys = 11 requests of at most 100");
}

#[tokio::test]
async fn lookup_retries_unprocessed_keys_until_complete() {
    let d = Dynalite::start().await;
    let all = refs(300);
    let mapped: Vec<(&str, i64)> = all
        .iter()
        .enumerate()
        .map(|(i, r)| (r.as_str(), i as i64 + 1))
        .collect();
    // 100 items of ~30 KB exceed dynalite's 1 MB response limit
    d.load_padded(mapped.iter().copied(), 30_000).await;
    let mut mapper = d.mapper.clone();
    mapper.projection = false;
    let got = mapper.lookup(&all).await.unwrap();
    assert_eq!(got.len(), 300);
    assert_eq!(got["ref-000299"], 300);
    let s = mapper.stats();
    assert!(
        s.unprocessed_retries >= 3,
        "expected UnprocessedKeys retries, got {s:?}"
    );
}

#[tokio::test]
async fn lookup_errors_name_the_missing_table_and_the_dead_endpoint() {
    let mut d = Dynalite::start().await;
    let mut cfg = d.config();
    cfg.table = "no_such_table".into();
    let m = cdpctl::dynamo::ContactMapper::new(&cfg).await.unwrap();
    let err = format!("{:#}", m.lookup(&refs(3)).await.unwrap_err());
    assert!(err.contains("\"no_such_table\" does not exist"), "{err}");
    assert!(err.contains(&d.endpoint_url()), "{err}");
    let err = format!("{:#}", m.check().await.unwrap_err());
    assert!(err.contains("does not exist"), "{err}");

    let mut m = d.mapper.clone();
    m.max_attempts = 2;
    d.kill();
    let err = format!("{:#}", m.lookup(&refs(3)).await.unwrap_err());
    assert!(
        err.contains("cannot reach DynamoDB at http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("dynamodb.endpoint_url"), "{err}");
}

// ---------------------------------------------------------------------------
// migrate-audiences and membership

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cdpctl::audiences::{self, MembershipQuery, MigrateOptions, Selection};
use cdpctl::demo::audiences::{contact_id, contact_reference, seed_legacy, AudienceSpec};
use cdpctl::dynamo::ContactMapper;
use common::TestDb;

type Runs = (BTreeSet<i64>, BTreeSet<i64>);
/// The size of the big sample campaign (104).
const BIG: usize = 2_000;

type Rows = BTreeMap<(i64, String), Runs>;

fn spec() -> AudienceSpec {
    AudienceSpec {
        campaigns: vec![(101, 40), (102, 250), (103, 900), (104, BIG)],
        contacts: 3_000,
        unmapped_every: 50,
        seed: 7,
    }
}

/// A member of campaign 102 also appears under a second reference that maps
/// to the same contact id (the rows must merge).
const ALIAS: &str = "alias-of-a-102-member";

/// Seeds the legacy audiences, an alias row, and rows already present in the
/// new structure; loads the mapping into dynalite. Returns the contact of the
/// alias and the pre-existing rows.
async fn scenario(t: &TestDb, d: &Dynalite, spec: &AudienceSpec) -> usize {
    let mut db = t.db().await;
    let schemas = db.schemas.clone();
    seed_legacy(&mut db.client, &schemas, spec).await.unwrap();
    let alias_of = spec.members(102, 250).find(|&i| spec.is_mapped(i)).unwrap();
    let c = t.client().await;
    c.batch_execute(&format!(
        "INSERT INTO audience_data.campaign_contact_reference_master VALUES (102, '{ALIAS}', '{{77, 1}}', '{{88}}');
         -- new members that arrived in the new structure before the migration
         INSERT INTO audience_data.campaign_contact_id_master VALUES
           (104, {}, '{{999}}', '{{}}'),
           (104, 424242, '{{5}}', '{{6}}');",
        contact_id(spec.members(104, BIG).find(|&i| spec.is_mapped(i)).unwrap())
    ))
    .await
    .unwrap();
    d.load(
        spec.mappings()
            .chain(std::iter::once((ALIAS.to_string(), contact_id(alias_of)))),
    )
    .await;
    alias_of
}

/// The reference → id mapping of the scenario, as the oracle sees it.
fn oracle_mapping(spec: &AudienceSpec, alias_of: usize) -> BTreeMap<String, i64> {
    let mut m: BTreeMap<String, i64> = spec.mappings().collect();
    m.insert(ALIAS.into(), contact_id(alias_of));
    m
}

async fn table_rows(c: &tokio_postgres::Client, sql: &str) -> Rows {
    c.query(sql, &[])
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let rti: Vec<i64> = r.get(2);
            let ac: Vec<i64> = r.get(3);
            (
                (r.get::<_, i64>(0), r.get::<_, String>(1)),
                (rti.into_iter().collect(), ac.into_iter().collect()),
            )
        })
        .collect()
}

async fn legacy(c: &tokio_postgres::Client) -> Rows {
    table_rows(c, "SELECT campaign_id, contact_reference, rti_program_runs, ac_program_runs FROM audience_data.campaign_contact_reference_master").await
}
async fn id_rows(c: &tokio_postgres::Client) -> Rows {
    table_rows(c, "SELECT campaign_id, contact_id::text, rti_program_runs, ac_program_runs FROM audience_data.campaign_contact_id_master").await
}
async fn unmapped_rows(c: &tokio_postgres::Client) -> Rows {
    table_rows(c, "SELECT campaign_id, contact_reference, rti_program_runs, ac_program_runs FROM audience_data.unmapped_contact_references").await
}

/// The expected new-structure content: the legacy rows translated through
/// the mapping, merged per (campaign, contact id) with the rows already there.
fn expected(legacy: &Rows, pre: &Rows, mapping: &BTreeMap<String, i64>) -> (Rows, Rows) {
    let mut ids = pre.clone();
    let mut unmapped = BTreeMap::new();
    for ((cid, r), (rti, ac)) in legacy {
        match mapping.get(r) {
            Some(id) => {
                let e = ids.entry((*cid, id.to_string())).or_default();
                e.0.extend(rti);
                e.1.extend(ac);
            }
            None => {
                unmapped.insert((*cid, r.clone()), (rti.clone(), ac.clone()));
            }
        }
    }
    (ids, unmapped)
}

fn opts(campaigns: Vec<i64>, batch_size: usize) -> MigrateOptions {
    MigrateOptions {
        selection: Selection {
            all: campaigns.is_empty(),
            campaigns,
            ..Selection::default()
        },
        batch_size,
        ..MigrateOptions::default()
    }
}

fn quiet() -> cdpctl::output::Output {
    cdpctl::output::Output {
        format: cdpctl::output::Format::Json,
        quiet: true,
        verbose: 0,
    }
}

/// Membership answers for a set of probes, as comparable values.
async fn answers(
    t: &TestDb,
    mapper: &ContactMapper,
    probes: &[(Option<i64>, Option<String>)],
) -> Vec<serde_json::Value> {
    let db = t.db().await;
    let mut out = Vec::new();
    for (id, r) in probes {
        let a = audiences::membership(
            &db,
            Some(mapper),
            &MembershipQuery {
                contact_id: *id,
                contact_reference: r.clone(),
                campaigns: vec![101, 102, 103, 104, 105],
            },
        )
        .await
        .unwrap();
        out.push(serde_json::json!({"id": a.contact_id, "campaigns": a.campaigns}));
    }
    out
}

fn same(
    got: &[serde_json::Value],
    want: &[serde_json::Value],
    probes: &[(Option<i64>, Option<String>)],
    when: &str,
) {
    for ((g, w), p) in got.iter().zip(want).zip(probes) {
        assert_eq!(g, w, "{when}: membership of {p:?}");
    }
}

/// Probes: mapped members (with id+reference and with the reference alone),
/// an unmapped member, a pre-existing new-structure contact, and a stranger.
fn probes(spec: &AudienceSpec, alias_of: usize) -> Vec<(Option<i64>, Option<String>)> {
    let mut p = Vec::new();
    let mapped: Vec<usize> = spec
        .members(104, BIG)
        .filter(|&i| spec.is_mapped(i))
        .take(3)
        .chain(
            spec.members(103, 900)
                .filter(|&i| spec.is_mapped(i))
                .take(1),
        ) // also in 104
        .chain(spec.members(101, 40).filter(|&i| spec.is_mapped(i)).take(1))
        .collect();
    for &i in &mapped {
        p.push((Some(contact_id(i)), Some(contact_reference(i))));
        p.push((None, Some(contact_reference(i))));
    }
    let unmapped = spec
        .members(103, 900)
        .find(|&i| !spec.is_mapped(i))
        .unwrap();
    p.push((None, Some(contact_reference(unmapped))));
    // (the alias's contact is left out: before the migration the serving
    // side sees one reference's rows, after it the contact's merged row)
    let _ = alias_of;
    p.push((Some(424242), None));
    p.push((None, Some("nobody".into())));
    p
}

#[tokio::test]
async fn migrated_audiences_equal_legacy_translated_plus_unmapped_and_rerun_changes_nothing() {
    let t = TestDb::new().await;
    let d = Dynalite::start().await;
    let spec = spec();
    let alias_of = scenario(&t, &d, &spec).await;
    let c = t.client().await;
    let before_legacy = legacy(&c).await;
    let pre = id_rows(&c).await;
    let mapping = oracle_mapping(&spec, alias_of);
    let probe = probes(&spec, alias_of);
    let before = answers(&t, &d.mapper, &probe).await;

    let mut db = t.db().await;
    let summary = audiences::migrate(&mut db, &d.mapper, &opts(vec![], 128), &quiet())
        .await
        .unwrap();
    assert_eq!(summary.failed(), 0, "{summary:?}");
    assert_eq!(summary.processed as usize, spec.rows() + 1);
    let (want_ids, want_unmapped) = expected(&before_legacy, &pre, &mapping);
    assert_eq!(id_rows(&c).await, want_ids);
    assert_eq!(unmapped_rows(&c).await, want_unmapped);
    assert!(!want_unmapped.is_empty());
    for r in &summary.campaigns {
        assert_eq!(r.state, "migrated");
        assert_eq!(r.migrated + r.unmapped, r.references, "{r:?}");
        let n_unmapped = want_unmapped
            .keys()
            .filter(|(cid, _)| *cid == r.campaign_id)
            .count();
        assert_eq!(r.unmapped as usize, n_unmapped);
    }
    // the alias merged into its contact's row
    let merged = &id_rows(&c).await[&(102, contact_id(alias_of).to_string())];
    assert!(merged.0.contains(&77) && merged.1.contains(&88));
    same(
        &answers(&t, &d.mapper, &probe).await,
        &before,
        &probe,
        "membership after migration",
    );

    // a rerun on finished campaigns changes nothing
    let snapshot = (id_rows(&c).await, unmapped_rows(&c).await);
    let again = audiences::migrate(&mut db, &d.mapper, &opts(vec![], 128), &quiet())
        .await
        .unwrap();
    assert_eq!(again.processed, 0);
    assert!(again
        .campaigns
        .iter()
        .all(|r| r.note.as_deref() == Some("already migrated")));
    assert_eq!(again.dynamodb.keys, 0);
    assert_eq!((id_rows(&c).await, unmapped_rows(&c).await), snapshot);

    // drop the source of one campaign: membership still answers the same
    let mut o = opts(vec![103, 104], 128);
    o.drop_source = true;
    let dropped = audiences::migrate(&mut db, &d.mapper, &o, &quiet())
        .await
        .unwrap();
    assert!(dropped
        .campaigns
        .iter()
        .all(|r| r.state == "source_dropped"));
    let left: i64 = c
        .query_one("SELECT count(*) FROM audience_data.campaign_contact_reference_master WHERE campaign_id IN (103, 104)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    same(
        &answers(&t, &d.mapper, &probe).await,
        &before,
        &probe,
        "membership after --drop-source",
    );
}

#[tokio::test]
async fn dynamodb_dying_mid_migration_fails_clearly_keeps_the_checkpoint_and_a_rerun_finishes() {
    let t = TestDb::new().await;
    let mut d = Dynalite::start().await;
    let spec = spec();
    let alias_of = scenario(&t, &d, &spec).await;
    let c = t.client().await;
    let before_legacy = legacy(&c).await;
    let pre = id_rows(&c).await;
    let mapping = oracle_mapping(&spec, alias_of);
    let probe = probes(&spec, alias_of);
    let before = answers(&t, &d.mapper, &probe).await;

    // kill the server after the third committed batch of the big campaign
    let pid = d.child_id().unwrap();
    let hook: audiences::migrate::BatchHook = Arc::new(move |b| {
        if b.campaign_id == 104 && b.batch == 3 {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let mut mapper = d.mapper.clone();
    mapper.max_attempts = 2;
    let mut o = opts(vec![104], 100);
    o.on_batch = Some(hook);
    let mut db = t.db().await;
    let err = audiences::migrate(&mut db, &mapper, &o, &quiet())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("migrating campaign 104"), "{msg}");
    assert!(
        msg.contains("cannot reach DynamoDB at http://127.0.0.1:"),
        "{msg}"
    );
    d.kill();

    // the checkpoint holds: exactly the references up to it were written
    let row = c
        .query_one("SELECT state, last_reference, migrated, unmapped FROM audience_data.audience_migrations WHERE campaign_id = 104", &[])
        .await
        .unwrap();
    let (state, last, migrated, unmapped): (String, String, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(state, "copying");
    assert!(
        migrated + unmapped >= 300 && migrated + unmapped < BIG as i64,
        "{migrated} {unmapped}"
    );
    // (the server's collation decides the key order)
    let done = table_rows(
        &c,
        &format!(
            "SELECT campaign_id, contact_reference, rti_program_runs, ac_program_runs
               FROM audience_data.campaign_contact_reference_master
              WHERE campaign_id = 104 AND contact_reference <= '{last}'"
        ),
    )
    .await;
    assert_eq!(done.len() as i64, migrated + unmapped);
    let (want_ids, want_unmapped) = expected(&done, &pre, &mapping);
    assert_eq!(id_rows(&c).await, want_ids);
    assert_eq!(unmapped_rows(&c).await, want_unmapped);

    // a new server with the same mapping: membership during the migration
    // is unchanged, and the rerun finishes with exactly the right totals
    let d2 = Dynalite::start().await;
    d2.load(mapping.iter().map(|(r, id)| (r.as_str(), *id)))
        .await;
    same(
        &answers(&t, &d2.mapper, &probe).await,
        &before,
        &probe,
        "membership during migration",
    );
    let summary = audiences::migrate(&mut db, &d2.mapper, &opts(vec![], 100), &quiet())
        .await
        .unwrap();
    assert_eq!(summary.failed(), 0);
    let r104 = summary
        .campaigns
        .iter()
        .find(|r| r.campaign_id == 104)
        .unwrap();
    assert_eq!(r104.references, BIG as i64);
    assert_eq!(r104.migrated + r104.unmapped, BIG as i64);
    assert_eq!(
        summary.processed as usize,
        spec.rows() + 1 - (migrated + unmapped) as usize
    );
    let (want_ids, want_unmapped) = expected(&before_legacy, &pre, &mapping);
    assert_eq!(id_rows(&c).await, want_ids);
    assert_eq!(unmapped_rows(&c).await, want_unmapped);
    same(
        &answers(&t, &d2.mapper, &probe).await,
        &before,
        &probe,
        "membership after migration",
    );
}

#[tokio::test]
async fn unprocessed_keys_during_a_migration_are_retried_until_complete() {
    let t = TestDb::new().await;
    let d = Dynalite::start().await;
    let spec = AudienceSpec {
        campaigns: vec![(7, 400)],
        contacts: 400,
        unmapped_every: 10,
        seed: 1,
    };
    let mut db = t.db().await;
    let schemas = db.schemas.clone();
    seed_legacy(&mut db.client, &schemas, &spec).await.unwrap();
    d.load_padded(spec.mappings(), 30_000).await;
    let mut mapper = d.mapper.clone();
    mapper.projection = false; // whole ~30 KB items: 100 exceed the 1 MB response limit
    let summary = audiences::migrate(&mut db, &mapper, &opts(vec![7], 400), &quiet())
        .await
        .unwrap();
    let r = &summary.campaigns[0];
    assert_eq!(
        (r.migrated, r.unmapped, r.state.as_str()),
        (360, 40, "migrated")
    );
    assert!(
        summary.dynamodb.unprocessed_retries > 0,
        "{:?}",
        summary.dynamodb
    );
    let c = t.client().await;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM audience_data.campaign_contact_id_master WHERE campaign_id = 7",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 360);
}

// ---------------------------------------------------------------------------
// the CLI

fn cli_config(
    t: &TestDb,
    d: &Dynalite,
    dir: &tempfile::TempDir,
    extra: serde_json::Value,
) -> std::path::PathBuf {
    let mut cfg =
        serde_json::json!({"postgresql": common::pg_block(&t.url), "dynamodb": d.config_json()});
    if let serde_json::Value::Object(m) = extra {
        for (k, v) in m {
            cfg[k] = v;
        }
    }
    common::write_config(dir, &cfg)
}

#[tokio::test]
async fn killing_the_process_mid_migration_resumes_with_exact_totals() {
    let t = TestDb::new().await;
    let d = Dynalite::start().await;
    let spec = AudienceSpec {
        campaigns: vec![(900, 6_000)],
        contacts: 6_000,
        unmapped_every: 25,
        seed: 3,
    };
    let mut db = t.db().await;
    let schemas = db.schemas.clone();
    seed_legacy(&mut db.client, &schemas, &spec).await.unwrap();
    d.load(spec.mappings()).await;
    let c = t.client().await;
    let before_legacy = legacy(&c).await;
    let mapping: BTreeMap<String, i64> = spec.mappings().collect();
    let dir = tempfile::tempdir().unwrap();
    let cfg = cli_config(&t, &d, &dir, serde_json::json!({}));

    let mut child = common::cli()
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "migrate-audiences",
            "--campaign",
            "900",
            "--batch-size",
            "50",
            "--concurrency",
            "2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let q = "SELECT coalesce((SELECT migrated + unmapped FROM audience_data.audience_migrations WHERE campaign_id = 900), 0)";
    loop {
        let n: i64 = c.query_one(q, &[]).await.unwrap().get(0);
        if n >= 200 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the migration ended before it could be killed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let row = c
        .query_one("SELECT state, migrated + unmapped FROM audience_data.audience_migrations WHERE campaign_id = 900", &[])
        .await
        .unwrap();
    let (state, at_kill): (String, i64) = (row.get(0), row.get(1));
    assert_eq!(state, "copying");
    assert!(at_kill < 6_000, "killed after the end: {at_kill}");

    let out = common::run(common::cli().args([
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        "migrate-audiences",
        "--campaign",
        "900",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    let r = &j["campaigns"][0];
    assert_eq!(r["references"], 6_000);
    assert_eq!(r["migrated"], 5_760);
    assert_eq!(r["unmapped"], 240);
    assert_eq!(r["state"], "migrated");
    // the rerun read only what the killed run had not committed
    assert!(j["processed"].as_i64().unwrap() <= 6_000 - at_kill, "{j}");
    let (want_ids, want_unmapped) = expected(&before_legacy, &BTreeMap::new(), &mapping);
    assert_eq!(id_rows(&c).await, want_ids);
    assert_eq!(unmapped_rows(&c).await, want_unmapped);
}

#[tokio::test]
async fn cli_dry_run_drop_source_confirmation_membership_and_config_errors() {
    let t = TestDb::new().await;
    let d = Dynalite::start().await;
    let spec = AudienceSpec {
        campaigns: vec![(11, 30), (12, 250)],
        contacts: 300,
        unmapped_every: 10,
        seed: 5,
    };
    let mut db = t.db().await;
    let schemas = db.schemas.clone();
    seed_legacy(&mut db.client, &schemas, &spec).await.unwrap();
    d.load(spec.mappings()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = cli_config(&t, &d, &dir, serde_json::json!({}));
    let cfg = cfg.to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut c = common::cli();
        c.args(["--config", cfg]).args(args);
        common::run(&mut c)
    };

    // dry run: counts and DynamoDB reads, nothing written
    let out = cli(&[
        "--format",
        "json",
        "migrate-audiences",
        "--all",
        "--dry-run",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["campaigns"][0]["campaign_id"], 11);
    assert_eq!(j["campaigns"][0]["dynamodb_requests"], 1);
    assert_eq!(j["campaigns"][1]["references"], 250);
    assert_eq!(j["campaigns"][1]["dynamodb_requests"], 3);
    assert_eq!(j["campaigns"][1]["state"], "not started");
    let c = t.client().await;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM audience_data.audience_migrations",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    // size filters
    let out = cli(&[
        "--format",
        "json",
        "migrate-audiences",
        "--all",
        "--min-references",
        "100",
        "--dry-run",
    ]);
    assert_eq!(out.json()["campaigns"].as_array().unwrap().len(), 1);

    // --drop-source asks; without a terminal it refuses unless --yes
    let out = cli(&["migrate-audiences", "--campaign", "11", "--drop-source"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("pass --yes"), "{}", out.stderr);

    // the table report
    let out = cli(&["migrate-audiences", "--campaign", "11", "--campaign", "12"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("migrated"), "{}", out.stdout);
    assert!(
        out.stdout.contains("280 references processed"),
        "{}",
        out.stdout
    );
    let out = cli(&[
        "--yes",
        "--format",
        "json",
        "migrate-audiences",
        "--campaign",
        "11",
        "--drop-source",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["campaigns"][0]["state"], "source_dropped");

    // membership by reference only: the id comes from DynamoDB
    let member = spec.members(12, 250).find(|&i| spec.is_mapped(i)).unwrap();
    let out = cli(&[
        "--format",
        "json",
        "membership",
        "--contact-reference",
        &contact_reference(member),
        "--campaign",
        "11,12,13",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["contact_id"], contact_id(member));
    assert_eq!(j["contact_id_source"], "dynamodb");
    assert!(
        j["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["campaign_id"] == 12),
        "{j}"
    );
    let out = cli(&[
        "membership",
        "--contact-id",
        &contact_id(member).to_string(),
        "--campaign",
        "12",
        "--campaign",
        "13",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "contact {} is in 1 of 2 campaign(s)",
            contact_id(member)
        )),
        "{}",
        out.stdout
    );

    // errors name what to fix
    let out = cli(&["migrate-audiences", "--campaign", "777"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("777 have no rows"), "{}", out.stderr);
    let out = cli(&["migrate-audiences"]);
    assert!(
        out.stderr.contains("--campaign ID (repeatable) or --all"),
        "{}",
        out.stderr
    );
    let bad = cli_config(
        &t,
        &d,
        &dir,
        serde_json::json!({"audiences": {"migration": {"batch_sise": 10}}}),
    );
    let out = common::run(common::cli().args([
        "--config",
        bad.to_str().unwrap(),
        "migrate-audiences",
        "--all",
    ]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("audiences.migration"), "{}", out.stderr);
    assert!(out.stderr.contains("batch_sise"), "{}", out.stderr);
}

/// An endpoint that accepts connections and never answers: the look-up gives
/// up after the request deadline (not attempts × attempt timeout) with an
/// error naming the endpoint and the two config keys.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_dynamodb_endpoint_fails_at_the_request_deadline() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let t = TestDb::new().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            held.push(s); // open, silent
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(
        &dir,
        &serde_json::json!({"dynamodb": {
            "endpoint_url": format!("http://127.0.0.1:{port}"),
            "region": "us-east-1",
            "request_deadline_ms": 1500,
            "attempt_timeout_ms": 300
        }}),
    );
    let mut child = t
        .cli()
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .arg("--config")
        .arg(&cfg)
        .args([
            "membership",
            "--contact-reference",
            "ref-1",
            "--campaign",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // liveness only: before the deadline existed this took minutes
    let mut waited = 0;
    while child.try_wait().unwrap().is_none() {
        if waited > 600 {
            let _ = child.kill();
            panic!("membership against a hung endpoint did not fail");
        }
        waited += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for want in [
        format!("DynamoDB at http://127.0.0.1:{port} did not complete BatchGetItem"),
        "within the request deadline of 1500 ms".to_string(),
        "at most 300 ms each; last: no answer in time".to_string(),
        "\"dynamodb.request_deadline_ms\"".to_string(),
        "\"dynamodb.attempt_timeout_ms\"".to_string(),
    ] {
        assert!(stderr.contains(&want), "{want}: {stderr}");
    }
    assert!(accepted.load(Ordering::SeqCst) >= 1);
}

#[test]
fn dynamodb_timeouts_must_be_positive() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = cdpctl::config::DynamoConfig {
        attempt_timeout_ms: 0,
        ..Default::default()
    };
    let e = rt
        .block_on(cdpctl::dynamo::ContactMapper::new(&cfg))
        .unwrap_err()
        .to_string();
    assert!(e.contains("dynamodb.attempt_timeout_ms"), "{e}");
}
