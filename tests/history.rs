//! Campaign history: capture triggers against table states, point-in-time
//! look-ups against an oracle over the raw change list, import idempotence
//! and bad lines, and the `history-at` outputs.

mod common;

use std::collections::BTreeMap;

use cdpctl::config::Config;
use cdpctl::history::{import, query};
use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const CAMPAIGNS_DDL: &str = "
CREATE TABLE public.campaigns (
    id          bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    name        text NOT NULL,
    status      text NOT NULL DEFAULT 'active',
    priority    int NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX ON public.campaigns (customer_id);";

fn history_config(section: Value) -> Config {
    Config {
        history: section.as_object().unwrap().clone(),
        ..Default::default()
    }
}

/// A test database with public.campaigns under capture.
async fn captured_db() -> (TestDb, cdpctl::db::Db) {
    let t = TestDb::new().await;
    let c = t.client().await;
    c.batch_execute(CAMPAIGNS_DDL).await.unwrap();
    let cfg = history_config(json!({"campaigns_table": "public.campaigns"}));
    let mut db = t.app_with(cfg).connect("test").await.unwrap();
    let lines = cdpctl::commands::init::post_migrate(&mut db).await.unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("capture triggers installed on public.campaigns"));
    (t, db)
}

/// The table as a state: customer → campaign id → to_jsonb(row).
async fn table_state(c: &tokio_postgres::Client) -> BTreeMap<i64, BTreeMap<i64, Value>> {
    let mut out: BTreeMap<i64, BTreeMap<i64, Value>> = BTreeMap::new();
    for r in c
        .query(
            "SELECT customer_id, id, to_jsonb(c) FROM public.campaigns c",
            &[],
        )
        .await
        .unwrap()
    {
        out.entry(r.get(0)).or_default().insert(r.get(1), r.get(2));
    }
    out
}

async fn history_state(
    db: &cdpctl::db::Db,
    customer: i64,
    at: DateTime<Utc>,
) -> BTreeMap<i64, Value> {
    query::state_at(&db.client, &db.schemas, customer, at, None, false)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.campaign_id, r.snapshot))
        .collect()
}

/// Random statements against the captured table (inserts, priority shifts,
/// quick saves inside transactions, deletes, re-creations of deleted ids);
/// after each commit the table is recorded with the time. The history at
/// every recorded time must equal the table then.
#[tokio::test(flavor = "multi_thread")]
async fn capture_matches_every_table_state() {
    let (t, db) = captured_db().await;
    let c = t.client().await;
    let mut rng = SmallRng::seed_from_u64(7);
    let mut checkpoints = Vec::new();
    let mut next_id = 1i64;
    let customers = [10i64, 20, 30];
    for step in 0..60 {
        let cust = customers[rng.gen_range(0..customers.len())];
        let sql = match rng.gen_range(0..6) {
            // a new campaign on top: shift every priority, insert at 1
            0 | 1 => {
                next_id += 1;
                format!(
                    "BEGIN;
                     UPDATE public.campaigns SET priority = priority + 1 WHERE customer_id = {cust};
                     INSERT INTO public.campaigns (id, customer_id, name, priority) VALUES ({next_id}, {cust}, 'c{next_id}', 1);
                     COMMIT;"
                )
            }
            // quick saves of one campaign, several in one transaction
            2 => format!(
                "BEGIN;
                 UPDATE public.campaigns SET name = name || '.' WHERE id = (SELECT min(id) FROM public.campaigns WHERE customer_id = {cust});
                 UPDATE public.campaigns SET status = CASE status WHEN 'active' THEN 'paused' ELSE 'active' END
                  WHERE id = (SELECT min(id) FROM public.campaigns WHERE customer_id = {cust});
                 COMMIT;"
            ),
            3 => format!(
                "DELETE FROM public.campaigns WHERE id = (SELECT max(id) FROM public.campaigns WHERE customer_id = {cust})"
            ),
            // re-create a deleted id (same campaign id comes back)
            4 => format!(
                "INSERT INTO public.campaigns (id, customer_id, name, priority)
                 SELECT g, {cust}, 'again' || g, 99 FROM generate_series(2, {next_id}) g
                  WHERE NOT EXISTS (SELECT 1 FROM public.campaigns WHERE id = g)
                  ORDER BY g LIMIT 1"
            ),
            _ => format!("UPDATE public.campaigns SET priority = priority * 2 WHERE customer_id = {cust} AND priority % 2 = {}", step % 2),
        };
        c.batch_execute(&sql).await.unwrap();
        let now: DateTime<Utc> = c
            .query_one("SELECT clock_timestamp()", &[])
            .await
            .unwrap()
            .get(0);
        checkpoints.push((now, table_state(&c).await));
    }
    for (at, state) in &checkpoints {
        for cust in customers {
            let want = state.get(&cust).cloned().unwrap_or_default();
            assert_eq!(
                history_state(&db, cust, *at).await,
                want,
                "customer {cust} at {at}"
            );
        }
    }
}

