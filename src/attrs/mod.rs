//! Attribute calculation (`cdpctl calc-attrs`): for every customer entity
//! that is due, evaluate every attribute definition over the entity's events
//! and store the values that changed.
//!
//! Engine: per batch of entities, PostgreSQL evaluates all built-in
//! attributes' configured expressions in one pass over the batch's events
//! (on the read-only evaluation session, see [`crate::db::eval`]) and
//! streams the values out in binary;
//! [`aggregate`] reduces them per (entity, attribute) in memory; custom
//! queries run set-based (one LATERAL query per attribute over the batch,
//! reading the batch's events copied once into a temporary table). The new
//! values are diffed against the stored ones, and only changed (entity,
//! attribute) pairs are written (pairs staged for a set-based DELETE of the
//! old values, new values COPYed into the table), journalled in
//! `entity_changes` in the same transaction.

pub mod aggregate;
pub mod cache;
pub mod context;
pub mod copy;
pub mod decimal;
pub mod definition;
pub mod plan;

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _, Result};
use futures_util::{pin_mut, StreamExt};
use postgres_types::Type;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::binary_copy::BinaryCopyOutStream;

use crate::commands::status::Item;
use crate::config::Config;
use crate::db::{quote_literal, Db, PgResultExt};
use crate::output::Output;
use aggregate::Accumulator;
use copy::{Raw, TextCopy};
use decimal::Decimal;
use definition::{Definition, Kind};
use plan::{Layout, Plan, BATCH, STAGE};

/// The `attributes` section of the config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Entities calculated longer ago than this are recalculated.
    #[serde(default = "d_refresh")]
    pub refresh_hours: f64,
    /// Context keys older than this are recomputed before a calculation.
    #[serde(default = "d_day")]
    pub context_max_age_hours: f64,
    /// The cache tables are rebuilt when older than this.
    #[serde(default = "d_day")]
    pub cache_max_age_hours: f64,
    /// Entities per batch (one read-only pass + one write transaction each).
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Values kept per attribute in cached_attribute_values_counts.
    #[serde(default = "d_cache_values")]
    pub cache_values_per_attribute: i64,
}

fn d_refresh() -> f64 {
    48.0
}
fn d_day() -> f64 {
    24.0
}
fn d_batch() -> usize {
    100_000
}
fn d_cache_values() -> i64 {
    1000
}

impl Default for Settings {
    fn default() -> Self {
        serde_json::from_str("{}").unwrap()
    }
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Result<Settings> {
        let v = serde_json::Value::Object(cfg.attributes.clone());
        let s: Settings = serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                anyhow!("config: section \"attributes\": {inner}; see examples/cdpctl.json")
            } else {
                anyhow!("config: key \"attributes.{path}\": {inner}; see examples/cdpctl.json")
            }
        })?;
        if s.batch_size == 0 {
            bail!("config: key \"attributes.batch_size\": must be at least 1");
        }
        for (k, v) in [
            ("refresh_hours", s.refresh_hours),
            ("context_max_age_hours", s.context_max_age_hours),
            ("cache_max_age_hours", s.cache_max_age_hours),
        ] {
            if v.is_nan() || v < 0.0 {
                bail!("config: key \"attributes.{k}\": must be a number of hours >= 0, got {v}");
            }
        }
        Ok(s)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// Rebuild the caches when stale.
    #[default]
    Auto,
    /// Rebuild them now.
    Refresh,
    /// Leave them alone.
    Skip,
}

