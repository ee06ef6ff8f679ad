//! Command-line interface: global flags shared by every command and the
//! subcommand list. Each subcommand's flags live in its own module.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::commands;
use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "cdpctl",
    version = crate::VERSION,
    about = "Operate a customer data platform kept in PostgreSQL: stitching, attributes, audiences, history, production switch",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    /// JSON configuration file (see examples/cdpctl.json)
    #[arg(long, global = true, env = "CDPCTL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL; overrides the config's `postgresql` block
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    /// Output format: a table for people, one JSON document for machines
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain
    /// (AWS_REGION, the profile)
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// Answer yes to confirmations (required without a terminal)
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// Only errors on stderr
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr
    #[arg(long, short = 'v', global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade every schema, table, index and trigger (idempotent)
    Init(commands::init::Args),
    /// Backlogs at a glance: what exists and what is waiting
    Status(commands::status::Args),
    /// Switch the public views to the cdpctl tables, keeping backups (checked, atomic)
    GoProduction(commands::go_production::Args),
    /// Undo go-production: restore the backups and the saved view definitions
    Rollback(commands::rollback::Args),
    /// Move campaign audiences from contact references to contact ids (through DynamoDB)
    MigrateAudiences(commands::migrate_audiences::Args),
    /// Which of these campaigns contain a contact (reads both audience structures)
    Membership(commands::membership::Args),
    /// Profile stitching: resolve queued events into customer entities; `explain` shows why
    Stitch(commands::stitch::Args),
    /// Calculate customer attributes for entities with new activity
    CalcAttrs(commands::calc_attrs::Args),
    /// Mark context keys stale (or recompute them now)
    ResetContext(commands::reset_context::Args),
    /// Seed a realistic sample CDP and run the pipeline end to end
    Demo(commands::demo::Args),
    /// A customer's campaigns as they were at a moment; --diff-from, --timeline
    HistoryAt(commands::history_at::Args),
    /// Load existing campaign history exports (NDJSON), idempotently
    HistoryImport(commands::history_import::Args),
    /// Drain the queue of one-at-a-time segment add/remove requests in coalesced batches
    FlushSegment(commands::flush_segment::Args),
    /// HTTP ingest replacing the mparticle-audiences-batch server: durable queue, flushes to Split
    Serve(commands::serve::Args),
    /// Recalculate rule-based contact groups for the entities that changed
    CalcAudiences(commands::calc_audiences::Args),
    /// Print shell completions
    Completions(commands::completions::Args),
    /// Print a manual page (or write them all with --out-dir)
    Man(commands::man::Args),
}
