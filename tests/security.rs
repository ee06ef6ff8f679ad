//! Configured SQL can never write, read server files, run programs, create
//! large objects or release cdpctl's locks, whatever it says: every payload
//! of the probe is run through every place configured SQL is accepted
//! (attribute value expressions, filters, outer filters, custom queries,
//! context queries, stitching value expressions, group predicates, and the
//! `--check` modes), by a cdpctl whose login role is a superuser (the tests'
//! `postgres`). The database refuses each one: configured SQL runs as the
//! unprivileged role cdpctl_eval. Plus: the job lock holds while configured
//! SQL runs, `--from-scratch` keeps the old values when it fails or is
//! killed, SIGTERM cancels the running statement server-side, and the
//! statement timeout fires with a clear message.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

struct Fixture {
    t: TestDb,
    c: tokio_postgres::Client,
    _dir: tempfile::TempDir,
    config: PathBuf,
    dblink: bool,
    /// A cdp.events id with events, for the stitching rule.
    event_id: String,
}

impl Fixture {
    /// Where `lo_export` and `COPY ... TO PROGRAM` would write, on the
    /// server's machine (this one).
    fn server_file(&self, what: &str) -> String {
        format!("/tmp/cdpctl_sec_{}_{what}", self.t.name)
    }

    fn cli(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.t.cli();
        c.args(args).arg("--config").arg(&self.config);
        c
    }
}

/// A small stitched CDP with no attribute, context key or group, a canary
/// table, functions that write or run programs (one SECURITY DEFINER,
/// owned by the superuser, not executable by PUBLIC: operators must never
/// grant it to cdpctl_eval) and one large object.
async fn fixture(timeout_ms: u64) -> Fixture {
    fixture_with(timeout_ms, 30_000).await
}

