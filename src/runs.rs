//! The run history (`<cdpctl_schema>.job_runs`): every job run with its
//! start, end, outcome, error text and counts. The start row is committed on
//! a short connection of its own before the job begins, so a run whose own
//! transaction rolled back still leaves a trace; the command layer writes
//! the end after the job returned, on success and on failure.

use anyhow::Result;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::cli::Command;
use crate::db::{relation_exists, Db, PgResultExt, Schemas};
use crate::App;

/// The jobs recorded, in pipeline order (what `status` lists).
pub const JOBS: &[&str] = &[
    "stitch",
    "calc-attrs",
    "reset-context",
    "calc-audiences",
    "migrate-audiences",
    "flush-segment",
    "history-import",
    "go-production",
    "rollback",
];

/// The job a command line runs, `None` for commands and modes that change
/// nothing (status, explain, `--check`, `--dry-run`, listings).
pub fn job_name(command: &Command) -> Option<&'static str> {
    match command {
        Command::Stitch(a) if a.explain.is_none() && !a.dry_run => Some("stitch"),
        Command::CalcAttrs(a) if !a.check && !a.dry_run && (a.entity.is_none() || a.write) => {
            Some("calc-attrs")
        }
        Command::ResetContext(a) if !a.dry_run => Some("reset-context"),
        Command::CalcAudiences(a)
            if !a.dry_run && !a.check && !a.list && a.explain.is_none() && a.define.is_none() =>
        {
            Some("calc-audiences")
        }
        Command::MigrateAudiences(a) if !a.dry_run => Some("migrate-audiences"),
        Command::FlushSegment(a) if !a.dry_run => Some("flush-segment"),
        Command::HistoryImport(a) if !a.dry_run => Some("history-import"),
        Command::GoProduction(a) if !a.check && !a.dry_run => Some("go-production"),
        Command::Rollback(a) if !a.dry_run => Some("rollback"),
        _ => None,
    }
}

/// A recorded run whose end is still to be written.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub id: i64,
}

/// Records the start of `job` (outcome `running`) and commits it. `None`
/// when the run history table does not exist yet (before `cdpctl init`).
/// A database that cannot be reached is an error: the job could not run
/// either.
pub async fn start(app: &App, job: &str) -> Result<Option<Started>> {
    let client = app.params.connect_raw(job).await?;
    let schemas = Schemas::from_config(&app.config);
    if !relation_exists(&client, schemas.raw_name("cdpctl"), "job_runs").await? {
        return Ok(None);
    }
    let id: i64 = client
        .query_one(
            &schemas.substitute("INSERT INTO {{cdpctl}}.job_runs (job) VALUES ($1) RETURNING id"),
            &[&job],
        )
        .await
        .pg_context(|| format!("recording the start of the {job} run"))?
        .get(0);
    Ok(Some(Started { id }))
}

/// Records how the run ended: `succeeded` with the counts of its report,
/// or `failed` with the error text and exit code. A failure to record is a
/// warning on stderr; it never changes the run's own result.
pub async fn finish(app: &App, run: Started, result: &Result<()>) {
    let counts = crate::output::report_counts().unwrap_or_else(|| json!({}));
    let (outcome, error, code) = match result {
        Ok(()) => ("succeeded", None, 0),
        Err(e) => (
            "failed",
            Some(format!("{e:#}")),
            i32::from(crate::error::exit_code(e)),
        ),
    };
    let write = async {
        let client = app.params.connect_raw("run-history").await?;
        let schemas = Schemas::from_config(&app.config);
        client
            .execute(
                &schemas.substitute(
                    "UPDATE {{cdpctl}}.job_runs
                        SET finished_at = clock_timestamp(), outcome = $2, error = $3,
                            exit_code = $4, counts = $5
                      WHERE id = $1",
                ),
                &[&run.id, &outcome, &error, &code, &counts],
            )
            .await
            .pg_context(|| format!("recording the end of run #{}", run.id))?;
        anyhow::Ok(())
    };
    if let Err(e) = write.await {
        eprintln!(
            "warning: the run history misses the end of run #{}: {e:#}",
            run.id
        );
    }
}

/// The last run and the last failure of every job in [`JOBS`] that ran at
/// least once. Runs that exited 3 (another run held the job's lock, so this
/// one did nothing) stay in the table but are neither: an overlapping cron
/// run is not a failure of the job.
pub async fn last_runs(db: &Db) -> Result<Vec<JobRuns>> {
    let rows = db
        .client
        .query(
            &db.schemas.substitute(
                "SELECT j.job, r.id, r.started_at, r.finished_at, r.outcome, r.error, r.exit_code,
                        r.counts, f.id, f.started_at, f.finished_at, f.error, f.exit_code
                   FROM unnest($1::text[]) WITH ORDINALITY AS j (job, n)
                   JOIN LATERAL (SELECT * FROM {{cdpctl}}.job_runs x
                                  WHERE x.job = j.job AND x.exit_code IS DISTINCT FROM $2
                                  ORDER BY x.id DESC LIMIT 1) r ON true
                   LEFT JOIN LATERAL (SELECT * FROM {{cdpctl}}.job_runs x
                                       WHERE x.job = j.job AND x.outcome = 'failed'
                                         AND x.exit_code IS DISTINCT FROM $2
                                       ORDER BY x.id DESC LIMIT 1) f ON true
                  ORDER BY j.n",
            ),
            &[&JOBS, &i32::from(crate::error::EXIT_LOCKED)],
        )
        .await
        .pg_context(|| "reading the run history".into())?;
    Ok(rows
        .iter()
        .map(|r| JobRuns {
            job: r.get(0),
            last: Run {
                id: r.get(1),
                started_at: r.get(2),
                finished_at: r.get(3),
                outcome: r.get(4),
                error: r.get(5),
                exit_code: r.get(6),
                counts: r.get(7),
            },
            last_failure: r.get::<_, Option<i64>>(8).map(|id| Run {
                id,
                started_at: r.get(9),
                finished_at: r.get(10),
                outcome: "failed".into(),
                error: r.get(11),
                exit_code: r.get(12),
                counts: Value::Null,
            }),
        })
        .collect())
}

/// One job's last run and last failure.
#[derive(Debug, Clone)]
pub struct JobRuns {
    pub job: String,
    pub last: Run,
    pub last_failure: Option<Run>,
}

/// One row of the run history.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    pub counts: Value,
}

/// RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Run {
    /// The run as JSON: times in RFC 3339, `duration_ms`, `age_seconds`
    /// (since it ended, or started while running).
    pub fn to_json(&self, now: DateTime<Utc>) -> Value {
        let mut v = json!({
            "id": self.id,
            "outcome": self.outcome,
            "started_at": rfc3339(self.started_at),
            "finished_at": self.finished_at.map(rfc3339),
            "duration_ms": self.finished_at.map(|f| (f - self.started_at).num_milliseconds()),
            "age_seconds": (now - self.finished_at.unwrap_or(self.started_at)).num_seconds(),
            "error": self.error,
            "exit_code": self.exit_code,
        });
        if !self.counts.is_null() {
            v["counts"] = self.counts.clone();
        }
        v
    }
}
