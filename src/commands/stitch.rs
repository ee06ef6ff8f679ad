//! `cdpctl stitch`: incremental profile stitching, `--from-scratch`, and
//! `explain`.

use anyhow::Result;

use crate::stitch::{self, StitchOptions};
use crate::App;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub explain: Option<Sub>,
    /// Forget every stitching result and stitch all events from the beginning (asks first)
    #[arg(long)]
    pub from_scratch: bool,
    /// Most queued events per batch (one transaction); default: stitching.batch_size
    #[arg(long, value_name = "N")]
    pub batch_size: Option<u64>,
    /// Stop after N batches; the rest stays queued for the next run
    #[arg(long, value_name = "N")]
    pub max_batches: Option<u64>,
    /// Show what would run (full or incremental, queued events); change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Why items share an entity: the entity, its identifiers, its merges, and
    /// for two items the shortest chain of events and identifiers linking them
    Explain(ExplainArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// An event id (event:UUID or UUID), an entity id (entity:UUID) or an
    /// identifier ATTRIBUTE=VALUE; give two to see what links them
    #[arg(required = true, num_args = 1..=2, value_name = "ITEM")]
    pub items: Vec<String>,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let mut db = app.connect("stitch").await?;
    db.require_initialized().await?;
    if let Some(Sub::Explain(e)) = args.explain {
        let ex = stitch::explain::explain(&db, &e.items).await?;
        return app
            .out
            .emit(&serde_json::to_value(&ex)?, || stitch::explain::render(&ex));
    }
    if args.from_scratch && !args.dry_run {
        crate::output::confirm_db(
            &app.params.host_db(),
            "stitch from scratch: every entity id, merge and attribute value is recomputed (customer_entities is truncated)",
            app.global.yes,
        )?;
    }
    let opts = StitchOptions {
        from_scratch: args.from_scratch,
        batch_size: args.batch_size,
        max_batches: args.max_batches,
        dry_run: args.dry_run,
    };
    // Ctrl-C cancels the running batch server-side (see stitch::run).
    let sum = stitch::run(&mut db, &opts, &app.out).await?;
    app.out.emit(&stitch::summary_json(&sum)?, || {
        let mut t = crate::output::table(["stitching", "value"]);
        for (k, v) in sum.rows() {
            t.add_row(vec![k.to_string(), v]);
        }
        let mut s = t.to_string();
        if sum.dry_run {
            s.push_str("\ndry run: nothing was changed");
        }
        s
    })
}