/// What to calculate.
#[derive(Debug, Clone, Default)]
pub struct CalcOptions {
    /// Every entity, keeping the stored values until they are replaced.
    pub all: bool,
    /// Delete every value first, then calculate every entity (the caller
    /// asks for confirmation).
    pub from_scratch: bool,
    /// Only these attributes (entities are then not marked calculated).
    pub attributes: Vec<String>,
    /// Only this entity; writes nothing unless `write`.
    pub entity: Option<String>,
    pub write: bool,
    /// Evaluate and report, write nothing.
    pub dry_run: bool,
    pub cache: CacheMode,
    /// Overrides `attributes.batch_size`.
    pub batch_size: Option<usize>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SkipCount {
    pub attribute: String,
    pub not_numeric: u64,
    pub bad_weight: u64,
}

/// One attribute of one entity (`--entity`).
#[derive(Debug, Clone, Serialize)]
pub struct EntityValue {
    pub attribute: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub values: Vec<String>,
    pub stored: Vec<String>,
    pub changed: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CalcSummary {
    pub mode: String,
    pub dry_run: bool,
    pub attributes: usize,
    pub entities_due: u64,
    pub entities_calculated: u64,
    pub entities_changed: u64,
    pub values_written: u64,
    pub values_deleted: u64,
    pub batches: u64,
    pub contexts_refreshed: Vec<context::ContextValue>,
    pub contexts_stale: Vec<String>,
    pub cache_refreshed: bool,
    pub skipped: Vec<SkipCount>,
    pub seconds: f64,
    /// Where the time went: evaluating built-in attributes (the pass and
    /// the aggregation), custom queries, diffing and writing.
    pub seconds_pass: f64,
    pub seconds_custom: f64,
    pub seconds_write: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<Vec<EntityValue>>,
}

/// Reads and validates the definitions (all, or the ids in `only`).
pub async fn load_definitions(db: &Db, only: &[String]) -> Result<Vec<Definition>> {
    let rows = db
        .client
        .query(
            &db.schemas
                .substitute("SELECT id, definition FROM {{attr}}.attributes ORDER BY id"),
            &[],
        )
        .await
        .pg_context(|| "reading attribute definitions".into())?;
    let mut errors = Vec::new();
    let mut defs = Vec::new();
    let mut ids = Vec::new();
    for r in &rows {
        let id: String = r.get(0);
        ids.push(id.clone());
        if !only.is_empty() && !only.contains(&id) {
            continue;
        }
        let doc: Option<serde_json::Value> = r.get(1);
        match Definition::parse(&id, doc.as_ref()) {
            Ok(d) => defs.push(d),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let unknown: Vec<&String> = only.iter().filter(|a| !ids.contains(a)).collect();
    if !unknown.is_empty() {
        bail!(
            "unknown attribute {}; defined in {}.attributes: {}",
            unknown
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", "),
            db.schemas.raw_name("attr"),
            if ids.is_empty() {
                "none".into()
            } else {
                ids.join(", ")
            }
        );
    }
    if !errors.is_empty() {
        bail!(invalid(&errors));
    }
    Ok(defs)
}

fn invalid(errors: &[String]) -> String {
    format!(
        "{} attribute definition{} invalid; nothing was written:\n  {}",
        errors.len(),
        if errors.len() == 1 { " is" } else { "s are" },
        errors.join("\n  ")
    )
}

/// Parses, validates against the database and plans the definitions.
pub async fn build_plan(db: &Db, only: &[String]) -> Result<Plan> {
    let defs = load_definitions(db, only).await?;
    plan::ensure_temp_tables(db).await?;
    plan::prepare(db, defs)
        .await
        .map_err(|e| anyhow!(invalid(&e)))
}

/// The hook where follow-up work of a successful write runs (such as
/// keeping a pivoted attributes table in step). Nothing yet.
pub async fn after_write(db: &mut Db, _summary: &CalcSummary) -> Result<()> {
    // In production, keep public.pivoted_customer_attributes at one column
    // per attribute (a no-op otherwise, or when already in step).
    crate::production::sync_pivot(db).await?;
    Ok(())
}

/// Takes the calc-attrs job lock (shared by calc-attrs and reset-context).
pub async fn lock(db: &Db) -> Result<()> {
    db.lock_job("calc-attrs").await
}

/// An entity selected for calculation: id and the row version seen.
struct Due {
    id: String,
    seen: String,
}

/// `attrs::calculate`: runs one calculation as the options say.
pub async fn calculate(db: &mut Db, opts: &CalcOptions, out: &Output) -> Result<CalcSummary> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let settings = Settings::from_config(&db.config)?;
    let batch_size = opts.batch_size.unwrap_or(settings.batch_size).max(1);
    let plan = build_plan(db, &opts.attributes).await?;
    let entity_mode = opts.entity.is_some();
    let writes = !opts.dry_run && (!entity_mode || opts.write);
    let mut sum = CalcSummary {
        mode: if entity_mode {
            "entity"
        } else if opts.from_scratch {
            "from-scratch"
        } else if opts.all {
            "all"
        } else {
            "incremental"
        }
        .into(),
        dry_run: opts.dry_run,
        attributes: plan.defs.len(),
        ..Default::default()
    };
    let s = db.schemas.clone();

    // Context first: custom queries read it, on the evaluation session, so
    // it is committed before the values are calculated.
    let stale = if opts.from_scratch {
        context::resolve_keys(db, &[]).await?
    } else {
        context::stale_keys(db, settings.context_max_age_hours).await?
    };
    if !stale.is_empty() {
        if writes {
            out.info(format!("recomputing {} context key(s)", stale.len()));
            sum.contexts_refreshed = context::refresh(db, &stale).await?;
        } else {
            sum.contexts_stale = stale;
        }
    }

    // --from-scratch replaces every value in one transaction: until it
    // commits everyone keeps seeing the old values, and a failed or killed
    // run leaves them as they were.
    let atomic = opts.from_scratch && !opts.dry_run;
    if atomic {
        db.client
            .batch_execute("BEGIN")
            .await
            .pg_context(|| "starting the --from-scratch transaction".into())?;
        match db
            .client
            .execute(
                &s.substitute("DELETE FROM {{attr}}.customer_attributes"),
                &[],
            )
            .await
            .pg_context(|| "clearing attribute values for --from-scratch".into())
        {
            Ok(n) => sum.values_deleted = n,
            Err(e) => {
                let _ = db.client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        }
    }
    let res = calculate_batches(
        db, opts, &settings, &plan, batch_size, atomic, &mut sum, out,
    )
    .await;
    if atomic {
        match &res {
            Ok(()) => db
                .client
                .batch_execute("COMMIT")
                .await
                .pg_context(|| "committing --from-scratch".into())?,
            Err(_) => {
                let _ = db.client.batch_execute("ROLLBACK").await;
            }
        }
    }
    if let Err(e) = res {
        return Err(if atomic {
            e.context("--from-scratch rolled back: the previous attribute values are kept")
        } else {
            e
        });
    }
    if writes && !entity_mode {
        let refresh = match opts.cache {
            CacheMode::Skip => false,
            CacheMode::Refresh => true,
            CacheMode::Auto => {
                opts.from_scratch || cache::is_stale(db, settings.cache_max_age_hours).await?
            }
        };
        if refresh {
            cache::refresh(db, settings.cache_values_per_attribute).await?;
            sum.cache_refreshed = true;
        }
    }
    sum.seconds = started.elapsed().as_secs_f64();
    if writes {
        if !entity_mode {
            record_run(db, &sum, started_at).await?;
        }
        after_write(db, &sum).await?;
    }
    Ok(sum)
}

/// The batches of one calculation: select the due entities by key, evaluate,
/// write. With `nested` the writes go into the caller's open transaction.
#[allow(clippy::too_many_arguments)]
async fn calculate_batches(
    db: &Db,
    opts: &CalcOptions,
    settings: &Settings,
    plan: &Plan,
    batch_size: usize,
    nested: bool,
    sum: &mut CalcSummary,
    out: &Output,
) -> Result<()> {
    let s = db.schemas.clone();
    let partial = !opts.attributes.is_empty();
    let entity_mode = opts.entity.is_some();
    let writes = !opts.dry_run && (!entity_mode || opts.write);
    // Which entities.
    let cutoff: chrono::NaiveDateTime = db
        .client
        .query_one(
            "SELECT (now() AT TIME ZONE 'UTC') - make_interval(secs => $1::float8 * 3600)",
            &[&settings.refresh_hours],
        )
        .await
        .pg_context(|| "reading the clock".into())?
        .get(0);
    let every = opts.all || opts.from_scratch;
    let due_sql = if let Some(id) = &opts.entity {
        uuid_check(id)?;
        format!("id = {}::uuid", quote_literal(id))
    } else if every {
        "true".to_string()
    } else {
        "(calculated IS NULL OR calculated < $1)".to_string()
    };
    let params: Vec<&(dyn postgres_types::ToSql + Sync)> = if every || entity_mode {
        vec![]
    } else {
        vec![&cutoff]
    };
    let total: i64 = if opts.from_scratch && opts.dry_run {
        db.client
            .query_one(
                &s.substitute("SELECT count(*) FROM {{attr}}.customer_entities"),
                &[],
            )
            .await
    } else {
        db.client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.customer_entities WHERE {due_sql}",
                    s.attr
                ),
                &params,
            )
            .await
    }
    .pg_context(|| "counting due entities".into())?
    .get(0);
    if let Some(id) = &opts.entity {
        if total == 0 {
            bail!(
                "entity {id} not found in {}.customer_entities; check the id (stitching creates entities)",
                s.raw_name("attr")
            );
        }
    }
    sum.entities_due = total as u64;
    let pb = out.progress(Some(total as u64), "calculating attributes");
    let mut skipped_nn = vec![0u64; plan.defs.len()];
    let mut skipped_bw = vec![0u64; plan.defs.len()];
    let mut last: Option<String> = None;
    loop {
        let sql = format!(
            "SELECT id::text, xmin::text FROM {}.customer_entities
              WHERE {due_sql} {} ORDER BY id LIMIT {batch_size}",
            s.attr,
            match &last {
                Some(l) => format!("AND id > {}::uuid", quote_literal(l)),
                None => String::new(),
            }
        );
        let rows = db
            .client
            .query(&sql, &params)
            .await
            .pg_context(|| "selecting the next batch of entities".into())?;
        if rows.is_empty() {
            break;
        }
        let due: Vec<Due> = rows
            .iter()
            .map(|r| Due {
                id: r.get(0),
                seen: r.get(1),
            })
            .collect();
        last = due.last().map(|d| d.id.clone());
        load_batch(db, &due).await?;
        let (acc, t_pass, t_custom) = db.cancellable(evaluate(db, plan, due.len())).await?;
        sum.seconds_pass += t_pass;
        sum.seconds_custom += t_custom;
        let t_write = Instant::now();
        for a in 0..plan.defs.len() {
            skipped_nn[a] += acc.skipped_not_numeric[a];
            skipped_bw[a] += acc.skipped_bad_weight[a];
        }
        let res = db
            .cancellable(write_with_retry(
                db, plan, &acc, &due, writes, !partial, nested,
            ))
            .await?;
        sum.seconds_write += t_write.elapsed().as_secs_f64();
        sum.entities_calculated += res.present;
        sum.entities_changed += res.changed_entities;
        sum.values_written += res.inserted;
        sum.values_deleted += res.deleted;
        sum.batches += 1;
        if entity_mode {
            sum.entity = Some(res.entity);
        }
        pb.inc(due.len() as u64);
        if entity_mode || due.len() < batch_size {
            break;
        }
    }
    pb.finish_and_clear();
    sum.skipped = plan
        .defs
        .iter()
        .enumerate()
        .filter(|(a, _)| skipped_nn[*a] + skipped_bw[*a] > 0)
        .map(|(a, d)| SkipCount {
            attribute: d.id.clone(),
            not_numeric: skipped_nn[a],
            bad_weight: skipped_bw[a],
        })
        .collect();
    Ok(())
}

fn uuid_check(id: &str) -> Result<()> {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("--entity {id:?} is not a UUID (expected e.g. 0b7d3a4e-1c2f-4e5a-9b8c-7d6e5f4a3b2c)");
    }
    Ok(())
}

