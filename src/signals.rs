//! Ctrl-C / SIGTERM as a future, so long jobs stop between (or cancel inside)
//! batches and keep their last committed checkpoint.

/// Resolves with the signal's name when SIGINT or SIGTERM arrives.
pub async fn interrupted() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return "Ctrl-C";
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "Ctrl-C",
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// What a command says when a signal stopped it.
pub fn interrupted_message(sig: &str) -> String {
    format!("interrupted by {sig}: the running statements were cancelled server-side and their transactions rolled back; committed work is kept, rerun to continue")
}

/// Set while a `--watch` loop handles the first signal itself (finishing
/// its batch); the top level then cancels only on a second signal.
static GRACEFUL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True when a [`StopFlag`] takes care of the first signal.
pub fn graceful() -> bool {
    GRACEFUL.load(std::sync::atomic::Ordering::SeqCst)
}

/// A flag set once a signal has arrived; `--watch` loops check it between
/// rounds and finish the current batch first.
#[derive(Clone, Default)]
pub struct StopFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl StopFlag {
    /// Starts a background task that sets the flag on SIGINT/SIGTERM.
    pub fn install() -> Self {
        GRACEFUL.store(true, std::sync::atomic::Ordering::SeqCst);
        let flag = Self::default();
        let f = flag.clone();
        tokio::spawn(async move {
            let sig = interrupted().await;
            eprintln!("{sig} received: finishing the current batch, then stopping");
            f.0.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        flag
    }

    /// Sets the flag (a programmatic stop, e.g. at the end of `serve`).
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sleeps for `d` or until the flag is set, whichever comes first.
    pub async fn sleep(&self, d: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while !self.is_set() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// Exponential back-off for reconnecting: 1 s, 2 s, 4 s, … at most 30 s.
#[derive(Debug, Default)]
pub struct Backoff(u32);

impl Backoff {
    /// The next wait.
    pub fn step(&mut self) -> std::time::Duration {
        let d = std::time::Duration::from_secs((1u64 << self.0.min(5)).min(30));
        self.0 += 1;
        d
    }

    /// After a success: start again at 1 s.
    pub fn reset(&mut self) {
        self.0 = 0;
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::Backoff;

    #[test]
    fn doubles_up_to_thirty_seconds_and_resets() {
        let mut b = Backoff::default();
        let s: Vec<u64> = (0..8).map(|_| b.step().as_secs()).collect();
        assert_eq!(s, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.step().as_secs(), 1);
    }
}
