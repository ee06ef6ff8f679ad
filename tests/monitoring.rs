//! Operating from cron and monitoring: the run history, the JSON error
//! document of a failed run, `status` while a job holds locks, and the exit
//! codes of `status --check`.

mod common;

use common::*;
use serde_json::{json, Value};

/// Seeds a small demo CDP (events queued for stitching, nothing stitched).
async fn seeded(t: &TestDb, customers: u64) -> cdpctl::demo::GenSummary {
    let mut db = t.db().await;
    let s = db.schemas.clone();
    let opts = cdpctl::demo::GenOptions {
        customers,
        ..Default::default()
    };
    cdpctl::demo::load(&mut db.client, &s, &opts).await.unwrap()
}

/// The run history, oldest first: (job, outcome, error, finished, counts).
async fn job_runs(t: &TestDb) -> Vec<(String, String, Option<String>, bool, Value)> {
    t.client()
        .await
        .query(
            "SELECT job, outcome, error, finished_at IS NOT NULL, counts
               FROM cdpctl.job_runs ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

fn failing(out: &Output) -> Vec<String> {
    out.json()["failing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn job_runs_are_recorded_with_their_counts_and_checks_are_not() {
    let t = TestDb::new().await;
    let seeded = seeded(&t, 30).await;
    let dry = run(t.cli().args(["stitch", "--dry-run"]));
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(job_runs(&t).await.is_empty(), "a dry run is no job run");
    let out = run(t.cli().args(["--format", "json", "stitch"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let runs = job_runs(&t).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let (job, outcome, error, finished, counts) = &runs[0];
    assert_eq!((job.as_str(), outcome.as_str()), ("stitch", "succeeded"));
    assert_eq!(error, &None);
    assert!(finished);
    assert_eq!(counts["events"], json!(seeded.events), "{counts}");

    let status = run(t.cli().args(["--format", "json", "status"]));
    assert_eq!(status.code, 0, "{}", status.stderr);
    let j = status.json();
    let last = &j["jobs"]["runs"]["stitch"]["last_run"];
    assert_eq!(last["outcome"], json!("succeeded"), "{j}");
    assert!(last["duration_ms"].is_i64(), "{last}");
    assert!(last["age_seconds"].is_i64(), "{last}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(last["finished_at"].as_str().unwrap()).is_ok(),
        "{last}"
    );
    assert_eq!(j["jobs"]["runs"]["stitch"]["last_failure"], Value::Null);
    assert_eq!(j["stitching"]["backlog"], json!(0), "{j}");
    assert_eq!(j["events"]["customer_events"], json!(seeded.events));
    assert!(j["attributes"]["backlog"].as_i64().unwrap() > 0, "{j}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_prints_one_json_error_and_is_recorded() {
    let t = TestDb::new().await;
    t.client()
        .await
        .batch_execute("DROP TABLE cdp_attr.context CASCADE")
        .await
        .unwrap();
    let out = run(t.cli().args(["--format", "json", "calc-attrs"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let doc = out.json();
    assert_eq!(doc["kind"], json!("database"), "{doc}");
    assert_eq!(doc["exit_code"], json!(1));
    assert_eq!(doc["sqlstate"], json!("42P01"));
    let error = doc["error"].as_str().unwrap();
    assert!(error.contains("cdp_attr.context"), "{error}");
    assert_eq!(out.stdout.trim().lines().count(), 1, "{}", out.stdout);
    assert!(out.stderr.contains(error), "{}", out.stderr);

    // the start survived the job's rolled-back transaction; the end has the error
    let runs = job_runs(&t).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].0, "calc-attrs");
    assert_eq!(runs[0].1, "failed");
    assert_eq!(runs[0].2.as_deref(), Some(error));
    assert!(runs[0].3);

    let status = run(t.cli().args(["--format", "json", "status", "--check"]));
    assert_eq!(status.code, 1, "{}", status.stderr);
    assert_eq!(failing(&status), ["runs.calc-attrs"]);
    let f = &status.json()["jobs"]["runs"]["calc-attrs"]["last_failure"];
    assert_eq!(f["error"], json!(error), "{f}");
    assert!(
        status.stderr.contains("runs.calc-attrs: last run"),
        "{}",
        status.stderr
    );
    // one document: the report, no error document after it
    assert!(status.json()["checks"].is_array());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_config_prints_the_json_error_document() {
    let t = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(&dir, &json!({"monitoring": {"max_stich_backlog": 5}}));
    let out = run(t
        .cli()
        .arg("--config")
        .arg(&cfg)
        .args(["--format", "json", "stitch"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let doc = out.json();
    assert_eq!(doc["kind"], json!("error"), "{doc}");
    assert_eq!(doc["exit_code"], json!(1));
    assert!(
        doc["error"].as_str().unwrap().contains("max_stich_backlog"),
        "{doc}"
    );
    // usage errors found after parsing carry their own exit code
    let out = run(t
        .cli()
        .args(["--format", "json", "stitch", "--from-scratch"]));
    let doc = out.json();
    assert_eq!(doc["exit_code"], json!(out.code), "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_busy_items_while_a_job_holds_their_locks() {
    let t = TestDb::new().await;
    seeded(&t, 10).await;
    // what a from-scratch stitch holds until it commits (its TRUNCATE)
    let holder = t.client().await;
    holder
        .batch_execute(
            "BEGIN;
             LOCK TABLE cdp_ps.identifiers, cdp_ps.entities, cdp_attr.customer_entities
                 IN ACCESS EXCLUSIVE MODE",
        )
        .await
        .unwrap();
    let out = run(t.cli().args(["--format", "json", "status", "--check"]));
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, out.stdout);
    let j = out.json();
    assert_eq!(j["attributes"]["backlog"], json!("busy"), "{j}");
    assert_eq!(j["stitching"]["entities"], json!("busy"), "{j}");
    let busy = j["busy"].as_array().unwrap();
    assert!(busy.contains(&json!("attributes.backlog")), "{j}");
    // items whose tables are free are still read
    assert!(j["stitching"]["backlog"].as_i64().unwrap() > 0, "{j}");
    assert_eq!(j["healthy"], json!(true));

    let table = run(t.cli().args(["status"]));
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table.stdout.contains("locked by a running job"),
        "{}",
        table.stdout
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    let after = run(t.cli().args(["--format", "json", "status"]));
    assert_eq!(after.json()["busy"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_check_exit_codes() {
    let t = TestDb::new().await;
    seeded(&t, 20).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(&dir, &json!({"monitoring": {"max_stitch_backlog": 5}}));

    // healthy with the default thresholds
    let ok = run(t.cli().args(["--format", "json", "status", "--check"]));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.json()["healthy"], json!(true));
    assert_eq!(failing(&ok), Vec::<String>::new());

    // the stitching backlog over the configured threshold
    let over = run(t
        .cli()
        .arg("--config")
        .arg(&cfg)
        .args(["--format", "json", "status", "--check"]));
    assert_eq!(over.code, 1, "{}", over.stderr);
    assert_eq!(failing(&over), ["stitching.backlog"]);
    assert!(
        over.stderr.contains("stitching.backlog")
            && over.stderr.contains("monitoring.max_stitch_backlog = 5"),
        "{}",
        over.stderr
    );
    let table = run(t
        .cli()
        .arg("--config")
        .arg(&cfg)
        .args(["status", "--check"]));
    assert_eq!(table.code, 1);
    assert!(table.stdout.contains("FAILING"), "{}", table.stdout);

    // stitched: healthy again under the same threshold
    assert_eq!(run(t.cli().args(["stitch"])).code, 0);
    let ok = run(t
        .cli()
        .arg("--config")
        .arg(&cfg)
        .args(["status", "--check"]));
    assert_eq!(ok.code, 0, "{}\n{}", ok.stderr, ok.stdout);

    // a pending migration and one unknown to this binary
    t.client()
        .await
        .batch_execute(
            "DELETE FROM cdpctl.schema_migrations WHERE version = '130';
             INSERT INTO cdpctl.schema_migrations (version, name, checksum) VALUES ('999', 'future', 'x')",
        )
        .await
        .unwrap();
    let out = run(t.cli().args(["--format", "json", "status", "--check"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(failing(&out), ["migrations.pending", "migrations.unknown"]);
    assert_eq!(out.json()["migrations"]["pending"], json!(["130_job_runs"]));
    assert_eq!(out.json()["migrations"]["unknown"], json!(["999_future"]));
    assert!(out.stderr.contains("run `cdpctl init`"), "{}", out.stderr);

    // init refuses to work on a schema from a newer cdpctl, changing nothing
    let init = run(t.cli().args(["init"]));
    assert_eq!(init.code, 1, "{}", init.stdout);
    assert!(init.stderr.contains("999_future"), "{}", init.stderr);
    let n: i64 = t
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM cdpctl.schema_migrations WHERE version = '130'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "init applied a migration despite the unknown one");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_skipped_for_the_job_lock_is_kept_but_is_no_failure() {
    let t = TestDb::new().await;
    let holder = t.app().connect("stitch").await.unwrap();
    holder.lock_job("stitch").await.unwrap();
    let out = run(t.cli().args(["--format", "json", "stitch"]));
    assert_eq!(out.code, 3, "{}", out.stderr);
    let doc = out.json();
    assert_eq!(doc["kind"], json!("lock_held"), "{doc}");
    assert_eq!(doc["exit_code"], json!(3));
    let runs = job_runs(&t).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (runs[0].0.as_str(), runs[0].1.as_str()),
        ("stitch", "failed")
    );
    let status = run(t.cli().args(["--format", "json", "status", "--check"]));
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(status.json()["jobs"]["runs"], json!({}));
}