async fn record_run(
    db: &Db,
    sum: &CalcSummary,
    started_at: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    db.client
        .execute(
            &db.schemas.substitute(
                "INSERT INTO {{cdpctl}}.attribute_runs
                   (started_at, mode, attributes, entities, entities_changed, values_written, seconds)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            ),
            &[
                &started_at,
                &sum.mode,
                &(sum.attributes as i32),
                &(sum.entities_calculated as i64),
                &(sum.entities_changed as i64),
                &(sum.values_written as i64),
                &sum.seconds,
            ],
        )
        .await
        .pg_context(|| "recording the run".into())?;
    Ok(())
}

/// Fills the batch table (idx = position in `due`) of both sessions: the
/// evaluation reads it, the write side joins it.
async fn load_batch(db: &Db, due: &[Due]) -> Result<()> {
    db.client
        .batch_execute(&format!("TRUNCATE {BATCH}, {STAGE}"))
        .await
        .pg_context(|| "clearing the batch table".into())?;
    let sink = db
        .client
        .copy_in(&format!("COPY {BATCH} (idx, id, seen) FROM STDIN"))
        .await
        .pg_context(|| "loading the batch".into())?;
    let mut w = TextCopy::new(sink, "the batch table");
    let eval = db.eval().await?;
    eval.scratch(&format!("TRUNCATE {BATCH}"), "clearing the batch table")
        .await?;
    let sink = eval
        .copy_in(
            &format!("COPY {BATCH} (idx, id) FROM STDIN"),
            "loading the batch",
        )
        .await?;
    let mut e = TextCopy::new(sink, "the evaluation's batch table");
    for (i, d) in due.iter().enumerate() {
        let idx = i.to_string();
        w.row(&[Some(&idx), Some(&d.id), Some(&d.seen)]).await?;
        e.row(&[Some(&idx), Some(&d.id)]).await?;
    }
    w.finish().await?;
    e.finish().await?;
    db.client
        .batch_execute(&format!("ANALYZE {BATCH}"))
        .await
        .pg_context(|| "analyzing the batch table".into())?;
    eval.scratch(&format!("ANALYZE {BATCH}"), "analyzing the batch table")
        .await
}

