//! Command-line interface: global flags shared by every command and the
//! subcommand list. Each subcommand's flags live in its own module.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::commands;
use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "cdpctl",
    version,
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
    /// Seed a realistic sample CDP and run the pipeline end to end
    Demo(commands::demo::Args),
    /// Recalculate rule-based contact groups for the entities that changed
    CalcAudiences(commands::calc_audiences::Args),
    /// Print shell completions
    Completions(commands::completions::Args),
}
