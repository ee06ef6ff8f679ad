//! Error kinds that map to exit codes. Everything else is an `anyhow::Error`
//! with context and exits 1.

use std::fmt;

/// Exit code for "another run holds the lock".
pub const EXIT_LOCKED: u8 = 3;
/// Exit code for usage errors (clap uses the same).
pub const EXIT_USAGE: u8 = 2;

/// Another cdpctl run of the same job holds the advisory lock.
#[derive(Debug)]
pub struct LockHeld {
    pub job: String,
    pub holder: String,
}

impl fmt::Display for LockHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "another `cdpctl {}` is already running against this database ({}); wait for it to finish or stop it, then retry",
            self.job, self.holder
        )
    }
}

impl std::error::Error for LockHeld {}

/// A usage problem detected after argument parsing (bad combination of flags).
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// `status --check` found failing items. The report (naming them) was
/// already printed, so no JSON error document follows it.
#[derive(Debug)]
pub struct CheckFailed {
    pub failing: Vec<String>,
}

impl fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} check(s) failing: {}",
            self.failing.len(),
            self.failing.join("; ")
        )
    }
}

impl std::error::Error for CheckFailed {}

/// Maps an error chain to the process exit code.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match kind(err) {
        "lock_held" => EXIT_LOCKED,
        "usage" => EXIT_USAGE,
        _ => 1,
    }
}

/// The error's kind in the JSON error document: `lock_held` (exit 3),
/// `usage` (exit 2), `check_failed`, `interrupted`, `database` (a
/// PostgreSQL error) or `error` (exit 1).
pub fn kind(err: &anyhow::Error) -> &'static str {
    for cause in err.chain() {
        if cause.downcast_ref::<LockHeld>().is_some() {
            return "lock_held";
        }
        if cause.downcast_ref::<Usage>().is_some() {
            return "usage";
        }
        if cause.downcast_ref::<CheckFailed>().is_some() {
            return "check_failed";
        }
    }
    if format!("{err}").starts_with("interrupted by") {
        return "interrupted";
    }
    if crate::db::sqlstate(err).is_some() {
        return "database";
    }
    "error"
}

/// The one JSON document a failed run prints on stdout with `--format json`:
/// `{"error": "...", "kind": "...", "exit_code": N}` (plus `sqlstate` for a
/// PostgreSQL error). `None` when the command already printed its report
/// (a failing `status --check`).
pub fn json_document(err: &anyhow::Error) -> Option<serde_json::Value> {
    let kind = kind(err);
    if kind == "check_failed" {
        return None;
    }
    let mut doc = serde_json::json!({
        "error": format!("{err:#}"),
        "kind": kind,
        "exit_code": exit_code(err),
    });
    if let Some(code) = crate::db::sqlstate(err) {
        doc["sqlstate"] = serde_json::Value::String(code);
    }
    Some(doc)
}

/// Writing to a closed pipe (`cdpctl status | head`) is not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
