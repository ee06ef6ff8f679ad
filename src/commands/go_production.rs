//! `cdpctl go-production`: pre-flight checks, then one transaction that
//! switches the cdp schema's `customer_events` and
//! `pivoted_customer_attributes` to views over cdpctl's tables.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::production::{self, sql::Settings, Check, GoOptions};
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run the pre-flight checks only; change nothing (exit 1 when one fails)
    #[arg(long, conflicts_with_all = ["dry_run", "sync_pivot"])]
    pub check: bool,
    /// Print the checks, the plan and the SQL; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Switch even when stitching or attribute calculation has a backlog
    #[arg(long)]
    pub allow_backlog: bool,
    /// How long to wait for locks on the objects being replaced, e.g. 500ms,
    /// 5s (default: production_switch.lock_timeout_ms, 5s)
    #[arg(long, value_name = "DURATION", value_parser = production::sql::parse_duration)]
    pub lock_timeout: Option<Duration>,
    /// Only bring pivoted_customer_attributes in step with the attribute
    /// definitions (in production; calc-attrs does this after each run)
    #[arg(long, conflicts_with_all = ["allow_backlog"])]
    pub sync_pivot: bool,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let settings = Settings::from_config(&app.config.production_switch)?;
    let db = app.connect("go-production").await?;
    db.require_initialized().await?;
    db.lock_job("go-production").await?;
    if args.sync_pivot {
        let changed = production::sync_pivot(&db).await?;
        let in_production = production::catalog(&db).await?.in_production();
        return app.out.emit(
            &json!({"changed": changed, "in_production": in_production}),
            || match (in_production, changed) {
                (false, _) => "not in production: there is no cdpctl pivot view to sync".into(),
                (true, true) => "pivoted_customer_attributes recreated with one column per attribute".into(),
                (true, false) => "pivoted_customer_attributes is in step with the attribute definitions; nothing changed".into(),
            },
        );
    }
    let timeout = args
        .lock_timeout
        .unwrap_or(Duration::from_millis(settings.lock_timeout_ms));
    let checks = production::go_checks(
        &db,
        &settings,
        &GoOptions {
            allow_backlog: args.allow_backlog,
        },
    )
    .await?;
    let ok = checks.iter().all(|c| c.ok);
    if args.check || !ok {
        app.out.emit(&json!({"checks": checks, "ok": ok}), || {
            checks_table(&checks)
        })?;
        production::refuse_on_failures("go-production", &checks)?;
        return Ok(());
    }
    let plan = production::go_plan(&db).await?;
    let script = plan.script(timeout, &app.config.cdpctl_schema);
    if args.dry_run {
        return app.out.emit(
            &json!({"dry_run": true, "checks": checks, "steps": plan.steps, "sql": script}),
            || {
                format!(
                    "{}\n\nplan (one transaction, lock timeout {}ms):\n{}\n-- dry run: nothing was changed\n{script}",
                    checks_table(&checks),
                    timeout.as_millis(),
                    steps_list(&plan.steps)
                )
            },
        );
    }
    if !app.out.json() {
        println!(
            "{}\n\nplan (one transaction, lock timeout {}ms):\n{}",
            checks_table(&checks),
            timeout.as_millis(),
            steps_list(&plan.steps)
        );
    }
    crate::output::confirm_db(
        &app.params.host_db(),
        &format!(
            "switch schema {:?} to production ({} step(s) in one transaction)?",
            app.config.cdp_schema,
            plan.steps.len()
        ),
        app.global.yes,
    )?;
    let done = db
        .cancellable(production::execute(&db, &plan, timeout))
        .await?;
    app.out.emit(&json!({"checks": checks, "switch": done}), || {
        format!(
            "switched schema {:?} to production in {:.2}s (switch #{} by {} at {}); undo with `cdpctl rollback`",
            done.cdp_schema, done.seconds, done.switch_id, who(&done), done.switched_at
        )
    })
}

pub(crate) fn who(done: &production::Done) -> String {
    match &done.os_user {
        Some(os) if os != &done.db_user => format!("{} (OS user {os})", done.db_user),
        _ => done.db_user.clone(),
    }
}

pub(crate) fn checks_table(checks: &[Check]) -> String {
    let mut t = crate::output::table(["check", "result", "detail"]);
    for c in checks {
        t.add_row(vec![
            c.check.to_string(),
            if c.ok { "ok" } else { "FAILED" }.to_string(),
            c.detail.clone(),
        ]);
    }
    t.to_string()
}

pub(crate) fn steps_list(steps: &[production::Step]) -> String {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| format!("  {}. {}", i + 1, s.what))
        .collect::<Vec<_>>()
        .join("\n")
}
