//! `cdpctl calc-audiences`: rule-based contact groups, recalculated for the
//! entities that changed since the last run.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::groups::{self, RunOptions, RunReport, Settings};
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recalculate every group for every entity (consumes the change journal too)
    #[arg(long, conflicts_with = "group")]
    pub all: bool,
    /// Recalculate only this group, in full (repeatable; leaves the change journal alone)
    #[arg(long, value_name = "ID")]
    pub group: Vec<String>,
    /// Reference time for activity windows, RFC 3339 (default: now)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub now: Option<DateTime<Utc>>,
    /// Evaluate and report the membership changes without applying them
    #[arg(long)]
    pub dry_run: bool,
    /// Repeat the run every --interval until Ctrl-C or SIGTERM
    #[arg(long, conflicts_with_all = ["all", "group", "dry_run"])]
    pub watch: bool,
    /// Pause between --watch runs (e.g. 10s, 500ms, 1m)
    #[arg(long, default_value = "10s", value_parser = parse_interval, requires = "watch")]
    pub interval: Duration,
    /// Validate and save group definitions from a JSON file (insert or replace), then stop
    #[arg(long, value_name = "FILE", conflicts_with_all = ["all", "group", "watch", "check", "explain", "list"])]
    pub define: Option<std::path::PathBuf>,
    /// Validate every stored group (unknown attributes, operators, SQL errors) and stop
    #[arg(long, conflicts_with_all = ["all", "group", "watch", "explain", "list"])]
    pub check: bool,
    /// Print the SQL a run executes for this group and stop
    #[arg(long, value_name = "GROUP", conflicts_with_all = ["all", "group", "watch", "list"])]
    pub explain: Option<String>,
    /// List the groups with their member counts and stop
    #[arg(long, conflicts_with_all = ["all", "group", "watch"])]
    pub list: bool,
}

fn parse_time(s: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; expected RFC 3339 such as 2026-11-01T12:00:00Z"))
}