fn weight_of(w1: Option<&str>, w2: Option<&str>, has1: bool, has2: bool) -> Option<Decimal> {
    let a = if has1 {
        Decimal::parse(w1?)?
    } else {
        Decimal::ONE
    };
    let b = if has2 {
        Decimal::parse(w2?)?
    } else {
        Decimal::ONE
    };
    a.checked_mul(b)
}

/// Evaluates every definition over the batch in one read-only transaction.
/// Returns the values and the seconds spent on the pass and on custom queries.
async fn evaluate(db: &Db, plan: &Plan, entities: usize) -> Result<(Accumulator, f64, f64)> {
    let kinds: Vec<Kind> = plan.defs.iter().map(|d| d.kind).collect();
    let mut acc = Accumulator::new(kinds, entities);
    let mut times = (0.0, 0.0);
    let res = evaluate_into(db, plan, &mut acc, &mut times).await;
    match res {
        Ok(()) => Ok((acc, times.0, times.1)),
        Err(e) => Err(diagnose(db, plan, e).await),
    }
}

async fn evaluate_into(
    db: &Db,
    plan: &Plan,
    acc: &mut Accumulator,
    times: &mut (f64, f64),
) -> Result<()> {
    let t = Instant::now();
    // Custom queries read the batch's events many times: copy them once.
    let materialized = !plan.customs.is_empty();
    if materialized {
        plan::fill_events(db).await?;
    }
    let tx = db.eval().await?.begin().await?;
    let res = async {
        if !plan.builtin.is_empty() {
            let sql = if materialized {
                &plan.pass_sql_materialized
            } else {
                &plan.pass_sql
            };
            tx.for_each(sql, &[], |row| {
                let idx = match row.get::<_, Raw>(0).0 {
                    Some(b) if b.len() == 4 => i32::from_be_bytes(b.try_into().unwrap()) as usize,
                    _ => return Ok(()),
                };
                let time = copy::timestamp(row.get::<_, Raw>(1).0);
                let id = copy::uuid(row.get::<_, Raw>(2).0);
                let mut col = 3;
                for (i, layout) in &plan.builtin {
                    let weighted = plan.defs[*i].kind.weighted();
                    match *layout {
                        Layout::Scalar { weight } => {
                            if let Some(v) = row.get::<_, Raw>(col).0 {
                                let w = if weighted {
                                    if weight {
                                        row.get::<_, Raw>(col + 1)
                                            .0
                                            .and_then(|w| Decimal::parse(copy::text(w)))
                                    } else {
                                        Some(Decimal::ONE)
                                    }
                                } else {
                                    None
                                };
                                acc.add(idx, *i, copy::text(v), w, time, id);
                            }
                        }
                        Layout::Array { w1, w2 } => {
                            if let Some(raw) = row.get::<_, Raw>(col).0 {
                                let elems = copy::text_array(raw);
                                let stride = if weighted {
                                    1 + w1 as usize + w2 as usize
                                } else {
                                    1
                                };
                                for chunk in elems.chunks(stride) {
                                    let Some(v) = chunk[0] else { continue };
                                    let w = if weighted {
                                        let mut k = 1;
                                        let a = if w1 {
                                            k += 1;
                                            chunk.get(1).copied().flatten()
                                        } else {
                                            None
                                        };
                                        let b = if w2 {
                                            chunk.get(k).copied().flatten()
                                        } else {
                                            None
                                        };
                                        weight_of(a, b, w1, w2)
                                    } else {
                                        None
                                    };
                                    acc.add(idx, *i, v, w, time, id);
                                }
                            }
                        }
                    }
                    col += layout.columns();
                }
                Ok(())
            })
            .await
            .context("evaluating the attribute definitions")?;
        }
        times.0 = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for &(i, numeric) in &plan.customs {
            let d = &plan.defs[i];
            tx.for_each(&plan::custom_sql(d, numeric), &[], |row| {
                let (Some(idx), Some(v)) = (row.get::<_, Raw>(0).0, row.get::<_, Raw>(1).0) else {
                    return Ok(());
                };
                let idx = i32::from_be_bytes(idx.try_into().unwrap_or([0; 4])) as usize;
                acc.add(idx, i, copy::text(v), None, 0, 0);
                Ok(())
            })
            .await
            .with_context(|| format!("attribute \"{}\": custom query", d.id))?;
        }
        times.1 = t.elapsed().as_secs_f64();
        Ok::<(), anyhow::Error>(())
    }
    .await;
    tx.end().await;
    res?;
    let t = Instant::now();
    resolve_text_extremes(db, acc).await?;
    times.1 += t.elapsed().as_secs_f64();
    Ok(())
}

