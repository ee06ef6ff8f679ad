//! One module per command: an `Args` struct and a `run` that glues the job
//! code to the output. No SQL and no algorithms here.

pub mod calc_audiences;
pub mod completions;
pub mod demo;
pub mod init;
pub mod status;
