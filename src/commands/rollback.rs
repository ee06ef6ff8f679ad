//! `cdpctl rollback`: undo `go-production` in one transaction: drop the
//! cdpctl views, restore the backups under their names, recreate the saved
//! view definitions exactly.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::go_production::{checks_table, steps_list, who};
use crate::production::{self, sql::Settings};
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the checks, the plan and the SQL; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for locks on the objects being replaced, e.g. 500ms,
    /// 5s (default: production_switch.lock_timeout_ms, 5s)
    #[arg(long, value_name = "DURATION", value_parser = production::sql::parse_duration)]
    pub lock_timeout: Option<Duration>,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let settings = Settings::from_config(&app.config.production_switch)?;
    let db = app.connect("rollback").await?;
    db.require_initialized().await?;
    db.lock_job("rollback").await?;
    let timeout = args
        .lock_timeout
        .unwrap_or(Duration::from_millis(settings.lock_timeout_ms));
    let (checks, switch_id) = production::rollback_checks(&db).await?;
    let (true, Some(switch_id)) = (checks.iter().all(|c| c.ok), switch_id) else {
        app.out.emit(&json!({"checks": checks, "ok": false}), || {
            checks_table(&checks)
        })?;
        return production::refuse_on_failures("rollback", &checks);
    };
    let plan = production::rollback_plan(&db, switch_id).await?;
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
            "roll schema {:?} back to the legacy objects ({} step(s) in one transaction)?",
            app.config.cdp_schema,
            plan.steps.len()
        ),
        app.global.yes,
    )?;
    let done = db
        .cancellable(production::execute(&db, &plan, timeout))
        .await?;
    app.out
        .emit(&json!({"checks": checks, "switch": done}), || {
            format!(
                "rolled schema {:?} back to the legacy objects in {:.2}s (switch #{} by {} at {})",
                done.cdp_schema,
                done.seconds,
                done.switch_id,
                who(&done),
                done.switched_at
            )
        })
}
