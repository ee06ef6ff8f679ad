//! `cdpctl demo`: a newcomer's first run. Seeds the sample CDP into a database
//! (a throwaway local cluster when none is given) and runs every pipeline step.

use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use crate::cli::GlobalOpts;
use crate::config::Config;
use crate::demo::GenOptions;
use crate::pgcluster::Cluster;
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of customers to generate
    #[arg(long, default_value_t = 1000)]
    pub customers: u64,
    /// Random seed: the same seed gives the same data
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Keep the throwaway cluster running (and print how to connect)
    #[arg(long)]
    pub keep: bool,
    /// Into a database that already holds customer events: drop the CDP
    /// schemas (with everything in them) first and seed anew
    #[arg(long)]
    pub reset: bool,
}

pub async fn run(global: &GlobalOpts, args: Args) -> Result<()> {
    let config = match &global.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let mut cluster = None;
    let mut global = global.clone();
    if global.database_url.is_none() && global.config.is_none() {
        let dir = tempfile::Builder::new()
            .prefix("cdpctl-demo-")
            .tempdir()
            .context("creating a temporary directory for the demo cluster")?
            .keep();
        eprintln!(
            "no database given: starting a throwaway PostgreSQL cluster in {}",
            dir.display()
        );
        let c = Cluster::start(&dir, args.keep)?;
        let admin = App::with_config(
            &GlobalOpts {
                database_url: Some(c.url("postgres")),
                ..global.clone()
            },
            config.clone(),
        )?;
        let db = admin.connect("demo").await?;
        db.client.batch_execute("CREATE DATABASE cdp").await?;
        global.database_url = Some(c.url("cdp"));
        cluster = Some(c);
    }
    let app = App::with_config(&global, config)?;
    let res = pipeline(&app, &args, cluster.is_some()).await;
    if let Some(c) = &cluster {
        if args.keep {
            eprintln!(
                "the demo cluster keeps running: psql '{}'\nstop it with: pg_ctl -D {}/data stop (as the postgres user when root)",
                c.url("cdp"),
                c.root.display()
            );
        } else {
            eprintln!("removing the throwaway cluster (pass --keep to explore it with psql)");
        }
    }
    res
}

