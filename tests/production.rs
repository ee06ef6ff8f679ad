//! go-production / rollback on a database set up like the seed's (legacy
//! view, legacy table, views depending on them): exact round trips, lock
//! timeouts, refusals, the non-TTY rule, dry runs and the pivot sync.

mod common;

use common::*;
use serde_json::json;

const E1: &str = "00000000-0000-0000-0000-0000000000e1";

/// The legacy CDP as the stitching component's users have it: a
/// `customer_events` view over a legacy table, a `pivoted_customer_attributes`
/// table, views built on both (one of them on another view), grants and
/// comments; and cdpctl's tables filled as after stitching and calc-attrs.
fn legacy_sql(cdp: &str) -> String {
    let sql = r#"
DO $$ BEGIN CREATE ROLE cdpctl_test_reader; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
CREATE SCHEMA IF NOT EXISTS {cdp};
CREATE TABLE {cdp}.legacy_events (id uuid PRIMARY KEY, customer_entity_id uuid, source_id text, type text,
    version text, event_time timestamptz, payload jsonb);
INSERT INTO {cdp}.legacy_events VALUES
    ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000a1', 'web', 'page_view', '1-0-0',
     '2024-01-01 10:00+00', '{"url": "/"}');
CREATE VIEW {cdp}.customer_events AS
    SELECT id, customer_entity_id, source_id, type, version, event_time, payload FROM {cdp}.legacy_events;
CREATE TABLE {cdp}.pivoted_customer_attributes (customer_entity_id uuid PRIMARY KEY, email text, city text);
INSERT INTO {cdp}.pivoted_customer_attributes VALUES
    ('00000000-0000-0000-0000-0000000000a1', 'old@example.com', 'Prague'),
    ('00000000-0000-0000-0000-0000000000a2', NULL, 'Brno');
CREATE VIEW {cdp}.pivoted_customer_attributes_view AS
    SELECT p.customer_entity_id, p.email, upper(p.city) AS city
      FROM {cdp}.pivoted_customer_attributes p WHERE p.email IS NOT NULL;
COMMENT ON VIEW {cdp}.pivoted_customer_attributes_view IS 'used by the dashboard';
COMMENT ON COLUMN {cdp}.pivoted_customer_attributes_view.city IS 'upper case';
CREATE FUNCTION {cdp}.pcav_insert() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN RETURN NEW; END $f$;
CREATE TRIGGER pcav_insert INSTEAD OF INSERT ON {cdp}.pivoted_customer_attributes_view
    FOR EACH ROW EXECUTE FUNCTION {cdp}.pcav_insert();
GRANT SELECT ON {cdp}.pivoted_customer_attributes, {cdp}.customer_events, {cdp}.pivoted_customer_attributes_view
    TO cdpctl_test_reader;
CREATE VIEW {cdp}.recent_customer_events WITH (security_barrier) AS
    SELECT e.id, e.customer_entity_id FROM {cdp}.customer_events e WHERE e.event_time > '2020-01-01';
CREATE VIEW {cdp}.emails_per_city AS
    SELECT city, count(*) AS n FROM {cdp}.pivoted_customer_attributes_view GROUP BY city;

CREATE TABLE IF NOT EXISTS cdp_ps.customer_events_to_process (event_id uuid);
INSERT INTO cdp_ce.customer_events VALUES
    ('00000000-0000-0000-0000-000000000001', 'web', 'page_view', '1-0-0', '2024-01-01 10:00+00', '{"url": "/"}'),
    ('00000000-0000-0000-0000-000000000002', 'web', 'page_view', '1-0-0', '2024-01-02 10:00+00', '{"url": "/x"}');
INSERT INTO cdp_ps.event_entities VALUES
    ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000e1');
-- the events above count as stitched: nothing waits in the queue
DELETE FROM cdp_ps.customer_events_to_process;
INSERT INTO cdp_attr.attributes VALUES
    ('email', '{"type": "last", "value": "payload->>''email''"}'),
    ('city', '{"type": "last", "value": "payload->>''city''"}'),
    ('interests', '{"type": "list", "value": "payload->>''interest''"}');
INSERT INTO cdp_attr.customer_entities (id, calculated) VALUES
    ('00000000-0000-0000-0000-0000000000e1', now()), ('00000000-0000-0000-0000-0000000000e2', now());
