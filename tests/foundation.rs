//! init, status, config errors, connection errors, the job lock, completions,
//! --version.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn init_twice_changes_nothing_the_second_time() {
    let t = TestDb::empty().await;
    let first = run(t.cli().args(["--format", "json", "init"]));
    assert_eq!(first.code, 0, "{}", first.stderr);
    let j = first.json();
    assert_eq!(
        j["applied"].as_array().unwrap().len(),
        cdpctl::schema::MIGRATIONS.len()
    );
    let second = run(t.cli().args(["init"]));
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stdout.contains("schema is up to date"),
        "{}",
        second.stdout
    );
    assert!(
        second.stdout.contains("nothing changed"),
        "{}",
        second.stdout
    );
    let c = t.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM cdpctl.schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, cdpctl::schema::MIGRATIONS.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn init_dry_run_prints_sql_and_changes_nothing() {
    let t = TestDb::empty().await;
    let out = run(t.cli().args(["init", "--dry-run"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out
        .stdout
        .contains("CREATE TABLE IF NOT EXISTS \"cdp_ce\".customer_events"));
    let c = t.client().await;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('cdpctl','cdp_ce','cdp_ps','cdp_attr','audience_data','inapp_campaigns')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "dry run created schemas");
}

#[tokio::test(flavor = "multi_thread")]
async fn init_with_custom_schema_names() {
    let t = TestDb::empty().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &json!({
            "postgresql": pg_block(&t.url),
            "cdp_schema": "My Cdp", "ce_schema": "raw", "ps_schema": "stitch",
            "attr_schema": "attrs", "audience_schema": "aud", "history_schema": "hist",
            "cdpctl_schema": "ops"
        }),
    );
    let out = run(cli().arg("--config").arg(&cfg).arg("init"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let c = t.client().await;
    for rel in [
        "\"My Cdp\".events",
        "raw.customer_events",
        "stitch.stitching_attributes_config",
        "attrs.customer_entities",
        "aud.campaign_contact_id_master",
        "hist.campaign_snapshots",
        "ops.schema_migrations",
    ] {
        let ok: bool = c
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&rel])
            .await
            .unwrap()
            .get(0);
        assert!(ok, "{rel} missing");
    }
    let default_exists: bool = c
        .query_one(
            "SELECT to_regclass('cdp_ce.customer_events') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!default_exists);
    let again = run(cli().arg("--config").arg(&cfg).arg("init"));
    assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
    let status = run(cli()
        .arg("--config")
        .arg(&cfg)
        .args(["--format", "json", "status"]));
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(status.json()["events"]["customer_events"], json!(0));
}

#[test]
fn unknown_config_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &json!({"postgresql": {"host": "x"}, "ce_shema": "cdp_ce"}),
    );
    let out = run(cli().arg("--config").arg(&cfg).arg("status"));
    assert_eq!(out.code, 1);
    assert!(out.stderr.starts_with("error: config "), "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown field `ce_shema`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("examples/cdpctl.json"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);

    let cfg = write_config(&dir, &json!({"postgresql": {"port": "5432x"}}));
    let out = run(cli().arg("--config").arg(&cfg).arg("status"));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("key \"postgresql.port\""),
        "{}",
        out.stderr
    );

    let cfg = write_config(&dir, &json!({"postgresql": {"sslmode": "sometimes"}}));
    let out = run(cli().arg("--config").arg(&cfg).arg("status"));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("postgresql.sslmode"), "{}", out.stderr);
}

/// A secret of the wrong type is named by its key, never echoed.
#[tokio::test(flavor = "multi_thread")]
async fn config_errors_never_show_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &json!({"postgresql": {"host": "x", "password": 123456}}),
    );
    let out = run(cli().arg("--config").arg(&cfg).arg("status"));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("key \"postgresql.password\": invalid value (not shown, the key holds a secret); expected a string"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("123456"), "{}", out.stderr);

    let t = TestDb::new().await;
    let cfg = write_config(
        &dir,
        &json!({"segments": {"destinations": {"beta": {"environment": "prod", "api_token": 987654}}}}),
    );
    let out = run(t.cli().arg("--config").arg(&cfg).arg("flush-segment"));
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("segments.destinations.beta.api_token"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("987654"), "{}", out.stderr);
}

