//! One module per command: an `Args` struct and a `run` that glues the job
//! code to the output. No SQL and no algorithms here.

pub mod calc_attrs;
pub mod calc_audiences;
pub mod completions;
pub mod demo;
pub mod flush_segment;
pub mod go_production;
pub mod history_at;
pub mod history_import;
pub mod init;
pub mod man;
pub mod membership;
pub mod migrate_audiences;
pub mod reset_context;
pub mod rollback;
pub mod serve;
pub mod status;
pub mod stitch;

/// After a lost connection in a `--watch` loop: says so on stderr, waits the
/// next back-off step (or until stopped) and reconnects. `None` when stopped
/// or when the server is still unreachable (the loop tries again).
pub(crate) async fn reconnect(
    app: &crate::App,
    command: &str,
    stop: &crate::signals::StopFlag,
    backoff: &mut crate::signals::Backoff,
    lost: &anyhow::Error,
) -> Option<crate::db::Db> {
    let wait = backoff.step();
    app.out.info(format!(
        "{command} --watch: connection lost ({lost:#}); reconnecting in {wait:?}"
    ));
    stop.sleep(wait).await;
    if stop.is_set() {
        return None;
    }
    match app.connect(command).await {
        Ok(d) => Some(d),
        Err(e) => {
            app.out.info(format!("{command} --watch: {e:#}"));
            None
        }
    }
}
