//! `cdpctl calc-attrs`: attribute calculation for entities with new activity
//! (and every entity older than the refresh window).

use anyhow::{bail, Result};
use serde_json::json;

use crate::attrs::{self, CacheMode, CalcOptions, CalcSummary};
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recalculate every entity, keeping stored values until replaced
    #[arg(long, conflicts_with_all = ["from_scratch", "entity"])]
    pub all: bool,
    /// Delete every attribute value, then calculate every entity (asks first)
    #[arg(long, conflicts_with_all = ["attribute", "entity"])]
    pub from_scratch: bool,
    /// Only this attribute (repeatable); entities stay due for the others
    #[arg(long, value_name = "ID")]
    pub attribute: Vec<String>,
    /// Compute one entity and print its values (writes nothing without --write)
    #[arg(long, value_name = "UUID")]
    pub entity: Option<String>,
    /// With --entity: store the computed values
    #[arg(long, requires = "entity")]
    pub write: bool,
    /// Validate every definition and context query against the database; writes nothing
    #[arg(long, conflicts_with_all = ["all", "from_scratch", "entity", "attribute"])]
    pub check: bool,
    /// Rebuild the cache tables even if they are fresh
    #[arg(long, conflicts_with = "no_cache")]
    pub refresh_cache: bool,
    /// Leave the cache tables alone
    #[arg(long)]
    pub no_cache: bool,
    /// Entities per batch (default: attributes.batch_size, 100000)
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Evaluate and report what would change; write nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let mut db = app.connect("calc-attrs").await?;
    db.require_initialized().await?;
    if args.check {
        let lines = attrs::check(&mut db).await?;
        let bad = lines.iter().filter(|l| !l.ok).count();
        app.out
            .emit(&json!({"ok": bad == 0, "checked": lines}), || {
                let mut t = crate::output::table(["attribute", "type", "result"]);
                for l in &lines {
                    t.add_row(vec![
                        l.attribute.clone(),
                        l.kind.clone().unwrap_or_default(),
                        l.error.clone().unwrap_or_else(|| "ok".into()),
                    ]);
                }
                t.to_string()
            })?;
        if bad > 0 {
            bail!("{bad} of {} definitions failed the check; fix them in the attributes/context tables", lines.len());
        }
        return Ok(());
    }
    attrs::lock(&db).await?;
    if args.from_scratch && !args.dry_run {
        crate::output::confirm_db(
            &app.params.host_db(),
            &format!(
                "delete every attribute value in {}.customer_attributes and recalculate all entities?",
                db.schemas.raw_name("attr")
            ),
            app.global.yes,
        )?;
    }
    let opts = CalcOptions {
        all: args.all,
        from_scratch: args.from_scratch,
        attributes: args.attribute,
        entity: args.entity,
        write: args.write,
        dry_run: args.dry_run,
        cache: if args.refresh_cache {
            CacheMode::Refresh
        } else if args.no_cache {
            CacheMode::Skip
        } else {
            CacheMode::Auto
        },
        batch_size: args.batch_size,
    };
    let sum = attrs::calculate(&mut db, &opts, &app.out).await?;
    app.out
        .emit(&serde_json::to_value(&sum)?, || render(&sum, &opts))
}

fn render(sum: &CalcSummary, opts: &CalcOptions) -> String {
    let mut s = String::new();
    if let Some(values) = &sum.entity {
        let mut t = crate::output::table(["attribute", "type", "value", "stored", ""]);
        for v in values {
            t.add_row(vec![
                v.attribute.clone(),
                v.kind.clone(),
                v.values.join("\n"),
                v.stored.join("\n"),
                if v.changed {
                    "changed".into()
                } else {
                    String::new()
                },
            ]);
        }
        s.push_str(&t.to_string());
        s.push('\n');
        if opts.write {
            s.push_str(&format!(
                "stored: {} value(s) written, {} removed\n",
                sum.values_written, sum.values_deleted
            ));
        } else {
            s.push_str("nothing written (pass --write to store these values)\n");
        }
        return s;
    }
    let mut t = crate::output::table(["calc-attrs", ""]);
    let n = crate::output::num;
    t.add_row(vec![
        "mode".to_string(),
        if sum.dry_run {
            format!("{} (dry run: nothing written)", sum.mode)
        } else {
            sum.mode.clone()
        },
    ]);
    t.add_row(vec!["attributes".to_string(), sum.attributes.to_string()]);
    t.add_row(vec![
        "entities calculated".to_string(),
        n(sum.entities_calculated as i64),
    ]);
    t.add_row(vec![
        if sum.dry_run {
            "entities that would change"
        } else {
            "entities changed"
        }
        .to_string(),
        n(sum.entities_changed as i64),
    ]);
    t.add_row(vec![
        "values written".to_string(),
        n(sum.values_written as i64),
    ]);
    t.add_row(vec![
        "values removed".to_string(),
        n(sum.values_deleted as i64),
    ]);
    if !sum.contexts_refreshed.is_empty() {
        t.add_row(vec![
            "context recomputed".to_string(),
            sum.contexts_refreshed
                .iter()
                .map(|c| format!("{} = {}", c.key, c.value.as_deref().unwrap_or("NULL")))
                .collect::<Vec<_>>()
                .join("\n"),
        ]);
    }
    if !sum.contexts_stale.is_empty() {
        t.add_row(vec![
            "context stale".to_string(),
            sum.contexts_stale.join(", "),
        ]);
    }
    t.add_row(vec![
        "caches".to_string(),
        if sum.cache_refreshed {
            "refreshed"
        } else {
            "fresh, kept"
        }
        .to_string(),
    ]);
    for sk in &sum.skipped {
        t.add_row(vec![
            format!("skipped in {}", sk.attribute),
            format!(
                "{} non-numeric value(s), {} non-numeric weight(s)",
                sk.not_numeric, sk.bad_weight
            ),
        ]);
    }
    t.add_row(vec!["time".to_string(), format!("{:.2}s", sum.seconds)]);
    s.push_str(&t.to_string());
    s
}