/// Compares the values of every `max`/`min` of the batch that is not all
/// numeric as PostgreSQL's `max(text)` and `min(text)` do, in the
/// database's default collation (which byte order is not, except for "C"):
/// one statement for the whole batch.
async fn resolve_text_extremes(db: &Db, acc: &mut Accumulator) -> Result<()> {
    let mut kinds = HashMap::new();
    let (mut slots, mut values) = (Vec::<i64>::new(), Vec::<String>::new());
    for (slot, kind, texts) in acc.text_extremes() {
        kinds.insert(slot as i64, kind);
        for v in texts {
            slots.push(slot as i64);
            values.push(v.to_string());
        }
    }
    if slots.is_empty() {
        return Ok(());
    }
    let rows = db
        .client
        .query(
            "SELECT s, min(v), max(v) FROM unnest($1::int8[], $2::text[]) AS t(s, v) GROUP BY s",
            &[&slots, &values],
        )
        .await
        .pg_context(|| "comparing the text values of max/min attributes".into())?;
    for r in rows {
        let slot: i64 = r.get(0);
        let v: String = r.get(if kinds[&slot] == Kind::Min { 1 } else { 2 });
        acc.resolve_text(slot as usize, &v);
    }
    Ok(())
}

/// After the combined pass failed: finds the attribute whose expressions
/// fail alone, so the error names it.
async fn diagnose(db: &Db, plan: &Plan, err: anyhow::Error) -> anyhow::Error {
    let msg = format!("{err:#}");
    if msg.starts_with("attribute \"") {
        return anyhow!("{msg}; fix the definition (it runs read-only), nothing was written");
    }
    let Ok(eval) = db.eval().await else {
        return err.context("evaluating the attribute definitions; nothing was written");
    };
    let scope = plan::events_scope(db);
    for (i, layout) in &plan.builtin {
        let d = &plan.defs[*i];
        let sql = format!(
            "SELECT {} FROM {scope}",
            plan::columns(d, *layout).join(", ")
        );
        let Ok(tx) = eval.begin().await else { break };
        let res = tx.for_each(&sql, &[], |_| Ok(())).await;
        tx.end().await;
        if let Err(e) = res {
            let cause = match e.downcast_ref::<crate::db::PgError>() {
                Some(p) => p.message.clone(),
                None => format!("{e:#}"),
            };
            return anyhow!(
                "attribute \"{}\": {cause}; fix the definition (it runs read-only), nothing was written",
                d.id
            );
        }
    }
    err.context("evaluating the attribute definitions; nothing was written")
}

#[derive(Default)]
struct WriteResult {
    present: u64,
    changed_entities: u64,
    inserted: u64,
    deleted: u64,
    entity: Vec<EntityValue>,
}