INSERT INTO cdp_attr.customer_attributes (customer_entity_id, attribute_id, value) VALUES
    ('00000000-0000-0000-0000-0000000000e1', 'email', 'new@example.com'),
    ('00000000-0000-0000-0000-0000000000e1', 'city', 'Brno'),
    ('00000000-0000-0000-0000-0000000000e1', 'interests', 'shoes'),
    ('00000000-0000-0000-0000-0000000000e1', 'interests', 'bikes');
"#;
    sql.replace("{cdp}", cdp)
}

async fn seed_legacy(t: &TestDb) -> tokio_postgres::Client {
    let c = t.client().await;
    c.batch_execute(&legacy_sql("public")).await.unwrap();
    c
}

/// Everything a rollback must restore: every relation of the schema with its
/// kind, definition, options, owner, privileges and comment, and the rows of
/// the legacy table and view.
async fn snapshot(c: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    let mut out: Vec<String> = c
        .query(
            "SELECT concat_ws(' | ', c.relname, c.relkind::text, pg_get_viewdef(c.oid), c.reloptions::text,
                              pg_get_userbyid(c.relowner), c.relacl::text, obj_description(c.oid, 'pg_class'))
               FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) AND c.relkind IN ('r', 'v', 'm')
              ORDER BY c.relname",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let extra = c
        .query(
            "SELECT 'trigger: ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
              WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) AND NOT t.tgisinternal
             UNION ALL
             SELECT 'column comment: ' || c.relname || '.' || a.attname || ' ' || d.description
               FROM pg_description d JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
              WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) AND d.objsubid > 0
             ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap();
    out.extend(extra.iter().map(|r| r.get::<_, String>(0)));
    for rel in [
        "pivoted_customer_attributes",
        "customer_events",
        "pivoted_customer_attributes_view",
    ] {
        let rows = c
            .query(
                &format!(
                    "SELECT row_to_json(x)::text FROM \"{schema}\".{rel} x ORDER BY row_to_json(x)::text"
                ),
                &[],
            )
            .await
            .unwrap();
        out.extend(
            rows.iter()
                .map(|r| format!("{rel}: {}", r.get::<_, String>(0))),
        );
    }
    out
}

fn go(t: &TestDb, extra: &[&str]) -> Output {
    run(t.cli().args(["--yes", "go-production"]).args(extra))
}

fn rollback(t: &TestDb) -> Output {
    run(t.cli().args(["--yes", "rollback"]))
}