#[test]
fn example_config_is_valid_and_complete() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cdpctl.json"))
            .unwrap();
    let cfg = cdpctl::config::Config::from_json(&text, "examples/cdpctl.json").unwrap();
    // every key of the config appears in the example
    let full = serde_json::to_value(&cfg).unwrap();
    let example: serde_json::Value = serde_json::from_str(&text).unwrap();
    for k in full.as_object().unwrap().keys() {
        assert!(example.get(k).is_some(), "examples/cdpctl.json lacks {k}");
    }
}

#[test]
fn unreachable_host_names_host_and_fix() {
    let port = cdpctl::pgcluster::free_port().unwrap();
    let out = run(cli().args([
        "--database-url",
        &format!("postgresql://postgres@127.0.0.1:{port}/cdp?sslmode=disable"),
        "status",
    ]));
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        format!("error: cannot connect to postgres@127.0.0.1:{port}/cdp: connection refused; is PostgreSQL running there? check postgresql.host/port in the config or --database-url")
    );
}

#[test]
fn missing_database_names_it() {
    let url = url_for("cdpctl_no_such_db");
    let out = run(cli().args(["--database-url", &url, "status"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "database \"cdpctl_no_such_db\" does not exist; create it (createdb cdpctl_no_such_db)"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn wrong_password_is_reported() {
    let dir = tempfile::Builder::new()
        .prefix("cdpctl-pw-")
        .tempdir()
        .unwrap();
    let cluster =
        cdpctl::pgcluster::Cluster::start_with(&dir.path().join("pg"), false, Some("right-secret"))
            .unwrap();
    let url = format!(
        "postgresql://postgres:wrong@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    );
    let out = run(cli().args(["--database-url", &url, "status"]));
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        format!("error: cannot connect to postgres@127.0.0.1:{}/postgres: password authentication failed for user \"postgres\"; set the right password in postgresql.password, PGPASSWORD or the database URL", cluster.port)
    );
    // PGPASSWORD is honoured
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    );
    let out = run(cli()
        .env("PGPASSWORD", "right-secret")
        .args(["--database-url", &url, "status"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_schema_names_key_and_fix() {
    let t = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &json!({"postgresql": pg_block(&t.url), "attr_schema": "cdp_attributes"}),
    );
    let out = run(cli().arg("--config").arg(&cfg).arg("status"));
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        format!("error: schema \"cdp_attributes\" (attr_schema in the config) does not exist in database \"{}\"; run `cdpctl init` to create it, or fix attr_schema in the config", t.name)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn second_run_of_a_job_exits_3() {
    let t = TestDb::new().await;
    let holder = t.app().connect("init").await.unwrap();
    holder.lock_job("init").await.unwrap();
    let out = run(t.cli().arg("init"));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: another `cdpctl init` is already running against this database (held by \"cdpctl init\" pid "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(" since "), "{}", out.stderr);
    drop(holder);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let out = run(t.cli().arg("init"));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_counts_and_jobs() {
    let t = TestDb::new().await;
    let mut db = t.db().await;
    let s = db.schemas.clone();
    let opts = cdpctl::demo::GenOptions {
        customers: 50,
        ..Default::default()
    };
    let seeded = cdpctl::demo::load(&mut db.client, &s, &opts).await.unwrap();
    let out = run(t.cli().args(["--format", "json", "status"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["events"]["customer_events"], json!(seeded.events));
    assert_eq!(j["attributes"]["definitions"], json!(seeded.attributes));
    assert_eq!(j["migrations"]["pending"], json!([]));
    // our own test connection is named "cdpctl test"
    let running = &j["jobs"]["running"][0];
    assert_eq!(running["application_name"], json!("cdpctl test"), "{j}");
    assert_eq!(running["sessions"], json!(1), "{j}");
    assert!(running["since"].as_str().unwrap().ends_with('Z'), "{j}");
    // people get the table
    let table = run(t.cli().args(["status"]));
    assert!(
        table.stdout.contains("1 session(s) since"),
        "{}",
        table.stdout
    );
}

#[test]
fn committed_completions_are_current() {
    use clap_complete::Shell;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let name = cdpctl::commands::completions::file_name(shell);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("completions")
            .join(name);
        let committed = std::fs::read(&path).unwrap_or_default();
        let current = cdpctl::commands::completions::generate(shell);
        if committed != current {
            if std::env::var("CDPCTL_BLESS").is_ok() {
                std::fs::write(&path, current).unwrap();
                continue;
            }
            panic!("completions/{name} is stale: run `CDPCTL_BLESS=1 cargo test --test foundation committed_completions` (or `cdpctl completions {shell} > completions/{name}`)");
        }
    }
}

/// git in the checkout, `None` without git or outside a checkout.
fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = run(cli().arg("--version"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let shape = regex::Regex::new(
        r"^cdpctl (\d+\.\d+\.\d+\S*) \((commit unknown|([0-9a-f]{7,40})(-dirty)?)\)\n$",
    )
    .unwrap();
    let m = shape
        .captures(&out.stdout)
        .unwrap_or_else(|| panic!("--version prints {:?}", out.stdout));
    assert_eq!(&m[1], env!("CARGO_PKG_VERSION"));
    let top = git(&["rev-parse", "--show-toplevel"]).map(std::path::PathBuf::from);
    let in_checkout = top.is_some_and(|t| {
        t.canonicalize().ok()
            == std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .canonicalize()
                .ok()
    });
    if !in_checkout {
        assert_eq!(&m[2], "commit unknown");
        return;
    }
    let head = git(&["rev-parse", "HEAD"]).unwrap();
    let hash = m.get(3).map(|h| h.as_str()).unwrap_or("none");
    assert!(
        head.starts_with(hash),
        "--version names {hash}, HEAD is {head}"
    );
    // -dirty exactly when the sources of the binary differ from HEAD (the
    // build script reruns whenever one of them changes)
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    status.extend(cdpctl::VERSION_SOURCES.split(' '));
    let changed = git(&status).unwrap();
    assert_eq!(
        m.get(4).is_some(),
        !changed.is_empty(),
        "changed sources: {changed:?}"
    );
    // every subcommand says the same
    let sub = run(cli().args(["status", "--version"]));
    assert_eq!(
        sub.stdout,
        out.stdout.replacen("cdpctl", "cdpctl-status", 1)
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = run(cli().args(["init", "--no-such-flag"]));
    assert_eq!(out.code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_seeds_a_given_database() {
    let t = TestDb::empty().await;
    let out = run(t
        .cli()
        .args(["--yes", "--format", "json", "demo", "--customers", "30"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["seeded"]["customers"], json!(32)); // 30 + 2 chains
    let c = t.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM cdp_ce.customer_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(json!(n), j["seeded"]["events"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_asks_and_refuses_a_database_with_events() {
    let t = TestDb::empty().await;
    let target = {
        let p =
            cdpctl::db::ConnectParams::resolve(&cdpctl::config::Config::default(), Some(&t.url))
                .unwrap();
        p.host_db()
    };
    // Without --yes and without a terminal: refused, naming the database.
    let out = run(t.cli().args(["demo", "--customers", "10"]));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains(&format!("database {target}: seed demo data")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("pass --yes"), "{}", out.stderr);
    let out = run(t.cli().args(["--yes", "demo", "--customers", "10"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Seeded once: a second run is refused, nothing raw.
    let out = run(t.cli().args(["--yes", "demo", "--customers", "10"]));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains(&format!("database {target} already holds customer events")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--reset"), "{}", out.stderr);
    assert!(!out.stderr.contains("duplicate key"), "{}", out.stderr);
    // --reset drops and seeds anew.
    let out = run(t.cli().args([
        "--yes",
        "--format",
        "json",
        "demo",
        "--customers",
        "10",
        "--reset",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let c = t.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM cdp_ce.customer_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(json!(n), out.json()["seeded"]["events"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn destructive_prompts_name_the_database() {
    let t = TestDb::new().await;
    let target =
        cdpctl::db::ConnectParams::resolve(&cdpctl::config::Config::default(), Some(&t.url))
            .unwrap()
            .host_db();
    assert!(target.ends_with(&format!("/{}", t.name)), "{target}");
    let out = run(t.cli().args(["calc-attrs", "--from-scratch"]));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains(&format!("error: database {target}: delete every attribute")),
        "{}",
        out.stderr
    );
}