/// Several saves of one campaign in one transaction and in quick
/// succession are all captured, in order; a priority shift over 50
/// campaigns is one statement with one time; key changes and TRUNCATE too.
#[tokio::test(flavor = "multi_thread")]
async fn quick_saves_and_priority_shifts_are_all_captured() {
    let (t, db) = captured_db().await;
    let c = t.client().await;
    c.batch_execute(
        "INSERT INTO public.campaigns (id, customer_id, name, priority)
         SELECT g, 1, 'c' || g, g FROM generate_series(1, 50) g",
    )
    .await
    .unwrap();
    c.batch_execute(
        "BEGIN;
         UPDATE public.campaigns SET name = 'draft 1' WHERE id = 7;
         UPDATE public.campaigns SET name = 'draft 2' WHERE id = 7;
         UPDATE public.campaigns SET name = 'draft 3' WHERE id = 7;
         COMMIT;",
    )
    .await
    .unwrap();
    for i in 4..=6 {
        c.batch_execute(&format!(
            "UPDATE public.campaigns SET name = 'draft {i}' WHERE id = 7"
        ))
        .await
        .unwrap();
    }
    let tl = query::timeline(&db.client, &db.schemas, 1, Some(&[7]), None)
        .await
        .unwrap();
    let names: Vec<&str> = tl
        .iter()
        .map(|r| r.snapshot["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["c7", "draft 1", "draft 2", "draft 3", "draft 4", "draft 5", "draft 6"]
    );
    for w in tl.windows(2) {
        assert!(
            w[0].event_time < w[1].event_time,
            "times not strictly increasing: {:?}",
            tl.iter().map(|r| r.event_time).collect::<Vec<_>>()
        );
    }
    // the state right after "draft 2" (inside the transaction) is visible
    let at = tl[2].event_time;
    let s = query::state_at(&db.client, &db.schemas, 1, at, Some(&[7]), false)
        .await
        .unwrap();
    assert_eq!(s[0].snapshot["name"], "draft 2");

    let before: i64 = c
        .query_one(
            "SELECT count(*) FROM inapp_campaigns.campaign_snapshots",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    c.batch_execute("UPDATE public.campaigns SET priority = priority + 1 WHERE customer_id = 1")
        .await
        .unwrap();
    let r = c
        .query_one(
            "SELECT count(*), count(DISTINCT event_time), min(event_type), max(event_type)
               FROM inapp_campaigns.campaign_snapshots WHERE id > (SELECT max(id) - 50 FROM inapp_campaigns.campaign_snapshots)",
            &[],
        )
        .await
        .unwrap();
    let after: i64 = c
        .query_one(
            "SELECT count(*) FROM inapp_campaigns.campaign_snapshots",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(after - before, 50);
    assert_eq!(r.get::<_, i64>(1), 1, "one statement, one time");
    assert_eq!(r.get::<_, String>(2), "updated");
    assert_eq!(r.get::<_, String>(3), "updated");

    // a changed key is a deletion of the old id and a creation of the new one
    c.batch_execute("UPDATE public.campaigns SET id = 1007 WHERE id = 7")
        .await
        .unwrap();
    let last: Vec<(i64, String)> = c
        .query(
            "SELECT campaign_id, event_type FROM inapp_campaigns.campaign_snapshots ORDER BY id DESC LIMIT 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut last = last;
    last.sort();
    assert_eq!(last, vec![(7, "deleted".into()), (1007, "created".into())]);

    // TRUNCATE records every campaign as deleted
    c.batch_execute("TRUNCATE public.campaigns").await.unwrap();
    let now: DateTime<Utc> = c
        .query_one("SELECT clock_timestamp()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(history_state(&db, 1, now).await.is_empty());
    let all = query::state_at(&db.client, &db.schemas, 1, now, None, true)
        .await
        .unwrap();
    assert_eq!(all.len(), 51);
    assert!(all.iter().all(|r| r.event_type == "deleted"));

    // snapshots are append-only
    let err = c
        .batch_execute("UPDATE inapp_campaigns.campaign_snapshots SET event_type = 'updated'")
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("append-only"), "{err:?}");
}

/// One change of the oracle's list.
#[derive(Clone, Debug)]
struct RawChange {
    customer: i64,
    campaign: i64,
    time: DateTime<Utc>,
    kind: &'static str,
    snapshot: Value,
}

fn random_history(rng: &mut SmallRng) -> Vec<RawChange> {
    let base = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
    let mut out = Vec::new();
    for customer in 1..=3i64 {
        for campaign in 1..=8i64 {
            let mut alive = false;
            let mut time = base + Duration::seconds(rng.gen_range(0..100));
            for v in 0..rng.gen_range(1..12) {
                // coarse times: ties between changes are common
                time += Duration::seconds(rng.gen_range(0..3));
                let kind = if !alive {
                    alive = true;
                    "created"
                } else if rng.gen_bool(0.2) {
                    alive = false;
                    "deleted"
                } else {
                    "updated"
                };
                out.push(RawChange {
                    customer,
                    campaign: customer * 100 + campaign,
                    time,
                    kind,
                    snapshot: json!({"name": format!("c{campaign}"), "version": v, "priority": rng.gen_range(1..10)}),
                });
            }
        }
    }
    // shuffle: the file is not in time order
    for i in (1..out.len()).rev() {
        let j = rng.gen_range(0..=i);
        out.swap(i, j);
    }
    out
}

fn to_ndjson(changes: &[RawChange]) -> String {
    changes
        .iter()
        .map(|c| {
            json!({"customer_id": c.customer, "campaign_id": c.campaign,
                   "event_time": c.time.to_rfc3339(), "event_type": c.kind, "snapshot": c.snapshot})
            .to_string()
                + "\n"
        })
        .collect()
}

/// The oracle: per campaign, the last change (by time, then file order) at
/// or before `at`.
fn oracle(
    changes: &[RawChange],
    customer: i64,
    at: DateTime<Utc>,
    include_deleted: bool,
) -> BTreeMap<i64, (String, Value)> {
    let mut best: BTreeMap<i64, (DateTime<Utc>, usize)> = BTreeMap::new();
    for (i, c) in changes.iter().enumerate() {
        if c.customer != customer || c.time > at {
            continue;
        }
        let e = best.entry(c.campaign).or_insert((c.time, i));
        if (c.time, i) > *e {
            *e = (c.time, i);
        }
    }
    best.into_iter()
        .map(|(id, (_, i))| {
            (
                id,
                (changes[i].kind.to_string(), changes[i].snapshot.clone()),
            )
        })
        .filter(|(_, (k, _))| include_deleted || k != "deleted")
        .collect()
}

async fn import_text(db: &mut cdpctl::db::Db, text: &str) -> import::ImportReport {
    let opts = import::ImportOptions {
        source: "test".into(),
        skip_invalid: false,
        reject_file: "/dev/null".into(),
        dry_run: false,
        tz: None,
    };
    import::import(
        &mut db.client,
        &db.schemas,
        tokio::io::BufReader::new(text.as_bytes()),
        &opts,
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .unwrap()
}

/// Random imported histories (deletes, re-creations, equal times): the
/// point-in-time state equals the oracle at every change time, between
/// them, before the first and after the last.
#[tokio::test(flavor = "multi_thread")]
async fn point_in_time_equals_oracle_on_random_histories() {
    let t = TestDb::new().await;
    let mut db = t.db().await;
    for seed in 0..3u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let changes = random_history(&mut rng);
        // each seed gets its own customers
        let changes: Vec<RawChange> = changes
            .into_iter()
            .map(|mut c| {
                c.customer += 10 * seed as i64;
                c.campaign += 10_000 * seed as i64;
                c
            })
            .collect();
        let rep = import_text(&mut db, &to_ndjson(&changes)).await;
        assert_eq!(rep.inserted as usize, changes.len());
        let mut times: Vec<DateTime<Utc>> = changes.iter().map(|c| c.time).collect();
        times.sort();
        times.dedup();
        let mut probes = times.clone();
        probes.extend(times.iter().map(|t| *t - Duration::milliseconds(500)));
        probes.push(times[0] - Duration::days(1));
        probes.push(*times.last().unwrap() + Duration::days(1));
        for customer in 1..=3i64 {
            let customer = customer + 10 * seed as i64;
            for at in &probes {
                for include_deleted in [false, true] {
                    let got: BTreeMap<i64, (String, Value)> = query::state_at(
                        &db.client,
                        &db.schemas,
                        customer,
                        *at,
                        None,
                        include_deleted,
                    )
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| (r.campaign_id, (r.event_type, r.snapshot)))
                    .collect();
                    assert_eq!(
                        got,
                        oracle(&changes, customer, *at, include_deleted),
                        "seed {seed} customer {customer} at {at} deleted {include_deleted}"
                    );
                }
            }
            // narrowing to a campaign list gives the same rows for those
            let at = times[times.len() / 2];
            let ids = [
                customer * 100 + 1 + 10_000 * seed as i64,
                customer * 100 + 3 + 10_000 * seed as i64,
                999_999,
            ];
            let got: Vec<i64> =
                query::state_at(&db.client, &db.schemas, customer, at, Some(&ids), true)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.campaign_id)
                    .collect();
            let want: Vec<i64> = oracle(&changes, customer, at, true)
                .into_keys()
                .filter(|k| ids.contains(k))
                .collect();
            assert_eq!(got, want);
        }
    }
}

fn line(customer: i64, campaign: i64, time: &str, kind: &str, snap: Value) -> String {
    json!({"customer_id": customer, "campaign_id": campaign, "event_time": time, "event_type": kind, "snapshot": snap})
        .to_string()
}

async fn snapshot_count(t: &TestDb) -> i64 {
    t.client()
        .await
        .query_one(
            "SELECT count(*) FROM inapp_campaigns.campaign_snapshots",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn import_is_idempotent_and_bad_lines_fail_or_are_rejected() {
    let t = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("export.ndjson");
    let lines = [
        line(
            1,
            10,
            "2024-03-05T10:00:00Z",
            "created",
            json!({"name": "A"}),
        ),
        line(
            1,
            10,
            "2024-03-05T11:00:00Z",
            "updated",
            json!({"name": "B"}),
        ),
        String::new(),
        line(
            1,
            11,
            "2024-03-05 12:00:00.5 UTC",
            "created",
            json!({"name": "C"}),
        ),
        // the same change twice in one file counts once
        line(
            1,
            11,
            "2024-03-05 12:00:00.5 UTC",
            "created",
            json!({"name": "C"}),
        ),
    ];
    std::fs::write(&good, lines.join("\n") + "\n").unwrap();
    let first = run(t
        .cli()
        .args(["--format", "json", "history-import"])
        .arg(&good));
    assert_eq!(first.code, 0, "{}", first.stderr);
    let j = first.json();
    assert_eq!(j["lines"], 5);
    assert_eq!(j["valid"], 4);
    assert_eq!(j["inserted"], 3);
    assert_eq!(j["already_present"], 1);
    let second = run(t.cli().args(["history-import"]).arg(&good));
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second
            .stdout
            .contains("4 change(s) valid: 0 added, 4 already present"),
        "{}",
        second.stdout
    );
    assert_eq!(snapshot_count(&t).await, 3);

    // a bad line: error with its line number, nothing imported
    let bad = dir.path().join("bad.ndjson");
    let bad_lines = [
        line(
            2,
            20,
            "2024-03-05T10:00:00Z",
            "created",
            json!({"name": "X"}),
        ),
        line(
            2,
            20,
            "2024-03-05T11:00:00Z",
            "updated",
            json!({"name": "Y"}),
        ),
        line(
            2,
            20,
            "2024-03-05T12:00:00Z",
            "modified",
            json!({"name": "Z"}),
        ),
        "{not json".to_string(),
        line(
            2,
            21,
            "2024-03-05T13:00:00Z",
            "created",
            json!({"name": "W"}),
        ),
    ];
    std::fs::write(&bad, bad_lines.join("\n") + "\n").unwrap();
    let failed = run(t.cli().args(["history-import"]).arg(&bad));
    assert_eq!(failed.code, 1);
    assert!(
        failed.stderr.contains("bad.ndjson line 3: \"event_type\" must be \"created\", \"updated\" or \"deleted\", got \"modified\"; nothing was imported"),
        "{}",
        failed.stderr
    );
    assert_eq!(snapshot_count(&t).await, 3);

    // --dry-run counts but keeps nothing
    let dry = run(t
        .cli()
        .args([
            "--format",
            "json",
            "history-import",
            "--dry-run",
            "--skip-invalid",
        ])
        .arg(&bad));
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json()["inserted"], 3);
    assert_eq!(snapshot_count(&t).await, 3);

    // --skip-invalid: the rest is imported, bad lines go to the reject file
    let rejects = dir.path().join("rejects.ndjson");
    let skipped = run(t
        .cli()
        .args(["history-import", "--skip-invalid", "--reject-file"])
        .arg(&rejects)
        .arg(&bad));
    assert_eq!(skipped.code, 0, "{}", skipped.stderr);
    assert!(
        skipped.stdout.contains("3 added, 0 already present"),
        "{}",
        skipped.stdout
    );
    assert!(
        skipped.stdout.contains("2 bad line(s) skipped"),
        "{}",
        skipped.stdout
    );
    assert!(
        skipped.stdout.contains("line 4: not valid JSON"),
        "{}",
        skipped.stdout
    );
    let rejected = std::fs::read_to_string(&rejects).unwrap();
    assert_eq!(rejected, format!("{}\n{}\n", bad_lines[2], bad_lines[3]));
    assert_eq!(snapshot_count(&t).await, 6);

    // stdin works too, and is idempotent with the file import
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' history-import - < '{}'",
            env!("CARGO_BIN_EXE_cdpctl"),
            good.display()
        ))
        .env("DATABASE_URL", &t.url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stdin: 5 line(s), 4 change(s) valid: 0 added"),
        "{stdout}"
    );
}