async fn fixture_with(timeout_ms: u64, lock_timeout_ms: u64) -> Fixture {
    let t = TestDb::new().await;
    let mut c = t.client().await;
    let schemas = t.db().await.schemas.clone();
    cdpctl::demo::load(
        &mut c,
        &schemas,
        &cdpctl::demo::GenOptions {
            customers: 6,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let out = run(t.cli().args(["stitch"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let prog = format!("/tmp/cdpctl_sec_{}_prog", t.name);
    c.batch_execute(&format!(
        "DELETE FROM cdp_attr.attributes; DELETE FROM cdp_attr.context; DELETE FROM audience_data.groups;
         CREATE TABLE public.canary (x int); INSERT INTO public.canary VALUES (1);
         CREATE FUNCTION public.sec_copy_from_program() RETURNS text LANGUAGE plpgsql AS
           $$ BEGIN COPY public.canary FROM PROGRAM 'echo 66'; RETURN 'x'; END $$;
         CREATE FUNCTION public.sec_copy_to_program() RETURNS text LANGUAGE plpgsql AS
           $$ BEGIN COPY (SELECT 1) TO PROGRAM 'touch {prog}'; RETURN 'x'; END $$;
         CREATE FUNCTION public.sec_definer() RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS
           $$ BEGIN DELETE FROM public.canary; RETURN 'x'; END $$;
         REVOKE EXECUTE ON FUNCTION public.sec_definer() FROM PUBLIC;
         SELECT lo_from_bytea(0, 'kept');"
    ))
    .await
    .unwrap();
    let dblink = c
        .batch_execute("CREATE EXTENSION IF NOT EXISTS dblink")
        .await
        .is_ok();
    if !dblink {
        eprintln!("dblink is not available on this server: its payload is skipped");
    }
    let event_id: String = c
        .query_one(
            "SELECT ev.id FROM public.events ev
              WHERE EXISTS (SELECT 1 FROM cdp_ce.customer_events e
                             WHERE (e.source_id, e.type, e.version) = (ev.source_id, ev.type, ev.version))
              ORDER BY ev.id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &dir,
        &json!({"session": {"configured_sql_timeout_ms": timeout_ms, "lock_timeout_ms": lock_timeout_ms}}),
    );
    Fixture {
        t,
        c,
        _dir: dir,
        config,
        dblink,
        event_id,
    }
}

/// One hostile (or careless) piece of configured SQL, as an expression and
/// as a query returning `value`.
struct Payload {
    name: &'static str,
    expr: String,
    query: String,
    /// Also expected in the error.
    says: Option<&'static str>,
}

fn payloads(fx: &Fixture) -> Vec<Payload> {
    let p = |name, expr: &str, query: &str| Payload {
        name,
        expr: expr.to_string(),
        query: query.to_string(),
        says: None,
    };
    let same = |name, expr: &str| Payload {
        name,
        expr: expr.to_string(),
        query: format!("SELECT ({expr})::text AS value"),
        says: None,
    };
    let main = "FROM pg_stat_activity WHERE datname = current_database()
                 AND application_name LIKE 'cdpctl %' AND application_name NOT LIKE '%(eval)'";
    let mut v = vec![
        p(
            "escape the wrapper and commit",
            "'x') AS v; COMMIT; DELETE FROM public.canary; SELECT ('x'",
            "SELECT 1) AS q; COMMIT; DELETE FROM public.canary; SELECT (1",
        ),
        p(
            "COPY FROM PROGRAM",
            "'x'); COPY public.canary FROM PROGRAM 'echo 66'; SELECT ('x'",
            "COPY public.canary FROM PROGRAM 'echo 66'",
        ),
        same("COPY FROM PROGRAM in a function", "public.sec_copy_from_program()"),
        same("COPY TO PROGRAM in a function", "public.sec_copy_to_program()"),
        same("SECURITY DEFINER function of a superuser", "public.sec_definer()"),
        same("lo_import", "lo_import('/etc/passwd')::text"),
        same(
            "lo_export",
            &format!(
                "lo_export((SELECT min(oid) FROM pg_largeobject_metadata), '{}')::text",
                fx.server_file("lo")
            ),
        ),
        same("pg_read_file", "pg_read_file('/etc/passwd')"),
        same("set_config role", "set_config('role', 'postgres', false)"),
        same(
            "set_config session_authorization",
            "set_config('session_authorization', 'postgres', false)",
        ),
        same(
            "pg_terminate_backend of the main session",
            &format!("(SELECT string_agg(pg_terminate_backend(pid)::text, ',') {main})"),
        ),
        same(
            "pg_cancel_backend of the main session",
            &format!("(SELECT string_agg(pg_cancel_backend(pid)::text, ',') {main})"),
        ),
        p(
            "writable CTE",
            "(WITH d AS (DELETE FROM public.canary RETURNING 1) SELECT count(*) FROM d)::text",
            "WITH d AS (DELETE FROM public.canary RETURNING 1) SELECT count(*)::text AS value FROM d",
        ),
        p(
            "a second statement after ;",
            "'x'; DELETE FROM public.canary; SELECT 'y'",
            "SELECT 'x' AS value; DELETE FROM public.canary",
        ),
        Payload {
            says: Some("configured_sql_timeout_ms"),
            ..same("pg_sleep beyond the timeout", "pg_sleep(30)::text")
        },
    ];
    if fx.dblink {
        v.push(same(
            "dblink_exec as the superuser",
            "dblink_exec('host=127.0.0.1 port=' || inet_server_port() || ' dbname=' || current_database()
                         || ' user=postgres', 'DELETE FROM public.canary')",
        ));
    }
    v
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    AttrValue,
    AttrFilter,
    AttrOuterFilter,
    CustomQuery,
    /// `reset-context --now`
    ContextNow,
    /// the stale key recomputed by `calc-attrs`
    ContextCalc,
    Stitch,
    Group,
    /// `calc-attrs --check` over a value expression
    CheckAttr,
    CheckCustom,
    CheckContext,
    /// `calc-audiences --check` (prepares only: a payload that parses passes)
    CheckGroup,
}

impl Place {
    fn name(self) -> &'static str {
        match self {
            Place::ContextNow | Place::ContextCalc => "context \"sec\"",
            Place::CheckContext => "context:sec",
            Place::Stitch => "stitching_attributes_config row (attribute_id \"sec\"",
            Place::Group | Place::CheckGroup => "group \"sec\"",
            _ => "attribute \"sec\"",
        }
    }

    fn args(self) -> Vec<&'static str> {
        match self {
            Place::ContextNow => vec!["reset-context", "--now", "sec"],
            Place::Stitch => vec!["stitch", "--from-scratch", "--yes"],
            Place::Group => vec!["calc-audiences"],
            Place::CheckGroup => vec!["calc-audiences", "--check"],
            Place::CheckAttr | Place::CheckCustom | Place::CheckContext => {
                vec!["--format", "json", "calc-attrs", "--check"]
            }
            _ => vec!["calc-attrs", "--no-cache"],
        }
    }

    /// A run that evaluates the definition even when an earlier run
    /// succeeded, and a second run of the same job (for the lock check).
    fn job(self) -> Vec<&'static str> {
        match self {
            Place::ContextNow => vec!["reset-context", "--now", "sec"],
            Place::Stitch => vec!["stitch", "--from-scratch", "--yes"],
            Place::Group => vec!["calc-audiences", "--all"],
            _ => vec!["calc-attrs", "--all", "--no-cache"],
        }
    }

    async fn install(self, fx: &Fixture, p: &Payload) {
        let cond = format!("({}) IS NOT NULL", p.expr);
        let attr = |def: Value| async move {
            fx.c.execute(
                "INSERT INTO cdp_attr.attributes (id, definition) VALUES ('sec', $1)",
                &[&def],
            )
            .await
            .unwrap();
        };
        let context = |q: String| async move {
            fx.c.execute(
                "INSERT INTO cdp_attr.context (key, query) VALUES ('sec', $1)",
                &[&q],
            )
            .await
            .unwrap();
        };
        match self {
            Place::AttrValue | Place::CheckAttr => {
                attr(json!({"type": "last", "value": p.expr})).await
            }
            Place::AttrFilter => {
                attr(json!({"type": "last", "value": "source_id", "filter": cond})).await
            }
            Place::AttrOuterFilter => {
                attr(json!({"type": "list", "value": "source_id", "outer_filter": cond})).await
            }
            Place::CustomQuery | Place::CheckCustom => {
                attr(json!({"type": "custom", "query": p.query})).await
            }
            Place::ContextNow | Place::ContextCalc | Place::CheckContext => {
                context(p.query.clone()).await
            }
            Place::Stitch => {
                fx.c.execute(
                    "INSERT INTO public.attributes (id, name) VALUES ('sec', 'sec') ON CONFLICT DO NOTHING",
                    &[],
                )
                .await
                .unwrap();
                fx.c.execute(
                    "INSERT INTO cdp_ps.stitching_attributes_config (attribute_id, event_id, value_expression)
                     VALUES ('sec', $1, $2)",
                    &[&fx.event_id, &p.expr],
                )
                .await
                .unwrap();
            }
            Place::Group | Place::CheckGroup => {
                fx.c.execute(
                    "INSERT INTO audience_data.groups (id, definition) VALUES ('sec', $1)",
                    &[&json!({"sql": cond, "depends_on": {}})],
                )
                .await
                .unwrap();
            }
        }
    }

    async fn remove(self, fx: &Fixture) {
        fx.c.batch_execute(
            "DELETE FROM cdp_attr.attributes; DELETE FROM cdp_attr.context;
             DELETE FROM cdp_ps.stitching_attributes_config WHERE attribute_id = 'sec';
             DELETE FROM audience_data.groups;",
        )
        .await
        .unwrap();
    }
}

/// Nothing written, no file read or written, no large object created, the
/// evaluation role as unprivileged as before.
async fn assert_untouched(fx: &Fixture, case: &str) {
    let canary: Vec<i32> =
        fx.c.query("SELECT x FROM public.canary ORDER BY x", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(canary, vec![1], "{case}: the canary table changed");
    let los: i64 =
        fx.c.query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(los, 1, "{case}: a large object was created or removed");
    let leaked: i64 =
        fx.c.query_one(
            "SELECT count(*) FROM (SELECT value FROM cdp_attr.customer_attributes
                                   UNION ALL SELECT value FROM cdp_attr.context
                                   UNION ALL SELECT value FROM cdp_ps.identifiers
                                   UNION ALL SELECT value FROM cdp_ps.refused_edges) v
              WHERE v.value LIKE '%root:%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0, "{case}: file contents reached an output table");
    for f in ["lo", "prog"] {
        assert!(
            !std::path::Path::new(&fx.server_file(f)).exists(),
            "{case}: the server wrote {}",
            fx.server_file(f)
        );
    }
    let r =
        fx.c.query_one(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb,
                    EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid)
               FROM pg_roles r WHERE rolname = 'cdpctl_eval'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        !r.get::<_, bool>(0) && !r.get::<_, bool>(1),
        "{case}: cdpctl_eval gained privileges"
    );
}

/// Runs every payload through one place.
async fn every_payload_through(place: Place) {
    let fx = fixture(1500).await;
    for p in payloads(&fx) {
        let case = format!("{place:?} / {}", p.name);
        place.install(&fx, &p).await;
        let out = run(&mut fx.cli(&place.args()));
        let text = format!("{}\n{}", out.stdout, out.stderr);
        if matches!(
            place,
            Place::CheckAttr | Place::CheckCustom | Place::CheckContext
        ) {
            assert_eq!(out.code, 1, "{case}: exit {}: {text}", out.code);
            let id = if place == Place::CheckContext {
                "context:sec"
            } else {
                "sec"
            };
            let j = out.json();
            let line = j["checked"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["attribute"] == id)
                .unwrap_or_else(|| panic!("{case}: {id} not checked: {text}"));
            let err = line["error"].as_str().unwrap_or("");
            assert!(!err.is_empty(), "{case}: passed the check: {text}");
            if let Some(s) = p.says {
                assert!(err.contains(s), "{case}: expected {s:?} in {err}");
            }
        } else if place == Place::CheckGroup {
            // only prepared: what parses passes, what does not is named
            assert!(out.code == 0 || out.code == 1, "{case}: {text}");
            if out.code == 1 {
                assert!(text.contains(place.name()), "{case}: {text}");
            }
        } else {
            assert_eq!(out.code, 1, "{case}: exit {}: {text}", out.code);
            assert!(
                text.contains(place.name()),
                "{case}: the error does not name the definition: {text}"
            );
            if let Some(s) = p.says {
                assert!(text.contains(s), "{case}: expected {s:?} in {text}");
            }
        }
        eprintln!(
            "{case}: exit {}: {}",
            out.code,
            out.stderr.lines().last().unwrap_or("")
        );
        assert_untouched(&fx, &case).await;
        place.remove(&fx).await;
    }
}

/// One test per place, so places run in parallel.
macro_rules! payloads_through {
    ($($test:ident: $place:expr;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $test() {
                every_payload_through($place).await;
            }
        )*
    };
}

payloads_through! {
    payloads_in_attribute_value_expressions: Place::AttrValue;
    payloads_in_attribute_filters: Place::AttrFilter;
    payloads_in_attribute_outer_filters: Place::AttrOuterFilter;
    payloads_in_custom_attribute_queries: Place::CustomQuery;
    payloads_in_context_queries_reset_now: Place::ContextNow;
    payloads_in_context_queries_before_a_calculation: Place::ContextCalc;
    payloads_in_stitching_value_expressions: Place::Stitch;
    payloads_in_group_predicates: Place::Group;
}

#[tokio::test(flavor = "multi_thread")]
async fn payloads_in_check_modes() {
    for place in [
        Place::CheckAttr,
        Place::CheckCustom,
        Place::CheckContext,
        Place::CheckGroup,
    ] {
        every_payload_through(place).await;
    }
}

/// Polls until `sql` (a boolean query) is true; false after a minute.
async fn poll(c: &tokio_postgres::Client, sql: &str) -> bool {
    for _ in 0..600 {
        if c.query_one(sql, &[]).await.unwrap().get::<_, bool>(0) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn wait_until(c: &tokio_postgres::Client, sql: &str, what: &str) {
    assert!(poll(c, sql).await, "timed out waiting until {what}");
}

/// True once a session of this database waits for advisory lock `key`.
fn waiting_on(key: i64) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                         WHERE a.datname = current_database() AND l.locktype = 'advisory'
                           AND NOT l.granted AND l.objid = {key} AND l.objsubid = 1)"
    )
}