async fn pipeline(app: &App, args: &Args, throwaway: bool) -> Result<()> {
    let out = &app.out;
    let target = app.params.host_db();
    if !throwaway {
        crate::output::confirm_db(
            &target,
            &format!(
                "seed demo data ({} sample customers and their events) and run the pipeline?",
                args.customers
            ),
            app.global.yes,
        )?;
    }
    let mut db = app.connect("demo").await?;
    db.lock_job("demo").await?;
    refuse_or_reset(&mut db, &target, args, app.global.yes).await?;
    out.info(format!("database: {}", app.params.describe()));
    let applied = crate::schema::apply(&mut db).await?;
    crate::commands::init::post_migrate(&mut db).await?;
    out.info(format!("init: {} migration(s) applied", applied.len()));
    let opts = GenOptions {
        customers: args.customers,
        seed: args.seed,
        ..GenOptions::default()
    };
    let t = Instant::now();
    let schemas = db.schemas.clone();
    let seeded = crate::demo::load(&mut db.client, &schemas, &opts).await?;
    out.info(format!(
        "seeded {} customers, {} events in {:.1}s",
        seeded.customers,
        seeded.events,
        t.elapsed().as_secs_f64()
    ));
    let mut steps: Vec<(String, serde_json::Value)> = Vec::new();
    let stitched =
        crate::stitch::run(&mut db, &crate::stitch::StitchOptions::default(), out).await?;
    out.info(format!(
        "stitch: {} events into {} entities ({} refused edges) in {:.2}s",
        crate::output::num(stitched.events),
        crate::output::num(stitched.entities_created),
        crate::output::num(stitched.refused_blocked + stitched.refused_limit),
        stitched.duration_ms as f64 / 1000.0
    ));
    steps.push((
        "stitch".to_string(),
        crate::stitch::summary_json(&stitched)?,
    ));
    steps.push(crate::attrs::demo_step(&mut db, out).await?);
    let groups = crate::groups::demo(&mut db, opts.now).await?;
    out.info(match groups.get("groups").and_then(|g| g.as_object()) {
        Some(sizes) => format!(
            "calc-audiences: {}",
            sizes
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => format!(
            "calc-audiences: skipped, {}",
            groups["skipped"].as_str().unwrap_or("")
        ),
    });
    steps.push(("calc-audiences".into(), groups));
    steps.push((
        "audiences".into(),
        crate::demo::audiences::demo_step(&mut db, out).await?,
    ));
    let flushed = crate::segments::demo::run(&db, args.seed, args.customers).await?;
    out.info(format!(
        "flush-segment: a burst of single add/remove requests, coalesced and flushed\n{}",
        flushed.render()
    ));
    let t = flushed.totals();
    steps.push(("flush-segment".into(), json!({"read": flushed.read, "batches": flushed.batches, "coalesced": t.coalesced, "added": t.added, "removed": t.removed, "segments": flushed.segments.len()})));
    let served = crate::serve::demo::run(&db, out).await?;
    out.info(match served["skipped"].as_str() {
        Some(why) => format!("serve: skipped, {why}"),
        None => format!(
            "serve: one POST /audiences as the mparticle-audiences lambda sends it -> {}; one flush to a local Split-shaped receiver: {}",
            served["answer"].as_str().unwrap_or("-"),
            served["delivered"][0].as_str().unwrap_or("-")
        ),
    });
    steps.push(("serve".into(), served));
    let history = crate::history::demo::run(&mut db).await?;
    for line in &history.lines {
        out.info(line);
    }
    steps.push(("history".into(), history.json));
    // last: the production switch and its rollback, on demo legacy objects
    crate::demo::legacy::create_if_missing(&db).await?;
    let switch = crate::production::demo_round_trip(&db).await?;
    out.info(format!(
        "go-production/rollback: {}",
        switch["summary"].as_str().unwrap_or("-")
    ));
    steps.push(("production switch".into(), switch));
    let report = json!({"database": app.params.describe(), "seeded": seeded, "steps": steps});
    out.emit(&report, || {
        let mut t = crate::output::table(["seeded", "count"]);
        t.add_row(vec!["sources".to_string(), seeded.sources.to_string()]);
        t.add_row(vec![
            "event types".to_string(),
            seeded.event_types.to_string(),
        ]);
        t.add_row(vec![
            "stitching rules".to_string(),
            seeded.stitching_rules.to_string(),
        ]);
        t.add_row(vec![
            "attribute definitions".to_string(),
            seeded.attributes.to_string(),
        ]);
        t.add_row(vec![
            "customers".to_string(),
            crate::output::num(seeded.customers),
        ]);
        t.add_row(vec![
            "customer events".to_string(),
            crate::output::num(seeded.events),
        ]);
        let mut p = crate::output::table(["pipeline step", "result"]);
        for (name, v) in &steps {
            p.add_row(vec![name.clone(), summarize(name, v)]);
        }
        format!("{t}\n{p}")
    })
}

/// One line per pipeline step for the closing table (the JSON output keeps
/// every detail).
fn summarize(name: &str, v: &serde_json::Value) -> String {
    let n = |k: &str| {
        v[k].as_i64()
            .map(crate::output::num)
            .unwrap_or_else(|| "-".into())
    };
    if let Some(skipped) = v["skipped"].as_str() {
        return format!("skipped: {skipped}");
    }
    match name {
        "stitch" => format!(
            "{} events -> {} entities, {} merges, {} refused edges",
            n("events"),
            n("entities_created"),
            n("merges"),
            v["refused_blocked"].as_i64().unwrap_or(0) + v["refused_limit"].as_i64().unwrap_or(0)
        ),
        "calc-attrs" => format!(
            "{} entities, {} values written",
            n("entities"),
            n("values_written")
        ),
        "calc-audiences" => match v["groups"].as_object() {
            Some(g) => g
                .iter()
                .map(|(k, size)| format!("{k} {size}"))
                .collect::<Vec<_>>()
                .join(", "),
            None => v.to_string(),
        },
        "audiences" => format!(
            "{} legacy rows; {} campaigns migrated: {} contacts, {} unmapped references kept",
            n("legacy_rows_seeded"),
            n("migrated_campaigns"),
            n("migrated"),
            n("unmapped")
        ),
        "flush-segment" => format!(
            "{} requests -> {} added, {} removed ({} coalesced away)",
            n("read"),
            n("added"),
            n("removed"),
            n("coalesced")
        ),
        "serve" => format!(
            "POST /audiences -> {}; flushed {} request(s): {}",
            v["answer"].as_str().unwrap_or("-"),
            n("flushed"),
            v["delivered"][0].as_str().unwrap_or("-")
        ),
        "history" => format!(
            "{} changes captured; {} campaigns at {}",
            n("captured"),
            n("campaigns_at"),
            v["at"].as_str().unwrap_or("-")
        ),
        _ => v["summary"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string()),
    }
}

/// A database that already holds customer events is refused, unless
/// `--reset` (confirmed) drops the CDP schemas first.
async fn refuse_or_reset(
    db: &mut crate::db::Db,
    target: &str,
    args: &Args,
    yes: bool,
) -> Result<()> {
    if !db.relation_exists("ce", "customer_events").await? {
        return Ok(());
    }
    let has_events: bool = db
        .client
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {}.customer_events)",
                db.schemas.ce
            ),
            &[],
        )
        .await
        .context("looking for existing customer events")?
        .get(0);
    if !has_events {
        return Ok(());
    }
    let names: Vec<String> = db.schemas.raw().iter().map(|(_, n)| n.clone()).collect();
    if !args.reset {
        anyhow::bail!(
            "database {target} already holds customer events ({}.customer_events); demo seeds only a database without events: pass --reset to drop the schemas {} with all their data and seed anew, or give another database with --database-url",
            db.schemas.raw_name("ce"),
            names.join(", ")
        );
    }
    crate::output::confirm_db(
        target,
        &format!(
            "drop the schemas {} with all their data, then seed the demo?",
            names.join(", ")
        ),
        yes,
    )?;
    let tx = db.client.transaction().await?;
    for n in &names {
        tx.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            crate::db::quote_ident(n)
        ))
        .await
        .with_context(|| format!("dropping schema {n}"))?;
    }
    tx.commit().await.context("committing the reset")?;
    Ok(())
}
