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
