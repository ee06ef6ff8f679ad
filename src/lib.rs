//! cdpctl: the operations toolkit for a customer data platform kept in
//! PostgreSQL. `main.rs` only parses and reports; everything lives here.
//!
//! Layout: `db` is the query layer, `schema` the migrations, `commands` the
//! thin per-command glue; the jobs live in their own modules, and pure
//! algorithms in modules without a database.

pub mod attrs;
pub mod audiences;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod demo;
pub mod dynamo;
pub mod error;
pub mod groups;
pub mod history;
pub mod monitoring;
pub mod output;
pub mod pgcluster;
pub mod production;
pub mod runs;
pub mod schema;
pub mod segments;
pub mod serve;
pub mod signals;
pub mod stitch;

use anyhow::Result;

/// `0.1.0 (eb3a6bf)`: the package version and the git commit it was built
/// from (`-dirty` when the sources differed from it, `commit unknown`
/// outside a git checkout); see `build.rs`.
pub const VERSION: &str = env!("CDPCTL_VERSION");
/// The short commit hash alone (`unknown` outside a git checkout).
pub const GIT_COMMIT: &str = env!("CDPCTL_GIT_COMMIT");
/// The paths (space-separated) whose changes against the commit make a
/// build `-dirty`: what goes into the binary.
pub const VERSION_SOURCES: &str = env!("CDPCTL_VERSION_SOURCES");

use cli::{Cli, Command, GlobalOpts};
use config::Config;
use db::{ConnectParams, Db};
use output::Output;

/// What every command gets: parsed global flags, the config, where to connect.
pub struct App {
    pub global: GlobalOpts,
    pub config: Config,
    pub params: ConnectParams,
    pub out: Output,
}

impl App {
    pub fn new(global: &GlobalOpts) -> Result<Self> {
        let config = match &global.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        Self::with_config(global, config)
    }

    pub fn with_config(global: &GlobalOpts, mut config: Config) -> Result<Self> {
        if let Some(region) = &global.region {
            config.dynamodb.region = Some(region.clone());
        }
        let params = ConnectParams::resolve(&config, global.database_url.as_deref())?;
        Ok(Self {
            global: global.clone(),
            config,
            params,
            out: Output {
                format: global.format,
                quiet: global.quiet,
                verbose: global.verbose,
            },
        })
    }

    /// Connects as `cdpctl <command>`.
    pub async fn connect(&self, command: &str) -> Result<Db> {
        Db::connect(&self.config, &self.params, command).await
    }
}

/// Runs a parsed command line on a fresh tokio runtime.
pub fn run(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(cli))
}

/// Runs a command. A job run (stitch, calc-attrs, ...; see
/// [`runs::job_name`]) is recorded in the run history: its start before it
/// begins, its end (outcome, error text, counts) after it returned,
/// whether it succeeded, failed or was interrupted.
pub async fn run_async(cli: Cli) -> Result<()> {
    let Cli { global, command } = cli;
    let Some(job) = runs::job_name(&command) else {
        return interruptible(dispatch(&global, command)).await;
    };
    let app = App::new(&global)?;
    let run = runs::start(&app, job).await?;
    let res = interruptible(dispatch_app(&app, command)).await;
    if let Some(run) = run {
        runs::finish(&app, run, &res).await;
    }
    res
}

/// On Ctrl-C or SIGTERM every statement the command has running is
/// cancelled server-side (its transaction rolls back) and the command
/// fails. A `--watch` loop finishes its batch on the first signal; a second
/// one cancels.
async fn interruptible(fut: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::pin!(fut);
    let mut signals = 0;
    loop {
        tokio::select! {
            res = &mut fut => return res,
            sig = signals::interrupted() => {
                signals += 1;
                if signals == 1 && signals::graceful() {
                    continue;
                }
                db::cancel_all().await;
                // let the command see its cancelled statement and roll back
                let msg = signals::interrupted_message(sig);
                return match tokio::time::timeout(std::time::Duration::from_secs(10), &mut fut).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) if format!("{e}").starts_with("interrupted by") => Err(e),
                    Ok(Err(e)) => Err(e.context(msg)),
                    Err(_) => Err(anyhow::anyhow!("{msg}")),
                };
            }
        }
    }
}

async fn dispatch(global: &GlobalOpts, command: Command) -> Result<()> {
    match command {
        Command::Completions(args) => commands::completions::run(args),
        Command::Man(args) => commands::man::run(args),
        Command::Demo(args) => commands::demo::run(global, args).await,
        command => dispatch_app(&App::new(global)?, command).await,
    }
}

async fn dispatch_app(app: &App, command: Command) -> Result<()> {
    match command {
        Command::Completions(args) => commands::completions::run(args),
        Command::Man(args) => commands::man::run(args),
        Command::Demo(args) => commands::demo::run(&app.global, args).await,
        Command::Init(args) => commands::init::run(app, args).await,
        Command::HistoryAt(args) => commands::history_at::run(app, args).await,
        Command::HistoryImport(args) => commands::history_import::run(app, args).await,
        Command::Status(args) => commands::status::run(app, args).await,
        Command::GoProduction(args) => commands::go_production::run(app, args).await,
        Command::Rollback(args) => commands::rollback::run(app, args).await,
        Command::MigrateAudiences(args) => commands::migrate_audiences::run(app, args).await,
        Command::Membership(args) => commands::membership::run(app, args).await,
        Command::FlushSegment(args) => commands::flush_segment::run(app, args).await,
        Command::Serve(args) => commands::serve::run(app, args).await,
        Command::Stitch(args) => commands::stitch::run(app, args).await,
        Command::CalcAttrs(args) => commands::calc_attrs::run(app, args).await,
        Command::ResetContext(args) => commands::reset_context::run(app, args).await,
        Command::CalcAudiences(args) => commands::calc_audiences::run(app, args).await,
    }
}
