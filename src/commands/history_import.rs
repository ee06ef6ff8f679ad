//! `cdpctl history-import`: load existing campaign history exports (NDJSON).

use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use serde_json::json;

use crate::error::Usage;
use crate::history::import::{self, ImportOptions};
use crate::history::time;
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// NDJSON file, one change a line (customer_id, campaign_id, event_time,
    /// event_type created|updated|deleted, snapshot); "-" reads stdin
    #[arg(value_name = "FILE|-")]
    pub file: String,
    /// Write bad lines to the reject file and import the rest (default: a bad
    /// line fails the import and nothing is imported)
    #[arg(long)]
    pub skip_invalid: bool,
    /// Where --skip-invalid writes bad lines [default: FILE.rejected, or
    /// history-import.rejected.ndjson for stdin]
    #[arg(long, value_name = "PATH")]
    pub reject_file: Option<PathBuf>,
    /// Parse, stage and count, then roll back: nothing is imported
    #[arg(long)]
    pub dry_run: bool,
    /// Time zone (IANA name, e.g. UTC or Europe/Berlin) of event times
    /// without an offset [default: none; such lines are bad lines]
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let tz = match &args.tz {
        Some(z) => Some(time::parse_tz(z).map_err(|e| Usage(format!("--tz: {e}")))?),
        None => None,
    };
    let stdin = args.file == "-";
    let reject_file = args.reject_file.clone().unwrap_or_else(|| {
        if stdin {
            PathBuf::from("history-import.rejected.ndjson")
        } else {
            PathBuf::from(format!("{}.rejected", args.file))
        }
    });
    let opts = ImportOptions {
        source: if stdin {
            "stdin".into()
        } else {
            args.file.clone()
        },
        skip_invalid: args.skip_invalid,
        reject_file,
        dry_run: args.dry_run,
        tz,
    };
    let input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if stdin {
        // stdin as a tokio file (reads run on the blocking pool).
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating stdin")?;
        Box::new(tokio::fs::File::from_std(std::fs::File::from(fd)))
    } else {
        Box::new(tokio::fs::File::open(&args.file).await.with_context(|| {
            format!(
                "cannot open {}; check the path (or use - for stdin)",
                args.file
            )
        })?)
    };
    let reader = tokio::io::BufReader::with_capacity(1 << 20, input);
    let mut db = app.connect("history-import").await?;
    db.require_initialized().await?;
    db.lock_job("history-import").await?;
    let pb = app.out.progress(None, "lines read");
    let token = db.client.cancel_token();
    let tls = crate::db::tls::make_tls(db.params.ssl, db.params.root_cert.as_deref())?;
    let job = import::import(&mut db.client, &db.schemas, reader, &opts, &pb);
    let report = tokio::select! {
        res = job => res,
        sig = crate::signals::interrupted() => {
            let _ = token.cancel_query(tls).await;
            Err(anyhow!("interrupted by {sig}: the import was cancelled and rolled back; nothing was imported"))
        }
    };
    pb.finish_and_clear();
    let report = report?;
    app.out.emit(&json!(report), || {
        let mut s = format!(
            "{}{}: {} line(s), {} change(s) valid: {} added, {} already present",
            if report.dry_run {
                "dry run (nothing imported): "
            } else {
                ""
            },
            report.source,
            report.lines,
            report.valid,
            report.inserted,
            report.already_present
        );
        if report.rejected > 0 {
            s.push_str(&format!("\n{} bad line(s) skipped", report.rejected));
            if let Some(f) = &report.reject_file {
                s.push_str(&format!(", written to {f}"));
            }
            for e in &report.errors {
                s.push_str(&format!("\n  line {}: {}", e.line, e.error));
            }
            if report.rejected as usize > report.errors.len() {
                s.push_str(&format!(
                    "\n  ... and {} more",
                    report.rejected as usize - report.errors.len()
                ));
            }
        }
        s
    })
}