async fn write_with_retry(
    db: &Db,
    plan: &Plan,
    acc: &Accumulator,
    due: &[Due],
    apply: bool,
    mark: bool,
    nested: bool,
) -> Result<WriteResult> {
    let retries = db.config.session.lock_retries;
    let mut attempt = 0;
    loop {
        match write_batch(db, plan, acc, due, apply, mark, nested).await {
            Err(e) if crate::db::is_retryable(&e) && attempt < retries => {
                attempt += 1;
                let base = 100u64 << attempt.min(6);
                tokio::time::sleep(std::time::Duration::from_millis(
                    base + rand::random::<u64>() % base,
                ))
                .await;
            }
            Err(e) if crate::db::is_lock_timeout(&e) => {
                return Err(e.context(format!(
                    "writing attribute values: entities stayed locked by another session after {} attempts (see pg_stat_activity); rerun later",
                    attempt + 1
                )))
            }
            other => return other,
        }
    }
}

/// Diffs the batch's new values against the stored ones and (if `apply`)
/// writes the changed pairs, journals them and marks the entities: one
/// transaction, or a savepoint of the caller's (`nested`).
async fn write_batch(
    db: &Db,
    plan: &Plan,
    acc: &Accumulator,
    due: &[Due],
    apply: bool,
    mark: bool,
    nested: bool,
) -> Result<WriteResult> {
    let (begin, commit, rollback) = if nested {
        (
            "SAVEPOINT cdpctl_write",
            "RELEASE SAVEPOINT cdpctl_write",
            "ROLLBACK TO SAVEPOINT cdpctl_write; RELEASE SAVEPOINT cdpctl_write",
        )
    } else {
        ("BEGIN", "COMMIT", "ROLLBACK")
    };
    db.client
        .batch_execute(begin)
        .await
        .pg_context(|| "starting the write transaction".into())?;
    match write_batch_in(db, plan, acc, due, apply, mark).await {
        Ok(res) if apply => {
            db.client
                .batch_execute(commit)
                .await
                .pg_context(|| "committing attribute values".into())?;
            Ok(res)
        }
        Ok(res) => {
            db.client.batch_execute(rollback).await.ok();
            Ok(res)
        }
        Err(e) => {
            db.client.batch_execute(rollback).await.ok();
            Err(e)
        }
    }
}

