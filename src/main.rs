use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cdpctl::cli::Cli::parse();
    let json = cli.global.format == cdpctl::output::Format::Json;
    let result = cdpctl::run(cli);
    // a report already on stdout (failed checks) gets no second document
    let reported = cdpctl::output::report_counts().is_some();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if cdpctl::error::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            if json && !reported {
                if let Some(doc) = cdpctl::error::json_document(&err) {
                    println!("{doc}");
                }
            }
            ExitCode::from(cdpctl::error::exit_code(&err))
        }
    }
}