/// `pg_advisory_unlock_all()` in configured SQL releases nothing of
/// cdpctl's: while it runs (held up on a lock the test holds), a second run
/// of the same job is refused with exit code 3.
#[tokio::test(flavor = "multi_thread")]
async fn unlock_all_in_configured_sql_leaves_the_job_lock_held() {
    let fx = fixture(60_000).await;
    let expr = "pg_advisory_unlock_all()::text || pg_advisory_lock(4242)::text";
    let p = Payload {
        name: "pg_advisory_unlock_all",
        expr: expr.into(),
        query: format!("SELECT {expr} AS value"),
        says: None,
    };
    for place in [
        Place::AttrValue,
        Place::CustomQuery,
        Place::ContextNow,
        Place::Stitch,
        Place::Group,
    ] {
        let case = format!("{place:?} / unlock all");
        place.install(&fx, &p).await;
        fx.c.execute("SELECT pg_advisory_lock(4242)", &[])
            .await
            .unwrap();
        let mut first = fx
            .cli(&place.job())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if !poll(&fx.c, &waiting_on(4242)).await {
            let _ = first.kill();
            let out = first.wait_with_output().unwrap();
            panic!(
                "{case}: the configured SQL never ran: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let second = run(&mut fx.cli(&place.job()));
        assert_eq!(
            second.code, 3,
            "{case}: a concurrent run was not refused: {}",
            second.stderr
        );
        fx.c.execute("SELECT pg_advisory_unlock(4242)", &[])
            .await
            .unwrap();
        let out = first.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_untouched(&fx, &case).await;
        place.remove(&fx).await;
    }
}

async fn stored(c: &tokio_postgres::Client) -> Vec<(String, String, String)> {
    c.query(
        "SELECT customer_entity_id::text, attribute_id, value FROM cdp_attr.customer_attributes ORDER BY 1, 2, 3",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Calculated values, and an event of the last entity by id (so a
/// definition that fails on it fails in the last batch).
async fn calculated(fx: &Fixture) -> (Vec<(String, String, String)>, String) {
    fx.c.batch_execute(
        "INSERT INTO cdp_attr.attributes (id, definition) VALUES
           ('first_source', '{\"type\": \"first\", \"value\": \"source_id\"}'),
           ('types', '{\"type\": \"list\", \"value\": \"type\"}')",
    )
    .await
    .unwrap();
    let out = run(&mut fx.cli(&["calc-attrs", "--no-cache"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let before = stored(&fx.c).await;
    assert!(!before.is_empty());
    let last_event: String = fx
        .c
        .query_one(
            "SELECT event_id::text FROM cdp_ps.event_entities ORDER BY entity_id DESC, event_id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    (before, last_event)
}

/// `--from-scratch` that fails in a later batch rolls everything back: the
/// values written by the earlier batches never show, the old ones stay.
#[tokio::test(flavor = "multi_thread")]
async fn from_scratch_failing_midway_keeps_the_old_values() {
    let fx = fixture(60_000).await;
    let (before, last_event) = calculated(&fx).await;
    fx.c.execute(
        "UPDATE cdp_attr.attributes SET definition = jsonb_build_object('type', 'list', 'value',
           format('CASE WHEN id = %L::uuid THEN (1/0)::text ELSE type END', $1::text)) WHERE id = 'types'",
        &[&last_event],
    )
    .await
    .unwrap();
    let out = run(&mut fx.cli(&[
        "calc-attrs",
        "--from-scratch",
        "--yes",
        "--no-cache",
        "--batch-size",
        "2",
    ]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("attribute \"types\"") && out.stderr.contains("division by zero"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("previous attribute values are kept"),
        "{}",
        out.stderr
    );
    assert_eq!(stored(&fx.c).await, before);
}

/// `--from-scratch` killed while it runs: the old values stay visible during
/// the run and are still there afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn from_scratch_killed_midway_keeps_the_old_values() {
    let fx = fixture(60_000).await;
    let (before, last_event) = calculated(&fx).await;
    fx.c.execute(
        "UPDATE cdp_attr.attributes SET definition = jsonb_build_object('type', 'list', 'value',
           format('CASE WHEN id = %L::uuid THEN pg_advisory_lock(4243)::text || type ELSE type END', $1::text))
          WHERE id = 'types'",
        &[&last_event],
    )
    .await
    .unwrap();
    fx.c.execute("SELECT pg_advisory_lock(4243)", &[])
        .await
        .unwrap();
    let mut child = fx
        .cli(&[
            "calc-attrs",
            "--from-scratch",
            "--yes",
            "--no-cache",
            "--batch-size",
            "2",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(&fx.c, &waiting_on(4243), "the last batch is evaluated").await;
    assert_eq!(
        stored(&fx.c).await,
        before,
        "the old values must stay visible while --from-scratch runs"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    fx.c.execute("SELECT pg_advisory_unlock(4243)", &[])
        .await
        .unwrap();
    wait_until(
        &fx.c,
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity
                             WHERE datname = current_database() AND application_name LIKE 'cdpctl calc-attrs%')",
        "the killed run's sessions are gone",
    )
    .await;
    assert_eq!(stored(&fx.c).await, before);
}

/// SIGTERM cancels the configured SQL that is running, on the server: the
/// evaluation session does not go on waiting after cdpctl has exited.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cancels_configured_sql_on_the_server() {
    // no lock timeout: without a cancel the wait below would never end
    let fx = fixture_with(600_000, 0).await;
    fx.c.execute(
        "INSERT INTO cdp_attr.context (key, query) VALUES ('slow', 'SELECT pg_advisory_lock(4244)::text')",
        &[],
    )
    .await
    .unwrap();
    fx.c.execute("SELECT pg_advisory_lock(4244)", &[])
        .await
        .unwrap();
    let child = fx
        .cli(&["reset-context", "--now"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(&fx.c, &waiting_on(4244), "the context query runs").await;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    // the lock is still held by the test: only a cancel ends the wait
    wait_until(
        &fx.c,
        &format!(
            "SELECT NOT ({})",
            waiting_on(4244).trim_start_matches("SELECT ")
        ),
        "the cancelled statement has stopped",
    )
    .await;
    fx.c.execute("SELECT pg_advisory_unlock(4244)", &[])
        .await
        .unwrap();
}

/// Configured SQL that runs too long is stopped by the statement timeout,
/// with a message naming the definition and the setting.
#[tokio::test(flavor = "multi_thread")]
async fn statement_timeout_stops_slow_configured_sql() {
    let fx = fixture(500).await;
    fx.c.execute(
        "INSERT INTO cdp_attr.context (key, query) VALUES ('slow', 'SELECT pg_sleep(60)::text')",
        &[],
    )
    .await
    .unwrap();
    let out = run(&mut fx.cli(&["reset-context", "--now"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("context \"slow\"")
            && out.stderr.contains("statement timeout")
            && out.stderr.contains("session.configured_sql_timeout_ms"),
        "{}",
        out.stderr
    );
}

/// Under password authentication the evaluation session logs in with
/// CDPCTL_EVAL_PASSWORD, which `init` sets as the role's password; without
/// it the command says what is missing and how to provide it.
#[tokio::test(flavor = "multi_thread")]
async fn eval_login_comes_from_cdpctl_eval_password() {
    let dir = tempfile::Builder::new()
        .prefix("cdpctl-evalpw-")
        .tempdir()
        .unwrap();
    let cluster =
        cdpctl::pgcluster::Cluster::start_with(&dir.path().join("pg"), false, Some("right-secret"))
            .unwrap();
    let url = format!(
        "postgresql://postgres:right-secret@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    );
    let cmd = |args: &[&str], pw: Option<&str>| {
        let mut c = cli();
        c.args(["--database-url", &url]).args(args);
        if let Some(pw) = pw {
            c.env("CDPCTL_EVAL_PASSWORD", pw);
        }
        c
    };
    let out = run(&mut cmd(&["init"], None));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.batch_execute("INSERT INTO cdp_attr.context (key, query) VALUES ('k', 'SELECT 41 + 1')")
        .await
        .unwrap();
    let out = run(&mut cmd(&["reset-context", "--now"], None));
    assert_eq!(out.code, 1);
    let target = format!("cdpctl_eval@127.0.0.1:{}/postgres", cluster.port);
    assert!(
        out.stderr.contains(&format!(
            "cannot open the evaluation connection as {target}"
        )) && out.stderr.contains("set CDPCTL_EVAL_PASSWORD")
            && out.stderr.contains("pg_hba.conf"),
        "{}",
        out.stderr
    );
    let out = run(&mut cmd(&["init"], Some("eval-secret")));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("set the password of role cdpctl_eval from CDPCTL_EVAL_PASSWORD"),
        "{}",
        out.stdout
    );
    let out = run(&mut cmd(
        &["--format", "json", "reset-context", "--now"],
        Some("eval-secret"),
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["recomputed"][0]["value"], "42");
    let out = run(&mut cmd(&["reset-context", "--now"], Some("wrong")));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("password authentication failed for user \"cdpctl_eval\""),
        "{}",
        out.stderr
    );
    // a role that could do more than read is refused (this cluster is the
    // test's own: the role is per cluster)
    c.batch_execute("ALTER ROLE cdpctl_eval CREATEDB; GRANT pg_read_server_files TO cdpctl_eval")
        .await
        .unwrap();
    let out = run(&mut cmd(&["reset-context", "--now"], Some("eval-secret")));
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "error: refusing to evaluate configured SQL as role cdpctl_eval: it must only read, but it has CREATEDB and is a member of pg_read_server_files; fix it as a superuser: ALTER ROLE cdpctl_eval NOCREATEDB; REVOKE pg_read_server_files FROM cdpctl_eval"
    );
}

/// A stitching queue dropped and created again by hand (without the
/// evaluation role's grant) is still read: stitching grants it again.
#[tokio::test(flavor = "multi_thread")]
async fn a_queue_created_again_by_hand_is_granted_again() {
    let fx = fixture(60_000).await;
    fx.c.batch_execute(
        "DROP TABLE cdp_ps.customer_events_to_process;
         CREATE TABLE cdp_ps.customer_events_to_process (
             seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id uuid NOT NULL);
         UPDATE cdp_ps.stitching_state SET full_run_pending = false;
         INSERT INTO cdp_ce.customer_events (id, source_id, type, version, event_time, payload)
         SELECT gen_random_uuid(), source_id, type, version, event_time, payload
           FROM cdp_ce.customer_events ORDER BY id LIMIT 1;",
    )
    .await
    .unwrap();
    let out = run(&mut fx.cli(&["--format", "json", "stitch"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["mode"], "incremental", "{j}");
    assert_eq!(j["events"], 1, "{j}");
}