async fn viewdef(c: &tokio_postgres::Client, rel: &str) -> String {
    c.query_one("SELECT pg_get_viewdef($1::text::regclass)", &[&rel])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn go_production_rollback_go_production_restores_everything_exactly() {
    let t = TestDb::new().await;
    let c = seed_legacy(&t).await;
    let before = snapshot(&c, "public").await;
    // the snapshot sees what a careless rollback would lose
    for needle in [
        "pivoted_customer_attributes_view | v |  SELECT p.customer_entity_id,",
        "recent_customer_events | v |  SELECT e.id,",
        "{security_barrier=true}",
        "cdpctl_test_reader=r/postgres",
        "used by the dashboard",
        "trigger: CREATE TRIGGER pcav_insert INSTEAD OF INSERT ON public.pivoted_customer_attributes_view",
        "column comment: pivoted_customer_attributes_view.city upper case",
        "pivoted_customer_attributes: {\"customer_entity_id\":\"00000000-0000-0000-0000-0000000000a1\",\"email\":\"old@example.com\",\"city\":\"Prague\"}",
    ] {
        assert!(
            before.iter().any(|l| l.contains(needle)),
            "{needle:?} not in {before:#?}"
        );
    }
    let dependent_before = viewdef(&c, "public.pivoted_customer_attributes_view").await;

    let out = go(&t, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("switched schema \"public\" to production"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("undo with `cdpctl rollback`"),
        "{}",
        out.stdout
    );

    // the new objects read cdpctl's tables
    let rows = c
        .query(
            "SELECT customer_entity_id::text, email, city, interests FROM public.pivoted_customer_attributes ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "one row per customer entity");
    assert_eq!(rows[0].get::<_, String>(0), E1);
    assert_eq!(
        rows[0].get::<_, Option<String>>(1).as_deref(),
        Some("new@example.com")
    );
    assert_eq!(
        rows[0].get::<_, Option<Vec<String>>>(3),
        Some(vec!["bikes".to_string(), "shoes".to_string()]),
        "list attributes are sorted text[]"
    );
    assert_eq!(rows[1].get::<_, Option<String>>(1), None);
    let ev: Vec<(String, Option<String>)> = c
        .query(
            "SELECT id::text, customer_entity_id::text FROM public.customer_events ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(ev.len(), 2, "unstitched events stay visible");
    assert_eq!(ev[0].1.as_deref(), Some(E1));
    assert_eq!(ev[1].1, None);
    // the dependent views follow, with the same definition text
    let dep: Vec<(String, String)> = c
        .query(
            "SELECT email, city FROM public.pivoted_customer_attributes_view",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        dep,
        vec![("new@example.com".to_string(), "BRNO".to_string())]
    );
    assert_eq!(
        viewdef(&c, "public.pivoted_customer_attributes_view").await,
        dependent_before
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM public.emails_per_city", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // readers of the legacy objects can read the new views
    let granted: bool = c
        .query_one(
            "SELECT has_table_privilege('cdpctl_test_reader', 'public.pivoted_customer_attributes', 'SELECT')
                AND has_table_privilege('cdpctl_test_reader', 'public.customer_events', 'SELECT')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(granted);
    // backups keep the legacy data
    let old: String = c
        .query_one(
            "SELECT email FROM public.pivoted_customer_attributes_backup WHERE email IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(old, "old@example.com");

    // the switch is recorded and status shows it
    let rec = c
        .query_one(
            "SELECT action, db_user, os_user IS NOT NULL, details FROM cdpctl.production_switches ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rec.get::<_, String>(0), "go-production");
    assert_eq!(rec.get::<_, String>(1), "postgres");
    assert!(rec.get::<_, bool>(2));
    let details: serde_json::Value = rec.get(3);
    assert_eq!(
        details["saved_views"],
        json!([
            "public.pivoted_customer_attributes_view",
            "public.recent_customer_events",
            "public.emails_per_city"
        ])
    );
    let saved: i64 = c
        .query_one("SELECT count(*) FROM cdpctl.production_saved_views", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(saved, 3);
    let st = run(t.cli().args(["--format", "json", "status"]));
    assert_eq!(st.code, 0, "{}", st.stderr);
    let j = st.json();
    let state = j["details"]["production"]["state"].as_str().unwrap();
    assert!(state.starts_with("production since "), "{state}");
    assert!(state.contains("switch #1 by postgres"), "{state}");
    assert_eq!(
        j["details"]["production"]["public.pivoted_customer_attributes"],
        json!("3 attribute column(s), in step")
    );

    let out = rollback(&t);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("rolled schema \"public\" back to the legacy objects"),
        "{}",
        out.stdout
    );
    assert_eq!(
        snapshot(&c, "public").await,
        before,
        "rollback restores every object exactly"
    );
    let st = run(t.cli().args(["--format", "json", "status"])).json();
    let state = st["details"]["production"]["state"].as_str().unwrap();
    assert!(state.starts_with("legacy (rolled back "), "{state}");
    assert_eq!(st["details"]["production"]["backups"], json!("none"));

    // and once more, both ways
    let out = go(&t, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        viewdef(&c, "public.pivoted_customer_attributes_view").await,
        dependent_before
    );
    let out = rollback(&t);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(snapshot(&c, "public").await, before);
    let actions: Vec<String> = c
        .query(
            "SELECT action FROM cdpctl.production_switches ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        actions,
        ["go-production", "rollback", "go-production", "rollback"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_schema_names_round_trip() {
    let t = TestDb::new().await;
    let c = t.client().await;
    c.batch_execute(&legacy_sql("\"Legacy Cdp\""))
        .await
        .unwrap();
    let before = snapshot(&c, "Legacy Cdp").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &json!({"postgresql": pg_block(&t.url), "cdp_schema": "Legacy Cdp"}),
    );
    let out = run(cli()
        .arg("--config")
        .arg(&cfg)
        .args(["--yes", "go-production"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM \"Legacy Cdp\".pivoted_customer_attributes",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let out = run(cli().arg("--config").arg(&cfg).args(["--yes", "rollback"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(snapshot(&c, "Legacy Cdp").await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_lock_makes_the_switch_fail_within_the_timeout_and_change_nothing() {
    let t = TestDb::new().await;
    let c = seed_legacy(&t).await;
    let before = snapshot(&c, "public").await;
    // a long-running reader of the legacy view, inside an open transaction
    let holder = t.client().await;
    holder
        .batch_execute("SET application_name = 'dashboard'; BEGIN; SELECT count(*) FROM public.customer_events")
        .await
        .unwrap();
    let out = go(&t, &["--lock-timeout", "300ms"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let err = out.stderr.trim();
    assert!(
        err.contains(
            "go-production failed: could not lock \"public\".\"customer_events\" within the lock timeout of 300ms: held by pid "
        ),
        "{err}"
    );
    assert!(
        err.contains("(\"dashboard\", idle in transaction for "),
        "{err}"
    );
    assert!(
        err.contains("nothing was changed. Wait for that session to finish or stop it, then retry (or raise --lock-timeout)"),
        "{err}"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(snapshot(&c, "public").await, before, "no partial change");
    let n: i64 = c
        .query_one("SELECT count(*) FROM cdpctl.production_switches", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a failed switch is not recorded");

    // the same for the way back
    let out = go(&t, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let after_switch = snapshot(&c, "public").await;
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM public.pivoted_customer_attributes")
        .await
        .unwrap();
    let out = run(t
        .cli()
        .args(["--yes", "rollback", "--lock-timeout", "200ms"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("rollback failed: could not lock \"public\".\"pivoted_customer_attributes\" within the lock timeout of 200ms"),
        "{}",
        out.stderr
    );
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(snapshot(&c, "public").await, after_switch);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_terminal_both_refuse_unless_yes() {
    let t = TestDb::new().await;
    let c = seed_legacy(&t).await;
    let before = snapshot(&c, "public").await;
    let out = run(t.cli().args(["go-production"]));
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        format!("error: database 127.0.0.1/{}: switch schema \"public\" to production (11 step(s) in one transaction)? — refusing without confirmation: no terminal to ask on; pass --yes to proceed", t.name)
    );
    assert!(
        out.stdout
            .contains("plan (one transaction, lock timeout 5000ms):"),
        "{}",
        out.stdout
    );
    assert_eq!(snapshot(&c, "public").await, before);

    let out = go(&t, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let switched = snapshot(&c, "public").await;
    let out = run(t.cli().args(["rollback"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(&format!("error: database 127.0.0.1/{}: roll schema \"public\" back to the legacy objects (10 step(s) in one transaction)? — refusing without confirmation: no terminal to ask on; pass --yes to proceed", t.name)),
        "{}",
        out.stderr
    );
    assert_eq!(snapshot(&c, "public").await, switched);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_plan_and_sql_and_changes_nothing() {
    let t = TestDb::new().await;
    let c = seed_legacy(&t).await;
    let before = snapshot(&c, "public").await;
    let out = run(t
        .cli()
        .args(["go-production", "--dry-run", "--lock-timeout", "2s"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    for needle in [
        "plan (one transaction, lock timeout 2000ms):",
        "  1. drop the dependent view public.emails_per_city (definition saved)",
        "keep the legacy table public.pivoted_customer_attributes as pivoted_customer_attributes_backup",
        "-- dry run: nothing was changed",
        "SET LOCAL lock_timeout = '2000ms';",
        "ALTER TABLE \"public\".\"pivoted_customer_attributes\" RENAME TO \"pivoted_customer_attributes_backup\";",
        "ALTER VIEW \"public\".\"customer_events\" RENAME TO \"customer_events_backup\";",
        "LEFT JOIN \"cdp_ps\".event_entities ee ON ee.event_id = e.id",
        "array_agg(value ORDER BY value) FILTER (WHERE attribute_id = 'interests') AS \"interests\"",
        "COMMENT ON VIEW \"public\".\"pivoted_customer_attributes_view\" IS 'used by the dashboard'",
        "COMMIT;",
    ] {
        assert!(out.stdout.contains(needle), "missing {needle:?} in\n{}", out.stdout);
    }
    let j = run(t
        .cli()
        .args(["--format", "json", "go-production", "--dry-run"]))
    .json();
    assert_eq!(j["dry_run"], json!(true));
    assert_eq!(j["steps"].as_array().unwrap().len(), 11);
    assert!(j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == json!(true)));
    assert_eq!(snapshot(&c, "public").await, before);

    let out = go(&t, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let switched = snapshot(&c, "public").await;
    let out = run(t.cli().args(["rollback", "--dry-run"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("DROP VIEW \"public\".\"customer_events\";"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("ALTER TABLE \"public\".\"pivoted_customer_attributes_backup\" RENAME TO \"pivoted_customer_attributes\";"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "recreate the view public.pivoted_customer_attributes_view from its saved definition"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(snapshot(&c, "public").await, switched);
}

#[tokio::test(flavor = "multi_thread")]
async fn go_production_refuses_in_the_wrong_state() {
    let t = TestDb::new().await;
    // nothing to replace
    let out = go(&t, &["--check"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("legacy objects: public.customer_events does not exist (go-production replaces the legacy customer_events and keeps it as customer_events_backup; check cdp_schema in the config)"),
        "{}",
        out.stderr
    );
    let c = seed_legacy(&t).await;
    let out = go(&t, &["--check"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("no backups left over"),
        "{}",
        out.stdout
    );

    // a backup in the way
    c.batch_execute("CREATE TABLE public.customer_events_backup (id int)")
        .await
        .unwrap();
    let out = go(&t, &[]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("error: go-production refused, nothing was changed: 1 check(s) failed: "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("no backups left over: public.customer_events_backup (table) already exist(s), left over from an earlier switch; inspect it, then drop or rename it before switching"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("FAILED"),
        "the checks are shown: {}",
        out.stdout
    );
    c.batch_execute("DROP TABLE public.customer_events_backup")
        .await
        .unwrap();

    // backlogs
    c.batch_execute(&format!(
        "UPDATE cdp_attr.customer_entities SET calculated = NULL WHERE id = '{E1}';
         DROP TABLE cdp_ps.customer_events_to_process"
    ))
    .await
    .unwrap();
    let out = go(&t, &[]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("2 check(s) failed"), "{}", out.stderr);
    assert!(
        out.stderr.contains("stitching done: stitching has never run (cdp_ps.customer_events_to_process does not exist); run `cdpctl stitch` first, or pass --allow-backlog"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("attributes calculated: 1 of 2 customer entities wait for calculation (cdp_attr.customer_entities.calculated IS NULL); run `cdpctl calc-attrs`, or pass --allow-backlog"),
        "{}",
        out.stderr
    );
    let out = go(&t, &["--check", "--allow-backlog"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("(allowed by --allow-backlog)"),
        "{}",
        out.stdout
    );
    c.batch_execute(&format!(
        "UPDATE cdp_attr.customer_entities SET calculated = now() WHERE id = '{E1}';
         CREATE TABLE cdp_ps.customer_events_to_process (event_id uuid);
         INSERT INTO cdp_ps.customer_events_to_process VALUES ('00000000-0000-0000-0000-000000000002')"
    ))
    .await
    .unwrap();
    let out = go(&t, &["--check"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("stitching done: 1 event(s) wait for stitching in cdp_ps.customer_events_to_process; run `cdpctl stitch`, or pass --allow-backlog"),
        "{}",
        out.stderr
    );
    c.batch_execute("TRUNCATE cdp_ps.customer_events_to_process")
        .await
        .unwrap();

    // the legacy processing is still running
    let legacy = t.client().await;
    legacy
        .batch_execute("SET application_name = 'Meiro CPS'")
        .await
        .unwrap();
    let out = go(&t, &["--check"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("no other jobs running: a job is running: \"Meiro CPS\" (pid "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("stop the processing"), "{}", out.stderr);
    // the list of legacy application names is configurable
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &json!({"postgresql": pg_block(&t.url),
                "production_switch": {"legacy_application_names": ["Old Stitcher"]}}),
    );
    let out = run(cli()
        .arg("--config")
        .arg(&cfg)
        .args(["go-production", "--check"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    drop(legacy);

    // an attribute id that cannot be a column
    c.batch_execute(&format!(
        "INSERT INTO cdp_attr.attributes VALUES ('{}', '{{}}')",
        "x".repeat(70)
    ))
    .await
    .unwrap();
    let out = go(&t, &["--check"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("is longer than 63 bytes"),
        "{}",
        out.stderr
    );
    c.batch_execute("DELETE FROM cdp_attr.attributes WHERE length(id) > 63")
        .await
        .unwrap();

    // already in production
    let out = go(&t, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = go(&t, &[]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("legacy objects: already in production since "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("(switch #1 by postgres")
            && out.stderr.contains("public.customer_events and public.pivoted_customer_attributes are the views cdpctl created; to go back run `cdpctl rollback`"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dependent_view_that_does_not_fit_the_new_objects_stops_the_switch() {
    let t = TestDb::new().await;
    let c = seed_legacy(&t).await;
    c.batch_execute(
        "ALTER TABLE public.pivoted_customer_attributes ADD COLUMN legacy_score int;
         CREATE VIEW public.scores AS SELECT customer_entity_id, legacy_score FROM public.pivoted_customer_attributes",
    )
    .await
    .unwrap();
    let before = snapshot(&c, "public").await;
    let out = go(&t, &[]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("go-production failed while it was going to recreate the view public.scores on the new objects (nothing was changed): column pivoted_customer_attributes.legacy_score does not exist"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
    assert_eq!(snapshot(&c, "public").await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_refuses_in_the_wrong_state() {
    let t = TestDb::new().await;
    let c = seed_legacy(&t).await;
    let out = rollback(&t);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "error: rollback refused, nothing was changed: 1 check(s) failed: in production: nothing to roll back: public.customer_events (view) and public.pivoted_customer_attributes (table) are not views created by cdpctl go-production (this database is not switched)"
    );
    let out = go(&t, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // a view built on the new objects after the switch
    c.batch_execute("CREATE VIEW public.new_report AS SELECT customer_entity_id FROM public.pivoted_customer_attributes")
        .await
        .unwrap();
    let out = rollback(&t);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("views on the new objects: public.new_report was created on the new views after go-production and cannot be restored on the legacy objects; save their definitions and drop them first"),
        "{}",
        out.stderr
    );
    c.batch_execute("DROP VIEW public.new_report")
        .await
        .unwrap();

    // a backup gone
    c.batch_execute(
        "ALTER TABLE public.pivoted_customer_attributes_backup RENAME TO pca_elsewhere",
    )
    .await
    .unwrap();
    let out = rollback(&t);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("backups present: public.pivoted_customer_attributes_backup missing: the legacy object(s) to restore are gone"),
        "{}",
        out.stderr
    );
    c.batch_execute(
        "ALTER TABLE public.pca_elsewhere RENAME TO pivoted_customer_attributes_backup",
    )
    .await
    .unwrap();
    let out = rollback(&t);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_pivot_keeps_one_column_per_attribute() {
    let t = TestDb::new().await;
    let c = seed_legacy(&t).await;
    let db = t.db().await;
    // not in production: nothing to do
    assert!(!cdpctl::production::sync_pivot(&db).await.unwrap());
    drop(db); // an open cdpctl session counts as a running job
    let out = go(&t, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let db = t.db().await;
    assert!(
        !cdpctl::production::sync_pivot(&db).await.unwrap(),
        "already in step"
    );
    let dependent = viewdef(&c, "public.pivoted_customer_attributes_view").await;

    c.batch_execute(&format!(
        "INSERT INTO cdp_attr.attributes VALUES ('age', '{{\"type\": \"max\"}}'), ('tags', '{{\"type\": \"list\"}}');
         INSERT INTO cdp_attr.customer_attributes (customer_entity_id, attribute_id, value)
         VALUES ('{E1}', 'age', '42'), ('{E1}', 'tags', 'b'), ('{E1}', 'tags', 'a')"
    ))
    .await
    .unwrap();
    let st = run(t.cli().args(["--format", "json", "status"])).json();
    assert!(
        st["details"]["production"]["public.pivoted_customer_attributes"]
            .as_str()
            .unwrap()
            .starts_with("3 column(s) for 5 attribute(s): out of step"),
        "{st}"
    );
    assert!(cdpctl::production::sync_pivot(&db).await.unwrap());
    let row = c
        .query_one(
            &format!("SELECT age, tags FROM public.pivoted_customer_attributes WHERE customer_entity_id = '{E1}'"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("42"));
    assert_eq!(
        row.get::<_, Option<Vec<String>>>(1),
        Some(vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(
        viewdef(&c, "public.pivoted_customer_attributes_view").await,
        dependent,
        "views built on the pivot are recreated"
    );
    let still_ours: bool = c
        .query_one(
            "SELECT obj_description('public.pivoted_customer_attributes'::regclass, 'pg_class') LIKE 'cdpctl go-production%'
                AND has_table_privilege('cdpctl_test_reader', 'public.pivoted_customer_attributes', 'SELECT')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(still_ours);
    assert!(!cdpctl::production::sync_pivot(&db).await.unwrap());

    // removing an attribute a dependent view uses fails and changes nothing
    c.batch_execute("DELETE FROM cdp_attr.attributes WHERE id = 'city'")
        .await
        .unwrap();
    let err = cdpctl::production::sync_pivot(&db).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("recreate the view public.pivoted_customer_attributes_view")
            && msg.contains("column p.city does not exist"),
        "{msg}"
    );
    let cols: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.pivoted_customer_attributes'::regclass AND attnum > 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cols, 6, "unchanged: the key and five attribute columns");

    // the command-line way; the rollback still restores the legacy objects
    c.batch_execute(
        "DROP VIEW public.emails_per_city; DROP VIEW public.pivoted_customer_attributes_view",
    )
    .await
    .unwrap();
    let out = run(t.cli().args(["go-production", "--sync-pivot"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("recreated with one column per attribute"),
        "{}",
        out.stdout
    );
    let out = rollback(&t);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        viewdef(&c, "public.pivoted_customer_attributes_view").await,
        dependent
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_pivot_retries_a_held_lock_then_fails_clearly() {
    let t = TestDb::new().await;
    let c = seed_legacy(&t).await;
    let out = go(&t, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    c.batch_execute("INSERT INTO cdp_attr.attributes VALUES ('age', '{}')")
        .await
        .unwrap();
    let holder = t.client().await;
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM public.pivoted_customer_attributes")
        .await
        .unwrap();
    let mut cfg = cdpctl::config::Config::default();
    cfg.session.lock_retries = 1;
    cfg.production_switch = json!({"lock_timeout_ms": 100}).as_object().unwrap().clone();
    let db = t.app_with(cfg).connect("calc-attrs").await.unwrap();
    let err = cdpctl::production::sync_pivot(&db).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("could not get a lock within lock_timeout after 2 attempts"),
        "{msg}"
    );
    assert!(
        msg.contains("sync-pivot failed: could not lock \"public\".\"pivoted_customer_attributes\" within the lock timeout of 100ms: held by pid "),
        "{msg}"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    assert!(cdpctl::production::sync_pivot(&db).await.unwrap());
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.pivoted_customer_attributes'::regclass AND attname = 'age'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// The run's own evaluation session is not "another job" (the demo switches
/// after calculating, with that session open); another run's is.
#[tokio::test(flavor = "multi_thread")]
async fn the_jobs_check_ignores_the_runs_own_evaluation_session() {
    let t = TestDb::new().await;
    let app = t.app();
    let settings =
        cdpctl::production::sql::Settings::from_config(&app.config.production_switch).unwrap();
    let opts = cdpctl::production::GoOptions {
        allow_backlog: true,
    };
    let jobs = |checks: Vec<cdpctl::production::Check>| {
        checks
            .into_iter()
            .find(|c| c.check == "no other jobs running")
            .unwrap()
    };
    let db = app.connect("demo").await.unwrap();
    db.eval().await.unwrap();
    let own = jobs(
        cdpctl::production::go_checks(&db, &settings, &opts)
            .await
            .unwrap(),
    );
    assert!(own.ok, "{}", own.detail);
    let other = app.connect("calc-attrs").await.unwrap();
    other.eval().await.unwrap();
    let theirs = jobs(
        cdpctl::production::go_checks(&db, &settings, &opts)
            .await
            .unwrap(),
    );
    assert!(!theirs.ok);
    assert!(
        theirs.detail.contains("\"cdpctl calc-attrs\"")
            && theirs.detail.contains("\"cdpctl calc-attrs (eval)\""),
        "{}",
        theirs.detail
    );
    assert!(!theirs.detail.contains("cdpctl demo"), "{}", theirs.detail);
}