/// Lines PostgreSQL cannot store (a NUL escape) and times without an offset
/// are bad lines with their number, never a failed COPY or a silent UTC; a
/// UTF-8 byte-order mark before the first line is skipped.
#[tokio::test(flavor = "multi_thread")]
async fn import_rejects_nul_and_naive_times_by_line_and_skips_a_bom() {
    let t = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.ndjson");
    let good = line(
        3,
        30,
        "2024-03-05T10:00:00Z",
        "created",
        json!({"name": "A"}),
    );
    let nul = line(
        3,
        31,
        "2024-03-05T10:00:00Z",
        "created",
        json!({"name": "B\u{0}C"}),
    );
    assert!(nul.contains("\\u0000"), "{nul}");
    let naive = line(
        3,
        32,
        "2024-03-05 10:00:00",
        "created",
        json!({"name": "D"}),
    );
    let last = line(
        3,
        33,
        "2024-03-05T11:00:00+01:00",
        "created",
        json!({"name": "E"}),
    );
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend(format!("{good}\n{nul}\n{naive}\n{last}\n").bytes());
    std::fs::write(&file, &bytes).unwrap();

    // without --skip-invalid the NUL line fails the import by number
    let failed = run(t.cli().args(["history-import"]).arg(&file));
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    assert!(
        failed
            .stderr
            .contains("export.ndjson line 2: \"snapshot.name\" holds a NUL character")
            && failed.stderr.contains("nothing was imported"),
        "{}",
        failed.stderr
    );
    assert_eq!(snapshot_count(&t).await, 0);

    // --skip-invalid: both bad lines go to the reject file, the rest is in
    let rejects = dir.path().join("rejects.ndjson");
    let out = run(t
        .cli()
        .args([
            "--format",
            "json",
            "history-import",
            "--skip-invalid",
            "--reject-file",
        ])
        .arg(&rejects)
        .arg(&file));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["lines"], 4);
    assert_eq!(j["inserted"], 2);
    assert_eq!(j["rejected"], 2);
    assert_eq!(j["errors"][0]["line"], 2);
    assert!(
        j["errors"][0]["error"].as_str().unwrap().contains("NUL"),
        "{j}"
    );
    assert_eq!(j["errors"][1]["line"], 3);
    let e = j["errors"][1]["error"].as_str().unwrap();
    assert!(e.contains("has no offset") && e.contains("--tz"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&rejects).unwrap(),
        format!("{nul}\n{naive}\n")
    );
    assert_eq!(snapshot_count(&t).await, 2);

    // the rejected naive line imports with --tz, read in that zone
    let out = run(t
        .cli()
        .args(["history-import", "--tz", "Europe/Berlin"])
        .arg(&rejects)
        .arg("--skip-invalid")
        .arg("--reject-file")
        .arg(dir.path().join("again.ndjson")));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("1 added"), "{}", out.stdout);
    let c = t.client().await;
    let at: DateTime<Utc> = c
        .query_one(
            "SELECT event_time FROM inapp_campaigns.campaign_snapshots WHERE campaign_id = 32",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(at, Utc.with_ymd_and_hms(2024, 3, 5, 9, 0, 0).unwrap());
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM inapp_campaigns.campaign_snapshots WHERE campaign_id = 31",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the NUL line is never stored");

    let bad_zone = run(t
        .cli()
        .args(["history-import", "--tz", "Mars/Olympus"])
        .arg(&file));
    assert_eq!(bad_zone.code, 2, "{}", bad_zone.stderr);
    assert!(
        bad_zone.stderr.contains("--tz: unknown time zone"),
        "{}",
        bad_zone.stderr
    );
}