/// Parses `10s`, `500ms`, `2m`, `1h` (a bare number is seconds).
pub fn parse_interval(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad interval {s:?}; expected e.g. 10s, 500ms, 2m"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("bad interval unit {unit:?}; use ms, s, m or h")),
    };
    if d.is_zero() {
        return Err("the interval must be positive".into());
    }
    Ok(d)
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let settings = Settings::from_config(&app.config)?;
    let mut db = app.connect("calc-audiences").await?;
    db.require_initialized().await?;

    if let Some(path) = &args.define {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read group definitions {}", path.display()))?;
        let specs = groups::parse_specs(&text, &path.display().to_string())?;
        let res = groups::define(&mut db, &settings, &specs, args.dry_run).await?;
        return app.out.emit(&res, || {
            format!(
                "{} {} group(s): {}{}",
                if args.dry_run { "validated" } else { "saved" },
                specs.len(),
                specs
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if args.dry_run {
                    " (dry run: nothing saved)"
                } else {
                    "; the next run recalculates them"
                }
            )
        });
    }
    if args.check {
        let (n, errors) = groups::check(&db, &settings).await?;
        app.out.emit(&json!({"groups": n, "errors": errors}), || {
            if errors.is_empty() {
                format!("{n} group(s) checked: all valid")
            } else {
                format!(
                    "{n} group(s) checked, {} error(s):\n  {}",
                    errors.len(),
                    errors.join("\n  ")
                )
            }
        })?;
        if !errors.is_empty() {
            bail!(
                "{} invalid group definition(s); fix them and save again with --define",
                errors.len()
            );
        }
        return Ok(());
    }
    if let Some(id) = &args.explain {
        let all = groups::load_groups(&db, false).await?;
        let Some(g) = all.iter().find(|g| &g.id == id) else {
            bail!("group \"{id}\" does not exist; list the groups with `cdpctl calc-audiences --list`");
        };
        let now = match args.now {
            Some(t) => t,
            None => db.client.query_one("SELECT now()", &[]).await?.get(0),
        };
        let sql = groups::explain_sql(&db.schemas, g, now);
        return app
            .out
            .emit(&json!({"group": id, "sql": sql}), || sql.clone());
    }
    if args.list {
        let all = groups::load_groups(&db, false).await?;
        let rows: Vec<Value> = all
            .iter()
            .map(|g| {
                let d = g.rule.deps();
                json!({"id": g.id, "name": g.name, "members": g.member_count, "campaign_id": g.campaign_id,
                       "time_window": d.time, "attributes": d.attributes, "events": d.events.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                       "last_full_at": g.last_full_at.map(|t| t.to_rfc3339())})
            })
            .collect();
        return app.out.emit(&json!({"groups": rows}), || {
            let mut t =
                crate::output::table(["group", "name", "members", "campaign", "depends on"]);
            for g in &all {
                let d = g.rule.deps();
                let mut deps: Vec<String> = d.attributes.iter().cloned().collect();
                deps.extend(d.events.iter().map(|e| e.to_string()));
                if d.time {
                    deps.push("time".into());
                }
                t.add_row(vec![
                    g.id.clone(),
                    g.name.clone(),
                    crate::output::num(g.member_count),
                    g.campaign_id.map(|c| c.to_string()).unwrap_or_default(),
                    deps.join(", "),
                ]);
            }
            t.to_string()
        });
    }

    db.lock_job("calc-audiences").await?;
    let opts = RunOptions {
        all: args.all,
        groups: args.group.clone(),
        now: args.now,
        dry_run: args.dry_run,
    };
    if !args.watch {
        let pb = app.out.progress(Some(0), "calc-audiences batches");
        let report = db
            .cancellable(groups::run(&db, &settings, &opts, Some(&pb)))
            .await;
        pb.finish_and_clear();
        let report = report?;
        // release the job lock now rather than when the server notices the
        // connection is gone, so a run right after this one is not refused
        let _ = db
            .client
            .batch_execute("SELECT pg_advisory_unlock_all()")
            .await;
        return emit(app, &report);
    }
    let stop = crate::signals::StopFlag::install();
    let mut rounds = 0u64;
    let mut db = db;
    let mut backoff = crate::signals::Backoff::default();
    while !stop.is_set() {
        let report = match groups::run(&db, &settings, &opts, None).await {
            Ok(r) => r,
            Err(e) if crate::db::is_connection_lost(&db.client, &e) => {
                // the session (and with it the job lock) is gone: wait,
                // reconnect, take the lock again and go on
                if let Some(d) =
                    super::reconnect(app, "calc-audiences", &stop, &mut backoff, &e).await
                {
                    d.lock_job("calc-audiences").await?;
                    db = d;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        backoff.reset();
        rounds += 1;
        if app.out.json() {
            println!("{}", serde_json::to_string(&report)?);
        } else if report.journal_rows > 0
            || report.added + report.removed > 0
            || app.out.verbose > 0
        {
            println!(
                "{}  {} journal row(s), {} group(s) evaluated, {} skipped, +{} -{} members, {} segment change(s) in {:.2}s",
                report.now,
                report.journal_rows,
                report.groups_evaluated,
                report.groups_skipped,
                report.added,
                report.removed,
                report.segment_changes,
                report.seconds
            );
        }
        stop.sleep(args.interval).await;
    }
    let _ = db
        .client
        .batch_execute("SELECT pg_advisory_unlock_all()")
        .await;
    app.out.info(format!(
        "calc-audiences --watch stopped after {rounds} run(s)"
    ));
    Ok(())
}

fn emit(app: &App, r: &RunReport) -> Result<()> {
    app.out.emit(&serde_json::to_value(r)?, || {
        let mut t = crate::output::table(["group", "run", "evaluated", "added", "removed", "members"]);
        for g in &r.groups {
            let run = if g.reason.is_empty() { g.mode.clone() } else { format!("{} ({})", g.mode, g.reason) };
            t.add_row(vec![
                g.id.clone(),
                run,
                crate::output::num(g.evaluated),
                crate::output::num(g.added),
                crate::output::num(g.removed),
                crate::output::num(g.members),
            ]);
        }
        let mut s = t.to_string();
        s.push_str(&format!(
            "\n{} journal row(s) for {} entities ({} removed); {} group(s) evaluated, {} skipped; +{} -{} members; {} segment change(s) queued{}; {:.2}s{}",
            r.journal_rows,
            r.changed_entities,
            r.removed_entities,
            r.groups_evaluated,
            r.groups_skipped,
            r.added,
            r.removed,
            r.segment_changes,
            if r.unmapped_contacts > 0 { format!(", {} without a contact id", r.unmapped_contacts) } else { String::new() },
            r.seconds,
            if r.dry_run { " (dry run: nothing applied)" } else { "" }
        ));
        s
    })
}

#[cfg(test)]
mod tests {
    use super::parse_interval;
    use std::time::Duration;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_interval("3").unwrap(), Duration::from_secs(3));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("5d").is_err());
        assert!(parse_interval("s").is_err());
    }
}