async fn write_batch_in(
    db: &Db,
    plan: &Plan,
    acc: &Accumulator,
    due: &[Due],
    apply: bool,
    mark: bool,
) -> Result<WriteResult> {
    let s = db.schemas.clone();
    let n = plan.defs.len();
    let index: HashMap<&str, usize> = plan
        .defs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.as_str(), i))
        .collect();
    let tx = &db.client;
    // Lock the batch's entities (stitching may merge or delete them
    // meanwhile) and mark them calculated in one statement: an entity whose
    // row changed since it was selected (new events, a merge) stays due.
    let lock_sql = if apply {
        format!(
            "UPDATE {attr}.customer_entities e
                SET calculated = {}
               FROM {BATCH} b
              WHERE e.id = b.id
          RETURNING b.idx",
            if mark {
                "CASE WHEN e.xmin::text = b.seen THEN now() AT TIME ZONE 'UTC' ELSE e.calculated END"
            } else {
                "e.calculated"
            },
            attr = s.attr
        )
    } else {
        format!(
            "SELECT b.idx FROM {BATCH} b JOIN {}.customer_entities e ON e.id = b.id",
            s.attr
        )
    };
    let rows = tx
        .query(&lock_sql, &[])
        .await
        .pg_context(|| "locking and marking the batch's entities".into())?;
    let mut present = vec![false; due.len()];
    for r in &rows {
        present[r.get::<_, i32>(0) as usize] = true;
    }
    // Stored values of the batch.
    let ids: Vec<String> = plan.defs.iter().map(|d| quote_literal(&d.id)).collect();
    let mut old: Vec<Vec<String>> = vec![Vec::new(); due.len() * n];
    if n > 0 {
        let stream = tx
            .copy_out(&format!(
                "COPY (SELECT b.idx, ca.attribute_id, ca.value
                         FROM {BATCH} b
                         JOIN {}.customer_attributes ca ON ca.customer_entity_id = b.id
                        WHERE ca.attribute_id IN ({})) TO STDOUT (FORMAT binary)",
                s.attr,
                ids.join(", ")
            ))
            .await
            .pg_context(|| "reading stored attribute values".into())?;
        let rows = BinaryCopyOutStream::new(stream, &[Type::INT4, Type::TEXT, Type::TEXT]);
        pin_mut!(rows);
        while let Some(row) = rows.next().await {
            let row = row.pg_context(|| "reading stored attribute values".into())?;
            let (Some(idx), Some(attr)) = (row.get::<Raw>(0).0, row.get::<Raw>(1).0) else {
                continue;
            };
            let idx = i32::from_be_bytes(idx.try_into().unwrap_or([0; 4])) as usize;
            let Some(&a) = index.get(copy::text(attr)) else {
                continue;
            };
            // a stored NULL is never a value we would write: forces a rewrite
            let v = row.get::<Raw>(2).0.map(copy::text).unwrap_or("\u{0}NULL");
            old[idx * n + a].push(v.to_string());
        }
    }
    let mut res = WriteResult::default();
    // changed (entity, attribute) pairs
    let mut changed_pairs: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let want_entity = due.len() == 1;
    for (idx, _) in due.iter().enumerate() {
        if !present[idx] {
            continue;
        }
        res.present += 1;
        let mut changed = false;
        for (a, d) in plan.defs.iter().enumerate() {
            let new = acc.values(idx, a);
            let stored = &mut old[idx * n + a];
            stored.sort();
            let differs = *stored != new;
            if want_entity {
                res.entity.push(EntityValue {
                    attribute: d.id.clone(),
                    kind: d.kind.name().into(),
                    values: new.clone(),
                    stored: stored.clone(),
                    changed: differs,
                });
            }
            if !differs {
                continue;
            }
            changed = true;
            res.deleted += stored.len() as u64;
            res.inserted += new.len() as u64;
            changed_pairs.push((idx, a, new));
        }
        if changed {
            res.changed_entities += 1;
        }
    }
    if !apply {
        return Ok(res);
    }
    if !changed_pairs.is_empty() {
        // the changed entities with their changed attributes, for the
        // delete and the journal
        let sink = tx
            .copy_in(&format!("COPY {STAGE} (idx, items) FROM STDIN"))
            .await
            .pg_context(|| "staging changed values".into())?;
        let mut w = TextCopy::new(sink, "the staging table");
        let mut k = 0;
        while k < changed_pairs.len() {
            let idx = changed_pairs[k].0;
            let mut items = String::from("{");
            while k < changed_pairs.len() && changed_pairs[k].0 == idx {
                if items.len() > 1 {
                    items.push(',');
                }
                items.push('"');
                for c in plan.defs[changed_pairs[k].1].id.chars() {
                    if c == '"' || c == '\\' {
                        items.push('\\');
                    }
                    items.push(c);
                }
                items.push('"');
                k += 1;
            }
            items.push('}');
            let idx_s = idx.to_string();
            w.row(&[Some(&idx_s), Some(&items)]).await?;
        }
        w.finish().await?;
        let deleted = if res.deleted > 0 {
            tx.execute(
                &format!(
                    "DELETE FROM {attr}.customer_attributes ca
                      USING {STAGE} s JOIN {BATCH} b ON b.idx = s.idx
                      WHERE ca.customer_entity_id = b.id AND ca.attribute_id = ANY (s.items)",
                    attr = s.attr
                ),
                &[],
            )
            .await
            .pg_context(|| "deleting replaced attribute values".into())?
        } else {
            0
        };
        // new values straight into the table (`modified` defaults to now)
        let mut inserted = 0;
        if res.inserted > 0 {
            let sink = tx
                .copy_in(&format!(
                    "COPY {attr}.customer_attributes (customer_entity_id, attribute_id, value) FROM STDIN",
                    attr = s.attr
                ))
                .await
                .pg_context(|| "writing attribute values".into())?;
            let mut w = TextCopy::new(sink, "customer_attributes");
            for (idx, a, new) in &changed_pairs {
                for v in new {
                    w.row(&[Some(&due[*idx].id), Some(&plan.defs[*a].id), Some(v)])
                        .await?;
                }
            }
            inserted = w.finish().await?;
        }
        tx.execute(
            &format!(
                "INSERT INTO {cdpctl}.entity_changes (entity_id, kind, items)
                 SELECT b.id, 'attributes', ARRAY(SELECT a FROM unnest(s.items) a ORDER BY a)
                   FROM {STAGE} s JOIN {BATCH} b ON b.idx = s.idx",
                cdpctl = s.cdpctl
            ),
            &[],
        )
        .await
        .pg_context(|| "journalling attribute changes in entity_changes".into())?;
        res.deleted = deleted;
        res.inserted = inserted;
    } else {
        res.deleted = 0;
        res.inserted = 0;
    }
    Ok(res)
}

/// The `demo` pipeline step: calculates every due entity (none yet when
/// stitching has not run) and shows a few entities' attributes.
pub async fn demo_step(db: &mut Db, out: &Output) -> Result<(String, serde_json::Value)> {
    let t = Instant::now();
    let sum = calculate(db, &CalcOptions::default(), out).await?;
    out.info(format!(
        "calc-attrs: {} entities, {} values written in {:.1}s",
        sum.entities_calculated,
        sum.values_written,
        t.elapsed().as_secs_f64()
    ));
    let rows = db
        .client
        .query(
            &db.schemas.substitute(
                "WITH top AS (SELECT customer_entity_id AS id FROM {{attr}}.customer_attributes
                               GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 3)
                 SELECT ca.customer_entity_id::text, ca.attribute_id, string_agg(ca.value, ', ' ORDER BY ca.value)
                   FROM {{attr}}.customer_attributes ca JOIN top ON top.id = ca.customer_entity_id
                  GROUP BY 1, 2 ORDER BY 1, 2",
            ),
            &[],
        )
        .await
        .pg_context(|| "reading sample attributes".into())?;
    let mut sample: Vec<(String, serde_json::Map<String, serde_json::Value>)> = Vec::new();
    for r in &rows {
        let id: String = r.get(0);
        if sample.last().map(|(e, _)| e != &id).unwrap_or(true) {
            sample.push((id.clone(), serde_json::Map::new()));
        }
        sample
            .last_mut()
            .unwrap()
            .1
            .insert(r.get(1), json!(r.get::<_, String>(2)));
    }
    for (id, attrs) in &sample {
        let line: Vec<String> = attrs
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        out.info(format!("  entity {id}: {}", line.join("; ")));
    }
    if sum.entities_due == 0 {
        out.info("  (no customer entities yet: stitching creates them)");
    }
    Ok((
        "calc-attrs".into(),
        json!({
            "entities": sum.entities_calculated,
            "entities_changed": sum.entities_changed,
            "values_written": sum.values_written,
            "contexts_refreshed": sum.contexts_refreshed.len(),
            "sample": sample.iter().map(|(id, a)| json!({"entity": id, "attributes": a})).collect::<Vec<_>>(),
        }),
    ))
}