/// Imports a small known history for the output tests.
async fn seeded_history() -> TestDb {
    let t = TestDb::new().await;
    let mut db = t.db().await;
    let text = [
        line(
            5,
            1,
            "2024-03-05T09:00:00Z",
            "created",
            json!({"name": "Welcome", "status": "active", "priority": 1, "body": "hi"}),
        ),
        line(
            5,
            2,
            "2024-03-05T09:30:00Z",
            "created",
            json!({"name": "Sale", "status": "active", "priority": 1, "body": "x"}),
        ),
        line(
            5,
            1,
            "2024-03-05T09:30:00Z",
            "updated",
            json!({"name": "Welcome", "status": "active", "priority": 2, "body": "hi"}),
        ),
        line(
            5,
            2,
            "2024-03-05T12:59:00Z",
            "updated",
            json!({"name": "Sale!", "status": "paused", "priority": 1, "body": "x", "tag": "q1"}),
        ),
        line(
            5,
            1,
            "2024-03-05T13:30:00Z",
            "deleted",
            json!({"name": "Welcome", "status": "active", "priority": 2, "body": "hi"}),
        ),
    ]
    .join("\n");
    import_text(&mut db, &text).await;
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn history_at_table_json_and_time_zones() {
    let t = seeded_history().await;
    // 14:00 in Berlin is 13:00 UTC: campaign 1 still exists
    let out = run(t.cli().args([
        "history-at",
        "--customer",
        "5",
        "--at",
        "2024-03-05 14:00",
        "--tz",
        "Europe/Berlin",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("customer 5 at 2024-03-05 14:00:00 +01:00: 2 campaign(s)\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("│ campaign ┆ name    ┆ status ┆ priority ┆ last change"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "│ 1        ┆ Welcome ┆ active ┆ 2        ┆ updated 2024-03-05 10:30:00 +01:00"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "│ 2        ┆ Sale!   ┆ paused ┆ 1        ┆ updated 2024-03-05 13:59:00 +01:00"
        ),
        "{}",
        out.stdout
    );

    // 14:00 UTC: campaign 1 was deleted
    let out = run(t.cli().args([
        "--format",
        "json",
        "history-at",
        "--customer",
        "5",
        "--at",
        "2024-03-05T14:00:00Z",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["deleted_hidden"], 1);
    assert_eq!(j["campaigns"].as_array().unwrap().len(), 1);
    assert_eq!(
        j["campaigns"][0]["fields"],
        json!({"name": "Sale!", "status": "paused", "priority": 1})
    );
    let out = run(t.cli().args([
        "--format",
        "json",
        "history-at",
        "--customer",
        "5",
        "--at",
        "2024-03-05T14:00:00Z",
        "--include-deleted",
        "--fields",
        "name,body",
    ]));
    let j = out.json();
    assert_eq!(j["campaigns"][0]["event_type"], "deleted");
    assert_eq!(
        j["campaigns"][0]["fields"],
        json!({"name": "Welcome", "body": "hi"})
    );
    // a bare date is midnight: nothing existed yet
    let out = run(t
        .cli()
        .args(["history-at", "--customer", "5", "--at", "2024-03-05"]));
    assert!(
        out.stdout
            .contains("2024-03-05 00:00:00 +00:00: 0 campaign(s)"),
        "{}",
        out.stdout
    );
    // --campaign narrows
    let out = run(t.cli().args([
        "--format",
        "json",
        "history-at",
        "--customer",
        "5",
        "--at",
        "2024-03-05T10:00:00Z",
        "--campaign",
        "2",
        "--fields",
        "all",
    ]));
    let j = out.json();
    assert_eq!(j["campaigns"].as_array().unwrap().len(), 1);
    assert_eq!(j["campaigns"][0]["fields"]["body"], "x");
}

#[tokio::test(flavor = "multi_thread")]
async fn history_at_diff_from_and_timeline() {
    let t = seeded_history().await;
    let out = run(t.cli().args([
        "history-at",
        "--customer",
        "5",
        "--diff-from",
        "2024-03-05T09:15:00Z",
        "--at",
        "2024-03-05T14:00:00Z",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "customer 5: changes from 2024-03-05 09:15:00 +00:00 to 2024-03-05 14:00:00 +00:00: 2 campaign(s) changed"
    );
    let rows: Vec<Vec<String>> = lines
        .iter()
        .filter(|l| l.starts_with('│') && !l.contains("campaign ┆ change"))
        .map(|l| {
            l.trim_matches('│')
                .split('┆')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    let want: Vec<Vec<&str>> = vec![
        vec!["1", "deleted", "name", "Welcome", "(absent)"],
        vec!["", "", "priority", "1", "(absent)"],
        vec!["", "", "status", "active", "(absent)"],
        vec!["2", "created", "name", "(absent)", "Sale!"],
        vec!["", "", "priority", "(absent)", "1"],
        vec!["", "", "status", "(absent)", "paused"],
    ];
    assert_eq!(rows, want, "{}", out.stdout);

    // updated fields: changed, added
    let out = run(t.cli().args([
        "--format",
        "json",
        "history-at",
        "--customer",
        "5",
        "--diff-from",
        "2024-03-05T10:00:00Z",
        "--at",
        "2024-03-05T13:00:00Z",
    ]));
    let j = out.json();
    assert_eq!(
        j["campaigns"],
        json!([{"campaign_id": 2, "change": "updated", "fields": [
            {"field": "name", "change": "changed", "before": "Sale", "after": "Sale!"},
            {"field": "status", "change": "changed", "before": "active", "after": "paused"},
            {"field": "tag", "change": "added", "before": null, "after": "q1"},
        ], "changed_by": [{"actor_user": null, "actor_application": null, "actor": null}]}])
    );

    let out = run(t.cli().args([
        "history-at",
        "--customer",
        "5",
        "--timeline",
        "--campaign",
        "1",
        "--tz",
        "America/New_York",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("campaign 1 of customer 5: 3 change(s)\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("2024-03-05 04:00:00 -05:00 ┆ created ┆ name: Welcome"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("2024-03-05 04:30:00 -05:00 ┆ updated ┆ priority: 1 -> 2"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("2024-03-05 08:30:00 -05:00 ┆ deleted ┆ name: Welcome"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn history_at_usage_errors() {
    let t = seeded_history().await;
    let out = run(t.cli().args([
        "history-at",
        "--customer",
        "5",
        "--at",
        "last tuesday 14:00",
    ]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--at: cannot parse time \"last tuesday 14:00\": use RFC 3339 (2024-03-05T14:00:00Z, 2024-03-05T14:00:00+01:00), \"YYYY-MM-DD HH:MM[:SS]\" or a date YYYY-MM-DD (midnight) in --tz (default UTC), a time of day HH:MM[:SS] (today in --tz), \"now\", \"today\" or \"yesterday\" (midnight in --tz, or followed by HH:MM[:SS]), or \"N UNIT ago\" with UNIT s, m, h, d or w (90s ago, 30m ago, 2h ago, 3 days ago, 1 week ago)"),
        "{}",
        out.stderr
    );
    let out = run(t.cli().args([
        "history-at",
        "--customer",
        "5",
        "--at",
        "2024-03-31 02:30",
        "--tz",
        "Europe/Berlin",
    ]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("does not exist in Europe/Berlin"),
        "{}",
        out.stderr
    );
    let out = run(t.cli().args([
        "history-at",
        "--customer",
        "5",
        "--at",
        "now",
        "--tz",
        "Berlin",
    ]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--tz: unknown time zone \"Berlin\""),
        "{}",
        out.stderr
    );
    let out = run(t.cli().args([
        "history-at",
        "--customer",
        "5",
        "--diff-from",
        "3 fortnights ago",
        "--at",
        "now",
    ]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("--diff-from: cannot parse time \"3 fortnights ago\""),
        "{}",
        out.stderr
    );
    let out = run(t.cli().args(["history-at", "--customer", "5"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = run(t
        .cli()
        .args(["history-at", "--customer", "6", "--at", "now"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("customer 6 has no recorded campaign history"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn init_installs_capture_once_and_reports_config_errors() {
    let t = TestDb::new().await;
    t.client().await.batch_execute(CAMPAIGNS_DDL).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = |history: Value| {
        write_config(
            &dir,
            &json!({"postgresql": pg_block(&t.url), "history": history}),
        )
    };
    let p = cfg(json!({"campaigns_table": "public.campaigns", "time_zone": "Europe/Berlin"}));
    let dry = run(cli().arg("--config").arg(&p).args(["init", "--dry-run"]));
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stdout.contains("CREATE TRIGGER cdpctl_history_update AFTER UPDATE ON \"public\".\"campaigns\" REFERENCING OLD TABLE AS cdpctl_old_rows NEW TABLE AS cdpctl_new_rows FOR EACH STATEMENT"), "{}", dry.stdout);
    let first = run(cli().arg("--config").arg(&p).arg("init"));
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stdout.contains("history: capture triggers installed on public.campaigns (customer customer_id, campaign id id)"),
        "{}",
        first.stdout
    );
    assert!(
        !first.stdout.contains("nothing changed"),
        "{}",
        first.stdout
    );
    let second = run(cli().arg("--config").arg(&p).arg("init"));
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stdout.contains("nothing changed"),
        "{}",
        second.stdout
    );
    assert!(!second.stdout.contains("history:"), "{}", second.stdout);
    let dry = run(cli().arg("--config").arg(&p).args(["init", "--dry-run"]));
    assert!(
        dry.stdout.contains("nothing would change"),
        "{}",
        dry.stdout
    );
    let status = run(cli().arg("--config").arg(&p).arg("status"));
    assert!(
        status.stdout.contains("on public.campaigns"),
        "{}",
        status.stdout
    );

    // the capture works through the installed triggers
    let c = t.client().await;
    c.batch_execute(
        "INSERT INTO public.campaigns (id, customer_id, name, priority) VALUES (1, 9, 'x', 1)",
    )
    .await
    .unwrap();
    let out =
        run(cli()
            .arg("--config")
            .arg(&p)
            .args(["history-at", "--customer", "9", "--at", "now"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("+01:00: 1 campaign(s)")
            || out.stdout.contains("+02:00: 1 campaign(s)"),
        "{}",
        out.stdout
    );

    // un-configuring removes the triggers
    let p = cfg(json!({}));
    let off = run(cli().arg("--config").arg(&p).arg("init"));
    assert!(
        off.stdout
            .contains("history: removed the capture triggers from public.campaigns"),
        "{}",
        off.stdout
    );

    for (section, want) in [
        (json!({"campaign_table": "x"}), "config: key \"history.campaign_table\": unknown field"),
        (json!({"campaigns_table": "public.nope"}), "config: key \"history.campaigns_table\": table public.nope does not exist"),
        (json!({"campaigns_table": "public.campaigns", "customer_column": "cust"}), "config: key \"history.customer_column\": table public.campaigns has no column \"cust\""),
        (json!({"campaigns_table": "public.campaigns", "id_column": "name"}), "config: key \"history.id_column\": column \"name\" of public.campaigns is text"),
        (json!({"time_zone": "Mars/Base"}), "config: key \"history.time_zone\": unknown time zone"),
        (json!({"campaigns_table": "a.b.c"}), "config: key \"history.campaigns_table\": expected \"schema.table\""),
    ] {
        let p = cfg(section);
        let out = run(cli().arg("--config").arg(&p).arg("init"));
        assert_eq!(out.code, 1, "{}", out.stdout);
        assert!(out.stderr.contains(want), "want {want}\ngot {}", out.stderr);
    }
}

#[test]
fn example_config_history_section_is_valid() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cdpctl.json"))
            .unwrap();
    let cfg = Config::from_json(&text, "examples/cdpctl.json").unwrap();
    let hc = cdpctl::history::HistoryConfig::from_config(&cfg).unwrap();
    let target = hc.target(&cfg).unwrap();
    assert_eq!(target.table.qualified(), "\"public\".\"campaigns\"");
    assert_eq!(hc.time_zone().unwrap(), chrono_tz::Tz::UTC);
    // a bare table name lives in cdp_schema
    let cfg = history_config(json!({"campaigns_table": "campaigns"}));
    let hc = cdpctl::history::HistoryConfig::from_config(&cfg).unwrap();
    assert_eq!(hc.target(&cfg).unwrap().table.display(), "public.campaigns");
}

/// The demo's history step: 13 changes captured, the look-up before the
/// delete shows 5 campaigns, the diff 1 created / 3 updated / 1 deleted;
/// a second run (with --reset: the database then holds events) starts over.
#[tokio::test(flavor = "multi_thread")]
async fn demo_shows_history() {
    let t = TestDb::empty().await;
    for (customer, seed, reset) in [(900001, "1", None), (900001, "2", Some("--reset"))] {
        let out = run(t
            .cli()
            .args([
                "--yes",
                "--format",
                "json",
                "demo",
                "--customers",
                "10",
                "--seed",
                seed,
            ])
            .args(reset));
        assert_eq!(out.code, 0, "{}", out.stderr);
        let j = out.json();
        let step = j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s[0] == "history")
            .expect("a history step")[1]
            .clone();
        assert_eq!(step["customer_id"], customer);
        assert_eq!(step["captured"], 13);
        assert_eq!(step["campaigns_at"], 5);
        assert_eq!(
            step["changed"],
            json!({"created": 1, "updated": 3, "deleted": 1})
        );
    }
}

/// Roles made for one test (roles are per cluster, so their names are
/// unique), dropped with their grants when the test ends.
struct Roles {
    url: String,
    names: Vec<String>,
}

impl Drop for Roles {
    fn drop(&mut self) {
        let names = self.names.join(", ");
        cleanup(
            &self.url,
            format!("DROP OWNED BY {names}; DROP ROLE {names}"),
        );
    }
}

/// A session on the test database as `user`, with an application_name.
async fn connect_as(url: &str, user: &str, application: &str) -> tokio_postgres::Client {
    let mut u = url::Url::parse(url).unwrap();
    u.set_username(user).unwrap();
    u.query_pairs_mut()
        .append_pair("application_name", application);
    let (c, conn) = tokio_postgres::connect(u.as_str(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting as {user}: {e}"));
    tokio::spawn(conn);
    c
}

type ActorRow = (i64, String, Option<String>, Option<String>, Option<String>);

async fn actor_rows(c: &tokio_postgres::Client) -> Vec<ActorRow> {
    c.query(
        "SELECT campaign_id, event_type, actor_user, actor_application, actor
           FROM inapp_campaigns.campaign_snapshots ORDER BY event_time, campaign_id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

/// The capture function runs as its owner (SECURITY DEFINER), yet every
/// snapshot names the role that ran the statement (a login, or the role it
/// SET ROLE to), its application_name and the cdpctl.actor it set; an
/// empty setting is NULL. history-at shows them in the timeline and the diff.
#[tokio::test(flavor = "multi_thread")]
async fn actor_is_the_role_that_ran_the_statement() {
    let (t, _db) = captured_db().await;
    let admin = t.client().await;
    let suffix = format!("{:08x}", rand::random::<u32>());
    let login = format!("cdpctl_t_login_{suffix}");
    let editor = format!("cdpctl_t_editor_{suffix}");
    let _roles = Roles {
        url: t.url.clone(),
        names: vec![login.clone(), editor.clone()],
    };
    admin
        .batch_execute(&format!(
            "CREATE ROLE {login} LOGIN; CREATE ROLE {editor} NOLOGIN; GRANT {editor} TO {login};
             GRANT SELECT, INSERT, UPDATE, DELETE ON public.campaigns TO {login}, {editor};"
        ))
        .await
        .unwrap();
    let app = connect_as(&t.url, &login, "billing-ui").await;
    app.batch_execute(
        "INSERT INTO public.campaigns (id, customer_id, name, priority) VALUES (1, 7, 'Welcome', 1), (2, 7, 'Sale', 2)",
    )
    .await
    .unwrap();
    app.batch_execute(
        "SET cdpctl.actor = 'alice@support'; UPDATE public.campaigns SET name = 'Welcome!' WHERE id = 1",
    )
    .await
    .unwrap();
    app.batch_execute(&format!(
        "BEGIN; SET LOCAL ROLE {editor}; SET LOCAL cdpctl.actor = 'bob@support';
         UPDATE public.campaigns SET priority = 3 WHERE id = 2; COMMIT;"
    ))
    .await
    .unwrap();

    // the CLI, before anything is deleted: the timeline and the diff name them
    let out = run(t.cli().args([
        "--format",
        "json",
        "history-at",
        "--customer",
        "7",
        "--timeline",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let who: Vec<(i64, Value, Value, Value)> = out.json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["campaign_id"].as_i64().unwrap(),
                c["actor_user"].clone(),
                c["actor_application"].clone(),
                c["actor"].clone(),
            )
        })
        .collect();
    let (l, e) = (json!(login), json!(editor));
    let ui = json!("billing-ui");
    assert_eq!(
        who,
        vec![
            (1, l.clone(), ui.clone(), Value::Null),
            (2, l.clone(), ui.clone(), Value::Null),
            (1, l.clone(), ui.clone(), json!("alice@support")),
            (2, e.clone(), ui.clone(), json!("bob@support")),
        ]
    );
    let out = run(t.cli().args([
        "history-at",
        "--customer",
        "7",
        "--timeline",
        "--campaign",
        "1",
        "--fields",
        "name",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "┆ updated ┆ alice@support ({login} via billing-ui) ┆ name: Welcome -> Welcome! "
        )),
        "{}",
        out.stdout
    );
    let out = run(t.cli().args([
        "--format",
        "json",
        "history-at",
        "--customer",
        "7",
        "--diff-from",
        "1h ago",
        "--at",
        "now",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["campaigns"][1]["campaign_id"], 2);
    assert_eq!(
        j["campaigns"][1]["changed_by"],
        json!([
            {"actor_user": login, "actor_application": "billing-ui", "actor": null},
            {"actor_user": editor, "actor_application": "billing-ui", "actor": "bob@support"},
        ])
    );
    let out = run(t.cli().args([
        "history-at",
        "--customer",
        "7",
        "--diff-from",
        "1h ago",
        "--at",
        "now",
        "--fields",
        "name",
    ]));
    assert!(out.stdout.contains("┆ changed by "), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("┆ bob@support ({editor} via billing-ui)")),
        "{}",
        out.stdout
    );

    // after the transaction the session is the login again; '' is no actor
    app.batch_execute("SET cdpctl.actor = ''; DELETE FROM public.campaigns WHERE id = 2")
        .await
        .unwrap();
    // a superuser session without application_name truncates
    let me: String = admin
        .query_one("SELECT session_user::text", &[])
        .await
        .unwrap()
        .get(0);
    admin
        .batch_execute("TRUNCATE public.campaigns")
        .await
        .unwrap();
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        actor_rows(&admin).await,
        vec![
            (1, "created".into(), s(&login), s("billing-ui"), None),
            (2, "created".into(), s(&login), s("billing-ui"), None),
            (
                1,
                "updated".into(),
                s(&login),
                s("billing-ui"),
                s("alice@support")
            ),
            (
                2,
                "updated".into(),
                s(&editor),
                s("billing-ui"),
                s("bob@support")
            ),
            (2, "deleted".into(), s(&login), s("billing-ui"), None),
            (1, "deleted".into(), s(&me), None, None),
        ]
    );
}

/// `--timeline` without `--campaign`: every change of every campaign of the
/// customer, oldest first, each diffed against the same campaign's previous
/// snapshot; `--campaign` narrows, `--at` cuts; other customers never show.
#[tokio::test(flavor = "multi_thread")]
async fn customer_wide_timeline_across_campaigns() {
    let (t, _db) = captured_db().await;
    let c = t.client().await;
    c.batch_execute("SET application_name = 'campaign-editor'")
        .await
        .unwrap();
    for sql in [
        "INSERT INTO public.campaigns (id, customer_id, name, priority) VALUES (1, 1, 'A', 1)",
        "INSERT INTO public.campaigns (id, customer_id, name, priority) VALUES (2, 1, 'B', 2)",
        "INSERT INTO public.campaigns (id, customer_id, name, priority) VALUES (3, 2, 'other', 1)",
        "UPDATE public.campaigns SET name = 'A2' WHERE id = 1",
        "UPDATE public.campaigns SET priority = 5 WHERE id = 2",
        "INSERT INTO public.campaigns (id, customer_id, name, priority) VALUES (4, 1, 'C', 3)",
        "DELETE FROM public.campaigns WHERE id = 1",
        "UPDATE public.campaigns SET name = 'other2' WHERE id = 3",
    ] {
        c.batch_execute(sql).await.unwrap();
    }
    let timeline = |extra: &[&str]| -> Value {
        let out = run(t
            .cli()
            .args([
                "--format",
                "json",
                "history-at",
                "--customer",
                "1",
                "--timeline",
                "--precise",
            ])
            .args(extra));
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.json()
    };
    let kinds = |j: &Value| -> Vec<(i64, String)> {
        j["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["campaign_id"].as_i64().unwrap(),
                    c["event_type"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let all = timeline(&[]);
    let k = |id: i64, kind: &str| (id, kind.to_string());
    assert_eq!(
        kinds(&all),
        vec![
            k(1, "created"),
            k(2, "created"),
            k(1, "updated"),
            k(2, "updated"),
            k(4, "created"),
            k(1, "deleted"),
        ]
    );
    let stored: i64 = c
        .query_one(
            "SELECT count(*) FROM inapp_campaigns.campaign_snapshots WHERE customer_id = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(all["changes"].as_array().unwrap().len() as i64, stored);
    let times: Vec<&str> = all["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["event_time"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    // each update against its own campaign's previous snapshot
    assert_eq!(
        all["changes"][2]["changes"],
        json!([{"field": "name", "change": "changed", "before": "A", "after": "A2"}])
    );
    assert_eq!(
        all["changes"][3]["changes"],
        json!([{"field": "priority", "change": "changed", "before": 2, "after": 5}])
    );
    assert_eq!(all["campaigns"], json!([]));
    assert!(all.get("campaign_id").is_none());

    let some = timeline(&["--campaign", "2,4"]);
    assert_eq!(
        kinds(&some),
        vec![k(2, "created"), k(2, "updated"), k(4, "created")]
    );
    // up to --at: an exact (precise) time of the fourth change
    let cut = timeline(&["--at", times[3]]);
    assert_eq!(kinds(&cut), kinds(&all)[..4].to_vec());
    assert_eq!(cut["at"], times[3]);

    let me: String = c
        .query_one("SELECT session_user::text", &[])
        .await
        .unwrap()
        .get(0);
    let out = run(t.cli().args([
        "history-at",
        "--customer",
        "1",
        "--timeline",
        "--fields",
        "name,priority",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("customer 1: 6 change(s) of 3 campaign(s)\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "┆ 2        ┆ updated ┆ {me} via campaign-editor ┆ priority: 2 -> 5"
        )),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("other"), "{}", out.stdout);
}

/// A zone in which it is about noon now, so that a time of day is safely
/// in the past (01:00) or in the future (23:00) whenever the test runs.
fn noon_zone(now: DateTime<Utc>) -> (String, chrono::FixedOffset) {
    use chrono::Timelike;
    let offset = 12 - now.hour() as i32; // -11 ..= 12
    let name = match offset {
        0 => "Etc/GMT".to_string(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    };
    (name, chrono::FixedOffset::east_opt(offset * 3600).unwrap())
}

/// Relative times through the CLI against imported changes made 3 days,
/// 2 hours and 30 minutes ago.
#[tokio::test(flavor = "multi_thread")]
async fn relative_times_from_the_command_line() {
    let t = TestDb::new().await;
    let mut db = t.db().await;
    let now = Utc::now();
    let ago = |d: Duration| (now - d).to_rfc3339();
    let text = [
        line(
            8,
            1,
            &ago(Duration::days(3)),
            "created",
            json!({"name": "Old", "priority": 1}),
        ),
        line(
            8,
            2,
            &ago(Duration::hours(2)),
            "created",
            json!({"name": "Spring", "priority": 2}),
        ),
        line(
            8,
            2,
            &ago(Duration::minutes(30)),
            "updated",
            json!({"name": "Spring -20%", "priority": 2}),
        ),
    ]
    .join("\n");
    import_text(&mut db, &text).await;
    let at = |at: &str, tz: &str| -> (Value, String) {
        let out = run(t.cli().args([
            "--format",
            "json",
            "history-at",
            "--customer",
            "8",
            "--tz",
            tz,
            "--at",
            at,
        ]));
        assert_eq!(out.code, 0, "{at}: {}", out.stderr);
        (out.json(), out.stderr)
    };
    let names = |at_: &str| -> Vec<(i64, String)> {
        at(at_, "UTC").0["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["campaign_id"].as_i64().unwrap(),
                    c["fields"]["name"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let n = |id: i64, name: &str| (id, name.to_string());
    assert_eq!(names("1h ago"), vec![n(1, "Old"), n(2, "Spring")]);
    assert_eq!(names("90 minutes ago"), vec![n(1, "Old"), n(2, "Spring")]);
    assert_eq!(names("10m ago"), vec![n(1, "Old"), n(2, "Spring -20%")]);
    assert_eq!(names("now"), vec![n(1, "Old"), n(2, "Spring -20%")]);
    assert_eq!(names("2 days ago"), vec![n(1, "Old")]);
    assert_eq!(names("1 day ago"), vec![n(1, "Old")]);
    assert_eq!(names("yesterday"), vec![n(1, "Old")]);
    assert_eq!(names("1 week ago"), vec![]);
    assert_eq!(names("4d ago"), vec![]);
    // imported snapshots name no actor
    let (j, _) = at("now", "UTC");
    for key in ["actor_user", "actor_application", "actor"] {
        assert_eq!(j["campaigns"][0][key], Value::Null, "{key}");
    }
    let out = run(t.cli().args([
        "--format",
        "json",
        "history-at",
        "--customer",
        "8",
        "--diff-from",
        "1h ago",
        "--at",
        "now",
    ]));
    let j = out.json();
    assert_eq!(j["campaigns"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(j["campaigns"][0]["fields"][0]["after"], "Spring -20%");
    assert_eq!(
        j["campaigns"][0]["changed_by"],
        json!([{"actor_user": null, "actor_application": null, "actor": null}])
    );

    // a time of day is today in --tz
    let (zone, offset) = noon_zone(now);
    let today = now.with_timezone(&offset).date_naive();
    let local = |h: u32| {
        offset
            .from_local_datetime(&today.and_hms_opt(h, 0, 0).unwrap())
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let (j, stderr) = at("01:00", &zone);
    assert_eq!(j["at"], local(1), "{zone}");
    assert!(stderr.is_empty(), "{stderr}");
    let (midnight, _) = at("00:00", &zone);
    assert_eq!(midnight["at"], at("today", &zone).0["at"]);
    assert_eq!(midnight["at"], local(0));
    let (yesterday, _) = at("yesterday 01:00", &zone);
    let want = offset
        .from_local_datetime(&(today - Duration::days(1)).and_hms_opt(1, 0, 0).unwrap())
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(yesterday["at"], want);
    // later today: today's, with a note on stderr (the data is the latest)
    let (j, stderr) = at("23:00", &zone);
    assert_eq!(j["at"], local(23));
    assert_eq!(j["campaigns"][1]["fields"]["name"], "Spring -20%");
    assert!(
        stderr.contains("note: --at \"23:00\" is ")
            && stderr.contains(", after now (")
            && stderr.contains("for yesterday's say \"yesterday 23:00\""),
        "{stderr}"
    );
}

/// Every time in an output (table and JSON, its own and the snapshots'
/// timestamps) is in --tz and to the second; --precise gives the stored
/// microseconds.
#[tokio::test(flavor = "multi_thread")]
async fn every_time_printed_in_one_zone_to_the_second() {
    let (t, _db) = captured_db().await;
    let c = t.client().await;
    c.batch_execute(
        "SET TimeZone = 'UTC';
         INSERT INTO public.campaigns (id, customer_id, name, priority) VALUES (1, 3, 'A', 1), (2, 3, 'B', 2);
         UPDATE public.campaigns SET name = 'A2', updated_at = clock_timestamp() WHERE id = 1;
         DELETE FROM public.campaigns WHERE id = 2;",
    )
    .await
    .unwrap();
    let time =
        regex::Regex::new(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)? ?(Z|[+-]\d\d:\d\d)").unwrap();
    let cases: [&[&str]; 6] = [
        &["--at", "now"],
        &["--at", "now", "--include-deleted", "--fields", "all"],
        &["--diff-from", "1h ago", "--at", "now"],
        &[
            "--diff-from",
            "1h ago",
            "--at",
            "now",
            "--fields",
            "name,updated_at",
        ],
        &["--timeline"],
        &["--timeline", "--fields", "all"],
    ];
    for args in cases {
        for (format, precise) in [
            ("table", false),
            ("json", false),
            ("table", true),
            ("json", true),
        ] {
            let out = run(t
                .cli()
                .args([
                    "--format",
                    format,
                    "history-at",
                    "--customer",
                    "3",
                    "--tz",
                    "Asia/Kolkata",
                ])
                .args(args)
                .args(precise.then_some("--precise")));
            assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
            let found: Vec<_> = time.captures_iter(&out.stdout).collect();
            assert!(found.len() >= 2, "{args:?} {format}: {}", out.stdout);
            for m in found {
                assert_eq!(&m[2], "+05:30", "{args:?} {format}: {}", &m[0]);
                let fraction = m.get(1).map(|f| f.as_str().len() - 1);
                assert_eq!(
                    fraction,
                    precise.then_some(6),
                    "{args:?} {format} precise {precise}: {}",
                    &m[0]
                );
            }
            // the snapshot's own timestamps are among them
            assert!(
                !out.stdout.contains("+00:00") && !out.stdout.contains("Z\""),
                "{}",
                out.stdout
            );
        }
    }
    // --precise prints the stored microseconds
    let (first, updated_at): (DateTime<Utc>, DateTime<Utc>) = {
        let r = c
            .query_one(
                "SELECT s.event_time, (s.snapshot->>'updated_at')::timestamptz
                   FROM inapp_campaigns.campaign_snapshots s ORDER BY id LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    let kolkata = chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
    let out = run(t.cli().args([
        "--format",
        "json",
        "history-at",
        "--customer",
        "3",
        "--tz",
        "Asia/Kolkata",
        "--timeline",
        "--fields",
        "all",
        "--precise",
    ]));
    let j = out.json();
    let micros = |t: DateTime<Utc>| {
        t.with_timezone(&kolkata)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    assert_eq!(j["changes"][0]["event_time"], micros(first));
    assert_eq!(
        j["changes"][0]["snapshot"]["updated_at"],
        micros(updated_at)
    );
}
