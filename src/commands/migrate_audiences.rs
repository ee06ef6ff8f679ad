//! `cdpctl migrate-audiences`: move campaign audiences from contact
//! references to contact ids through the DynamoDB mapping table.

use anyhow::{bail, Result};

use crate::audiences::{self, MigrateOptions, MigrationSettings, Selection};
use crate::dynamo::ContactMapper;
use crate::output::num;
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Campaign to migrate (repeatable)
    #[arg(long = "campaign", value_name = "ID", num_args = 1.., conflicts_with = "all")]
    pub campaigns: Vec<i64>,
    /// Every campaign that has rows in the legacy contact-reference table
    #[arg(long)]
    pub all: bool,
    /// Only campaigns with at least N legacy references
    #[arg(long, value_name = "N")]
    pub min_references: Option<i64>,
    /// Only campaigns with at most N legacy references
    #[arg(long, value_name = "N")]
    pub max_references: Option<i64>,
    /// BatchGetItem requests in flight [default: audiences.migration.concurrency, 8]
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// References per transaction and checkpoint [default: audiences.migration.batch_size, 5000]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Start the chosen campaigns over from their first reference (rows merge, nothing is duplicated)
    #[arg(long)]
    pub restart: bool,
    /// After verification, delete the migrated campaigns' legacy rows (asks first)
    #[arg(long)]
    pub drop_source: bool,
    /// Print per campaign the references left and the DynamoDB reads needed; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let settings = MigrationSettings::from_config(&app.config)?;
    if args.concurrency == Some(0) || args.batch_size == Some(0) {
        bail!("--concurrency and --batch-size must be at least 1");
    }
    let mut db = app.connect("migrate-audiences").await?;
    db.require_initialized().await?;
    db.lock_job("migrate-audiences").await?;
    let mut mapper = ContactMapper::new(&app.config.dynamodb)
        .await?
        .with_concurrency(args.concurrency.unwrap_or(settings.concurrency));
    mapper.max_attempts = settings.max_attempts;
    let opts = MigrateOptions {
        selection: Selection {
            campaigns: args.campaigns,
            all: args.all,
            min_references: args.min_references,
            max_references: args.max_references,
        },
        batch_size: args.batch_size.unwrap_or(settings.batch_size),
        dry_run: args.dry_run,
        drop_source: args.drop_source,
        restart: args.restart,
        on_batch: None,
    };
    if opts.drop_source && !opts.dry_run {
        crate::output::confirm_db(
            &app.params.host_db(),
            "delete the legacy contact-reference rows of every chosen campaign once its migration is verified?",
            app.global.yes,
        )?;
    }
    // like Db::cancellable, but the job needs the session mutably (transactions)
    let token = db.client.cancel_token();
    let params = db.params.clone();
    let summary = tokio::select! {
        res = audiences::migrate(&mut db, &mapper, &opts, &app.out) => res?,
        sig = crate::signals::interrupted() => {
            let tls = crate::db::tls::make_tls(params.ssl, params.root_cert.as_deref())?;
            let _ = token.cancel_query(tls).await;
            bail!("interrupted by {sig}: the running batch was rolled back; committed batches and their checkpoints are kept, rerun to resume");
        }
    };
    let doc = serde_json::to_value(&summary)?;
    app.out.emit(&doc, || {
        let mut t = crate::output::table(if summary.dry_run {
            vec!["campaign", "references", "migrated", "unmapped", "to process", "DynamoDB requests", "state"]
        } else {
            vec!["campaign", "references", "migrated", "unmapped", "duration", "state", "note"]
        });
        for c in &summary.campaigns {
            let mut row = vec![
                c.campaign_id.to_string(),
                num(c.references),
                num(c.migrated),
                num(c.unmapped),
            ];
            if summary.dry_run {
                row.push(num(c.remaining));
                row.push(num(c.dynamodb_requests.unwrap_or(0)));
                row.push(c.state.clone());
            } else {
                row.push(format!("{:.1}s", c.duration_ms as f64 / 1000.0));
                row.push(c.state.clone());
                row.push(c.error.clone().or_else(|| c.note.clone()).unwrap_or_default());
            }
            t.add_row(row);
        }
        let mut s = t.to_string();
        if summary.dry_run {
            s.push_str("\ndry run: nothing was changed");
        } else {
            s.push_str(&format!(
                "\n{} references processed in {:.1}s; DynamoDB: {} requests, {} keys, {} found, {} retries",
                num(summary.processed),
                summary.duration_ms as f64 / 1000.0,
                num(summary.dynamodb.requests as i64),
                num(summary.dynamodb.keys as i64),
                num(summary.dynamodb.found as i64),
                num((summary.dynamodb.unprocessed_retries
                    + summary.dynamodb.throttle_retries
                    + summary.dynamodb.error_retries) as i64),
            ));
        }
        s
    })?;
    let failed = summary.failed();
    if failed > 0 {
        bail!(
            "{failed} campaign(s) failed verification (see the table); their legacy rows were kept"
        );
    }
    Ok(())
}