/// One line per definition of `calc-attrs --check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckLine {
    pub attribute: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
}

/// `calc-attrs --check`: validates every definition and context query
/// against the database (parse, plan, then a read-only evaluation over a
/// sample of entities). Writes nothing.
pub async fn check(db: &mut Db) -> Result<Vec<CheckLine>> {
    let rows = db
        .client
        .query(
            &db.schemas
                .substitute("SELECT id, definition FROM {{attr}}.attributes ORDER BY id"),
            &[],
        )
        .await
        .pg_context(|| "reading attribute definitions".into())?;
    plan::ensure_temp_tables(db).await?;
    // a sample batch, so runtime errors (writes, bad casts) show up
    let sample: Vec<Due> = db
        .client
        .query(
            &db.schemas.substitute(
                "SELECT id::text, xmin::text FROM {{attr}}.customer_entities ORDER BY id LIMIT 100",
            ),
            &[],
        )
        .await
        .pg_context(|| "sampling entities".into())?
        .iter()
        .map(|r| Due {
            id: r.get(0),
            seen: r.get(1),
        })
        .collect();
    load_batch(db, &sample).await?;
    let mut lines = Vec::new();
    for r in &rows {
        let id: String = r.get(0);
        let doc: Option<serde_json::Value> = r.get(1);
        let mut line = CheckLine {
            attribute: id.clone(),
            kind: None,
            ok: false,
            error: None,
        };
        match Definition::parse(&id, doc.as_ref()) {
            Err(e) => line.error = Some(e.to_string()),
            Ok(d) => {
                line.kind = Some(d.kind.name().into());
                match plan::prepare(db, vec![d]).await {
                    Err(e) => line.error = Some(e.join("; ")),
                    Ok(p) => match evaluate(db, &p, sample.len()).await {
                        Err(e) => line.error = Some(format!("{e:#}")),
                        Ok(_) => line.ok = true,
                    },
                }
            }
        }
        lines.push(line);
    }
    // context queries
    let keys = context::resolve_keys(db, &[]).await?;
    for k in keys {
        let mut line = CheckLine {
            attribute: format!("context:{k}"),
            kind: Some("context".into()),
            ok: false,
            error: None,
        };
        match context::evaluate(db, std::slice::from_ref(&k)).await {
            Ok(_) => line.ok = true,
            Err(e) => line.error = Some(e.to_string()),
        }
        lines.push(line);
    }
    Ok(lines)
}

/// Status lines of the attributes area.
pub async fn status_items(db: &Db) -> Result<Vec<Item>> {
    let settings = Settings::from_config(&db.config).unwrap_or_default();
    let mut items = Vec::new();
    let row = db
        .client
        .query_one(
            &db.schemas.substitute(
                "SELECT count(*) FILTER (WHERE calculated IS NOT NULL
                            AND calculated < (now() AT TIME ZONE 'UTC') - make_interval(secs => $1::float8 * 3600))
                   FROM {{attr}}.customer_entities",
            ),
            &[&settings.refresh_hours],
        )
        .await
        .pg_context(|| "counting entities due for refresh".into())?;
    items.push(Item::new(
        "attributes",
        format!("entities older than {}h (due)", settings.refresh_hours),
        row.get::<_, i64>(0),
    ));
    if db.relation_exists("cdpctl", "attribute_runs").await? {
        let last = db
            .client
            .query_opt(
                &db.schemas.substitute(
                    "SELECT to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC', mode,
                            entities, entities_changed, seconds
                       FROM {{cdpctl}}.attribute_runs ORDER BY id DESC LIMIT 1",
                ),
                &[],
            )
            .await
            .pg_context(|| "reading the last calc-attrs run".into())?;
        items.push(Item::new(
            "attributes",
            "last calc-attrs run",
            match last {
                Some(r) => json!(format!(
                    "{} ({}, {} entities, {} changed, {:.1}s)",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, i64>(2),
                    r.get::<_, i64>(3),
                    r.get::<_, f64>(4)
                )),
                None => json!("never"),
            },
        ));
    }
    let cache: Option<String> = db
        .client
        .query_one(
            &db.schemas.substitute(
                "SELECT to_char(min(modified), 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
                   FROM {{attr}}.cached_attributes_counts_customers_per_attribute",
            ),
            &[],
        )
        .await
        .pg_context(|| "reading the cache age".into())?
        .get(0);
    items.push(Item::new(
        "attributes",
        "caches refreshed",
        cache.unwrap_or_else(|| "never".into()),
    ));
    Ok(items)
}
