use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cdpctl::cli::Cli::parse();
    match cdpctl::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if cdpctl::error::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(cdpctl::error::exit_code(&err))
        }
    }
}
