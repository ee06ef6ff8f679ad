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

/// Maps an error chain to the process exit code.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<LockHeld>().is_some() {
            return EXIT_LOCKED;
        }
        if cause.downcast_ref::<Usage>().is_some() {
            return EXIT_USAGE;
        }
    }
    1
}

/// Writing to a closed pipe (`cdpctl status | head`) is not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
