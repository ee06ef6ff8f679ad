//! Profile stitching (`cdpctl stitch`): identifiers are extracted set-based in
//! PostgreSQL (one pass evaluating the configured value expressions, streamed
//! out of the read-only evaluation session, see [`crate::db::eval`]), resolved by the union-find
//! in [`engine`], and written back with binary COPY plus a few set-based
//! statements, one transaction per batch.

pub mod bulk;
pub mod copy;
pub mod engine;
pub mod explain;
pub mod hygiene;
pub mod intern;

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::commands::status::Item;
use crate::db::eval::{Eval, EvalTx};
use crate::db::{quote_literal, Db, PgResultExt, Schemas};
use crate::output::Output;
use copy::{copy_out, new_uuid, CopyWriter};
use engine::{Existing, Input, Refusal, Resolution, NONE};
use hygiene::{Blocklist, Rule};
use intern::Interner;

/// The DDL of the queue, also used to recreate it after it was dropped.
const QUEUE_DDL: &str = "CREATE TABLE IF NOT EXISTS {{ps}}.customer_events_to_process (
    seq      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL
)";

/// The `stitching` section of the config.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StitchConfig {
    /// Most queued events one incremental batch (one transaction) stitches.
    #[serde(default = "d_batch_size")]
    pub batch_size: u64,
}

fn d_batch_size() -> u64 {
    1_000_000
}

impl StitchConfig {
    pub fn from_config(cfg: &crate::config::Config) -> Result<Self> {
        let v = serde_json::Value::Object(cfg.stitching.clone());
        let c: StitchConfig = serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            anyhow!(
                "config: key \"stitching{}\": {}",
                if path == "." {
                    String::new()
                } else {
                    format!(".{path}")
                },
                e.into_inner()
            )
        })?;
        if c.batch_size == 0 {
            bail!("config: key \"stitching.batch_size\": must be at least 1");
        }
        Ok(c)
    }
}

#[derive(Debug, Clone, Default)]
pub struct StitchOptions {
    /// Restart from the beginning (the caller asks first).
    pub from_scratch: bool,
    /// Overrides `stitching.batch_size`.
    pub batch_size: Option<u64>,
    /// Stop after this many batches (the rest stays queued).
    pub max_batches: Option<u64>,
    /// Report what would run; change nothing.
    pub dry_run: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StitchSummary {
    /// `full`, `incremental` or `idle` (nothing queued).
    pub mode: String,
    /// Why the run started from the beginning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_reason: Option<String>,
    /// Something the operator should know (no stitching rules, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    pub dry_run: bool,
    pub batches: u64,
    pub events: u64,
    pub edges: u64,
    pub new_identifiers: u64,
    pub entities_created: u64,
    pub entities_updated: u64,
    pub merges: u64,
    pub refused_blocked: u64,
    pub refused_limit: u64,
    /// Events still queued after the run.
    pub backlog_left: i64,
    pub duration_ms: u64,
    /// Milliseconds per phase of a run from scratch (extract, resolve,
    /// truncate, write, index, analyze, commit).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases_ms: Vec<(String, u64)>,
}

impl StitchSummary {
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        use crate::output::num;
        let mut v = vec![("mode", self.mode.clone())];
        if let Some(w) = &self.warning {
            v.push(("warning", w.clone()));
        }
        if let Some(r) = &self.full_reason {
            v.push(("from scratch because", r.clone()));
        }
        v.extend([
            ("batches", num(self.batches)),
            ("events", num(self.events)),
            ("identifier edges", num(self.edges)),
            ("new identifiers", num(self.new_identifiers)),
            ("entities created", num(self.entities_created)),
            ("entities updated", num(self.entities_updated)),
            ("merges", num(self.merges)),
            ("refused edges (blocklist)", num(self.refused_blocked)),
            ("refused edges (limits)", num(self.refused_limit)),
            ("still queued", num(self.backlog_left)),
            (
                "duration",
                format!("{:.2}s", self.duration_ms as f64 / 1000.0),
            ),
        ]);
        v
    }
}

/// One row of `stitching_attributes_config`, resolved.
#[derive(Debug, Clone)]
pub struct ConfigRow {
    pub attribute_id: String,
    pub event_id: String,
    pub expr: String,
    pub attr: usize,
    pub ty: usize,
}

/// The configuration of a run: rules, event types, hygiene.
pub struct Setup {
    pub attrs: Vec<String>,
    /// (source_id, type, version) per event type with rules.
    pub types: Vec<(String, String, String)>,
    pub rows: Vec<ConfigRow>,
    pub blocklist: Blocklist,
    /// Per attribute index; 0 = unlimited.
    pub limits: Vec<u32>,
}

impl Setup {
    pub async fn load(db: &Db) -> Result<Setup> {
        let s = &db.schemas;
        let rows = db
            .client
            .query(
                &s.substitute(
                    "SELECT c.attribute_id::text, c.event_id::text, c.value_expression,
                            ev.source_id::text, ev.type, ev.version
                       FROM {{ps}}.stitching_attributes_config c
                       LEFT JOIN {{cdp}}.events ev ON ev.id = c.event_id
                      ORDER BY c.attribute_id, c.event_id",
                ),
                &[],
            )
            .await
            .pg_context(|| "reading stitching_attributes_config".into())?;
        let mut attrs: Vec<String> = Vec::new();
        let mut types: Vec<(String, String, String)> = Vec::new();
        let mut out = Vec::new();
        for r in rows {
            let attribute_id: Option<String> = r.get(0);
            let event_id: Option<String> = r.get(1);
            let expr: Option<String> = r.get(2);
            let name = format!(
                "stitching_attributes_config row (attribute_id {:?}, event_id {:?})",
                attribute_id.as_deref().unwrap_or("NULL"),
                event_id.as_deref().unwrap_or("NULL")
            );
            let (Some(attribute_id), Some(event_id)) = (attribute_id, event_id) else {
                bail!("{name}: attribute_id and event_id must not be NULL; fix or delete the row");
            };
            let expr = expr.filter(|e| !e.trim().is_empty()).ok_or_else(|| {
                anyhow!("{name}: value_expression is empty; set a PostgreSQL expression over payload, e.g. payload->>'user_id'")
            })?;
            let src: Option<String> = r.get(3);
            let Some(src) = src else {
                bail!(
                    "{name}: event_id {event_id:?} is not in {}.events; add the event type there or fix the row",
                    s.raw_name("cdp")
                );
            };
            let key = (src, r.get::<_, String>(4), r.get::<_, String>(5));
            let ty = match types.iter().position(|t| *t == key) {
                Some(p) => p,
                None => {
                    types.push(key);
                    types.len() - 1
                }
            };
            let attr = match attrs.iter().position(|a| *a == attribute_id) {
                Some(p) => p,
                None => {
                    attrs.push(attribute_id.clone());
                    attrs.len() - 1
                }
            };
            out.push(ConfigRow {
                attribute_id,
                event_id,
                expr,
                attr,
                ty,
            });
        }
        let rules = db
            .client
            .query(
                &s.substitute(
                    "SELECT id, attribute_id, value, is_regex FROM {{ps}}.stitching_blocklist ORDER BY id",
                ),
                &[],
            )
            .await
            .pg_context(|| "reading stitching_blocklist".into())?
            .into_iter()
            .map(|r| Rule {
                id: r.get(0),
                attribute_id: r.get(1),
                value: r.get(2),
                is_regex: r.get(3),
            })
            .collect();
        let blocklist = Blocklist::new(rules, &attrs)?;
        let mut limits = vec![0u32; attrs.len()];
        for r in db
            .client
            .query(
                &s.substitute("SELECT attribute_id, max_values FROM {{ps}}.stitching_limits"),
                &[],
            )
            .await
            .pg_context(|| "reading stitching_limits".into())?
        {
            let a: String = r.get(0);
            let m: i32 = r.get(1);
            if let Some(p) = attrs.iter().position(|x| *x == a) {
                limits[p] = m as u32;
            }
        }
        Ok(Setup {
            attrs,
            types,
            rows: out,
            blocklist,
            limits,
        })
    }

    fn limited(&self) -> bool {
        self.limits.iter().any(|&l| l > 0)
    }

    fn type_cond(&self, t: usize) -> String {
        let (src, ty, ver) = &self.types[t];
        format!(
            "(source_id = {} AND type = {} AND version = {})",
            quote_literal(src),
            quote_literal(ty),
            quote_literal(ver)
        )
    }

    /// Checks every value expression parses and type-checks, naming the row:
    /// prepared on the evaluation session, never run.
    pub async fn validate(&self, db: &Db) -> Result<()> {
        let s = &db.schemas;
        let eval = db.eval().await?;
        // one round trip when everything is fine; row by row to name the culprit
        let all: Vec<String> = self
            .rows
            .iter()
            .map(|r| format!("({})::text", r.expr))
            .collect();
        if all.is_empty()
            || eval
                .prepare(&s.substitute(&format!(
                    "SELECT {} FROM {{{{ce}}}}.customer_events",
                    all.join(", ")
                )))
                .await
                .is_ok()
        {
            return Ok(());
        }
        for r in &self.rows {
            let sql = s.substitute(&format!(
                "SELECT ({})::text FROM {{{{ce}}}}.customer_events",
                r.expr
            ));
            if let Err(e) = eval.prepare(&sql).await {
                return Err(e).pg_context(|| {
                    format!(
                        "stitching_attributes_config row (attribute_id {:?}, event_id {:?}): value_expression {:?} is not a valid expression over customer_events; fix the row",
                        r.attribute_id, r.event_id, r.expr
                    )
                });
            }
        }
        Ok(())
    }

    /// The extraction query: one row per event — id, type index (-1 for
    /// types without rules), the identifier values per attribute, and the
    /// event key for unknown types.
    pub fn extract_sql(&self, s: &Schemas, source: &str) -> String {
        let mut tcase = String::from("CASE");
        for t in 0..self.types.len() {
            tcase.push_str(&format!(" WHEN {} THEN {t}", self.type_cond(t)));
        }
        tcase.push_str(" ELSE -1 END::int2");
        if self.types.is_empty() {
            // no rules: every event is of a type without rules
            tcase = "(-1)::int2".into();
        }
        let mut vcase = String::from("CASE cdpctl_t");
        for t in 0..self.types.len() {
            let mut elems = vec!["NULL::text".to_string(); self.attrs.len()];
            for r in self.rows.iter().filter(|r| r.ty == t) {
                elems[r.attr] = format!("({})::text", r.expr);
            }
            vcase.push_str(&format!(" WHEN {t} THEN ARRAY[{}]", elems.join(", ")));
        }
        vcase.push_str(" END");
        if self.types.is_empty() {
            vcase = "NULL::text[]".into();
        }
        let order = if self.limited() {
            " ORDER BY event_time, id"
        } else {
            ""
        };
        s.substitute(&format!(
            "SELECT id, cdpctl_t, {vcase}, CASE WHEN cdpctl_t = -1 THEN source_id || '/' || type || '/' || version END
               FROM (SELECT e.*, {tcase} AS cdpctl_t FROM {source} OFFSET 0) e{order}"
        ))
    }
}

/// Source of a full run's events.
fn all_events() -> &'static str {
    "{{ce}}.customer_events e"
}

/// Source of one incremental batch: queued, not yet stitched events.
fn queued_events(lo: i64, hi: i64) -> String {
    format!(
        "{{{{ps}}}}.customer_events_to_process q JOIN {{{{ce}}}}.customer_events e ON e.id = q.event_id
          WHERE q.seq > {lo} AND q.seq <= {hi}
            AND NOT EXISTS (SELECT 1 FROM {{{{ps}}}}.event_entities x WHERE x.event_id = q.event_id)"
    )
}

/// The events of one batch with their interned identifiers.
#[derive(Default)]
pub struct Extracted {
    pub ev_ids: Vec<[u8; 16]>,
    pub ev_key: Vec<u16>,
    pub keys: Vec<String>,
    pub idents: Interner,
    pub blocked: Vec<u32>,
    pub input: Input,
}

impl Extracted {
    fn new(setup: &Setup) -> Self {
        let mut x = Extracted {
            keys: setup
                .types
                .iter()
                .map(|(a, b, c)| format!("{a}/{b}/{c}"))
                .collect(),
            ..Default::default()
        };
        x.input.ev_offsets.push(0);
        x
    }
}

/// Streams the batch's events and identifiers out of the evaluation session.
async fn extract(
    tx: &EvalTx<'_>,
    setup: &Setup,
    sql: &str,
    dedupe: bool,
    pb: &indicatif::ProgressBar,
) -> Result<Extracted> {
    let mut x = Extracted::new(setup);
    let mut seen: std::collections::HashSet<[u8; 16]> = Default::default();
    let mut extra_keys: HashMap<String, u16> = HashMap::new();
    let mut row_idents: Vec<u32> = Vec::with_capacity(8);
    tx.for_each(sql, &[], |t| {
        let id = copy::uuid_field(t, 0)?;
        if dedupe && !seen.insert(id) {
            return Ok(());
        }
        let ty = copy::i16_field(t, 1).unwrap_or(-1);
        let key = if ty >= 0 {
            ty as u16
        } else {
            let k = String::from_utf8_lossy(copy::field(t, 3).unwrap_or(b"?")).into_owned();
            let n = x.keys.len() as u16;
            *extra_keys.entry(k.clone()).or_insert_with(|| {
                x.keys.push(k);
                n
            })
        };
        row_idents.clear();
        if let Some(arr) = copy::field(t, 2) {
            copy::array_elements(arr, |attr, v| {
                if let Some(v) = v {
                    let (i, new) = x.idents.intern(attr as u16, v);
                    if new {
                        let s = std::str::from_utf8(v).unwrap_or("");
                        x.blocked.push(setup.blocklist.check(attr, s));
                    }
                    if !row_idents.contains(&i) {
                        row_idents.push(i);
                    }
                }
                Ok(())
            })?;
        }
        x.ev_ids.push(id);
        x.ev_key.push(key);
        x.input.ev_idents.extend_from_slice(&row_idents);
        x.input.ev_offsets.push(x.input.ev_idents.len() as u32);
        if x.ev_ids.len().is_multiple_of(65536) {
            pb.set_position(x.ev_ids.len() as u64);
        }
        Ok(())
    })
    .await
    .context("extracting identifiers")?;
    pb.set_position(x.ev_ids.len() as u64);
    let n = x.idents.len();
    x.input.ident_attr = x.idents.attr.clone();
    x.input.ident_blocked = std::mem::take(&mut x.blocked);
    x.input.ident_entity = vec![NONE; n];
    x.input.limits = setup.limits.clone();
    Ok(x)
}

/// The event–identifier edges of one entity, derived on demand: its events'
/// identifiers re-extracted with the configured value expressions, kept
/// where the identifier belongs to the entity and the edge was not refused.
/// Returns `(event id, identifier id)` pairs.
pub async fn entity_edges(db: &Db, entity: &str) -> Result<Vec<(String, i64)>> {
    let s = &db.schemas;
    let setup = Setup::load(db).await?;
    let ent = quote_literal(entity);
    let source = format!(
        "{{{{ce}}}}.customer_events e WHERE e.id IN
           (SELECT event_id FROM {{{{ps}}}}.event_entities WHERE entity_id = {ent}::uuid)"
    );
    let sql = setup.extract_sql(s, &source);
    let c = &db.client;
    let eval = db.eval().await?;
    let tx = eval.begin_repeatable().await?;
    let pb = indicatif::ProgressBar::hidden();
    let x = extract(&tx, &setup, &sql, false, &pb).await;
    tx.end().await;
    let x = x?;
    let known = c
        .query(
            &s.substitute(
                "SELECT id, attribute_id, value FROM {{ps}}.identifiers WHERE entity_id = $1::text::uuid",
            ),
            &[&entity],
        )
        .await
        .pg_context(|| "reading the entity's identifiers".into())?;
    let refused = c
        .query(
            &s.substitute(
                "SELECT r.event_id::text, r.attribute_id, r.value FROM {{ps}}.refused_edges r
                   JOIN {{ps}}.event_entities x ON x.event_id = r.event_id
                  WHERE x.entity_id = $1::text::uuid",
            ),
            &[&entity],
        )
        .await
        .pg_context(|| "reading the entity's refused edges".into())?;
    let ids: HashMap<(String, Vec<u8>), i64> = known
        .iter()
        .map(|r| ((r.get(1), r.get::<_, String>(2).into_bytes()), r.get(0)))
        .collect();
    let refused: std::collections::HashSet<(String, String, Vec<u8>)> = refused
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get::<_, String>(2).into_bytes()))
        .collect();
    let mut out = Vec::new();
    for (e, ev) in x.ev_ids.iter().enumerate() {
        let ev = copy::uuid_string(ev);
        let (a, b) = (
            x.input.ev_offsets[e] as usize,
            x.input.ev_offsets[e + 1] as usize,
        );
        for &i in &x.input.ev_idents[a..b] {
            let attr = setup.attrs[x.idents.attr[i as usize] as usize].clone();
            let value = x.idents.value(i).to_vec();
            if refused.contains(&(ev.clone(), attr.clone(), value.clone())) {
                continue;
            }
            if let Some(id) = ids.get(&(attr, value)) {
                out.push((ev.clone(), *id));
            }
        }
    }
    Ok(out)
}

/// Finds the config row and event whose value expression fails, for the
/// error message: each row's expression alone over the batch, then a
/// bisection over the event ids of the failing row's type. Everything runs
/// on the evaluation session, prepared and read-only.
async fn diagnose(eval: &Eval, s: &Schemas, setup: &Setup, source: &str) -> Option<String> {
    for r in &setup.rows {
        let scan = s.substitute(&format!(
            "SELECT count(({expr})::text) FROM (SELECT e.* FROM {source}) e WHERE {cond}",
            expr = r.expr,
            cond = setup.type_cond(r.ty)
        ));
        let tx = eval.begin().await.ok()?;
        let failed = tx.query(&scan, &[]).await.err();
        tx.end().await;
        let Some(err) = failed else { continue };
        let msg = match err.downcast_ref::<crate::db::PgError>() {
            Some(p) => p.message.clone(),
            None => format!("{err:#}"),
        };
        // a statement that ran out of time would only run out of time again
        let event = if crate::db::sqlstate(&err).as_deref() == Some("57014") {
            None
        } else {
            failing_event(eval, s, setup, r, source).await
        };
        return Some(format!(
            "stitching_attributes_config row (attribute_id {:?}, event_id {:?}): value_expression {:?} fails{}: {msg}; fix the row (nothing was written)",
            r.attribute_id,
            r.event_id,
            r.expr,
            event.map(|e| format!(" on customer event {e}")).unwrap_or_default()
        ));
    }
    None
}

/// The first event (by id) of the row's type on which its expression fails:
/// halves the id range while the lower half still fails (a few dozen
/// statements for millions of events).
async fn failing_event(
    eval: &Eval,
    s: &Schemas,
    setup: &Setup,
    r: &ConfigRow,
    source: &str,
) -> Option<String> {
    let cond = setup.type_cond(r.ty);
    let tx = eval.begin().await.ok()?;
    let ids: Vec<String> = match tx
        .query(
            &s.substitute(&format!(
                "SELECT e.id::text FROM (SELECT e.* FROM {source}) e WHERE {cond} ORDER BY e.id"
            )),
            &[],
        )
        .await
    {
        Ok(rows) => rows.iter().map(|row| row.get(0)).collect(),
        Err(_) => Vec::new(),
    };
    tx.end().await;
    let probe = s.substitute(&format!(
        "SELECT count(({expr})::text) FROM (SELECT e.* FROM {source}) e
          WHERE {cond} AND e.id >= $1::text::uuid AND e.id <= $2::text::uuid",
        expr = r.expr
    ));
    // each probe in a transaction of its own: a failed one aborts it
    let fails = |lo: usize, hi: usize| {
        let (a, b) = (ids[lo].clone(), ids[hi].clone());
        let probe = &probe;
        async move {
            let Ok(tx) = eval.begin().await else {
                return false;
            };
            let failed = tx.query(probe, &[&a, &b]).await.is_err();
            tx.end().await;
            failed
        }
    };
    if ids.is_empty() || !fails(0, ids.len() - 1).await {
        return None;
    }
    let (mut lo, mut hi) = (0, ids.len() - 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fails(lo, mid).await {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(ids[lo].clone())
}

/// Counters of one batch.
#[derive(Default)]
struct BatchStats {
    events: u64,
    edges: u64,
    new_identifiers: u64,
    entities_created: u64,
    entities_updated: u64,
    merges: u64,
    refused_blocked: u64,
    refused_limit: u64,
    phases: Vec<(String, u64)>,
}

/// Runs stitching: from the beginning when the queue is missing, a full run
/// is pending or `opts.from_scratch`; else the queued events, batch by batch.
pub async fn run(db: &mut Db, opts: &StitchOptions, out: &Output) -> Result<StitchSummary> {
    let started = Instant::now();
    db.lock_job("stitch").await?;
    let cfg = StitchConfig::from_config(&db.config)?;
    let batch_size = opts.batch_size.unwrap_or(cfg.batch_size).max(1);
    let s = db.schemas.clone();
    let mut sum = StitchSummary {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let queue_exists = db
        .relation_exists("ps", "customer_events_to_process")
        .await?;
    let state = db
        .client
        .query_one(
            &s.substitute("SELECT full_run_pending, reason FROM {{ps}}.stitching_state"),
            &[],
        )
        .await
        .pg_context(|| "reading stitching_state".into())?;
    let mut full_reason: Option<String> = if !queue_exists {
        Some("the queue table customer_events_to_process was dropped".into())
    } else if opts.from_scratch {
        Some("--from-scratch".into())
    } else if state.get::<_, bool>(0) {
        Some(
            state
                .get::<_, Option<String>>(1)
                .unwrap_or_else(|| "a full run is pending".into()),
        )
    } else {
        None
    };
    let setup = Setup::load(db).await?;
    if setup.rows.is_empty() {
        sum.warning = Some(format!(
            "no stitching rules in {}.stitching_attributes_config: every event becomes its own entity; add rules (docs/stitch.md) and rerun with --from-scratch",
            s.raw_name("ps")
        ));
        out.info(format!(
            "warning: {}",
            sum.warning.as_deref().unwrap_or_default()
        ));
    }
    setup.validate(db).await?;
    if queue_exists && !opts.dry_run {
        // a queue table created again by hand lacks the evaluation role's
        // grant, which the extraction of queued events needs
        let readable: bool = db
            .client
            .query_one(
                &s.substitute(&format!(
                    "SELECT has_table_privilege({}, format('%I.%I', {{{{ps_lit}}}}, 'customer_events_to_process'), 'SELECT')",
                    quote_literal(crate::db::eval::ROLE)
                )),
                &[],
            )
            .await
            .pg_context(|| "checking the evaluation role's access to the queue".into())?
            .get(0);
        if !readable {
            db.client
                .batch_execute(&s.substitute("SELECT {{cdpctl}}.grant_eval_role()"))
                .await
                .pg_context(|| "granting the evaluation role read access to the queue".into())?;
        }
    }
    if opts.dry_run {
        sum.mode = if full_reason.is_some() {
            "full".into()
        } else {
            "incremental".into()
        };
        sum.full_reason = full_reason;
        sum.backlog_left = backlog(db).await?.unwrap_or(0);
        sum.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(sum);
    }
    if !queue_exists || opts.from_scratch {
        // Recreate the queue and wait for inserters that ran without it, so
        // every later event is queued and every earlier one is visible to
        // the full run.
        let reason = full_reason.clone().unwrap_or_default();
        let sql = s.substitute(&format!(
            "BEGIN; {QUEUE_DDL};
             SELECT {{{{cdpctl}}}}.grant_eval_role();
             LOCK TABLE {{{{ce}}}}.customer_events IN SHARE MODE;
             UPDATE {{{{ps}}}}.stitching_state SET full_run_pending = true, reason = {};
             COMMIT;",
            quote_literal(&reason)
        ));
        let client = &db.client;
        db.retry_locked("preparing a run from scratch", || async {
            let r = client
                .batch_execute(&sql)
                .await
                .pg_context(|| "recreating the stitching queue".into());
            if r.is_err() {
                client.batch_execute("ROLLBACK").await.ok();
            }
            r
        })
        .await?;
    }
    let eval = db.eval().await?;
    let retries = db.config.session.lock_retries;
    if let Some(reason) = full_reason.take() {
        sum.mode = "full".into();
        sum.full_reason = Some(reason);
        let pb = out.progress(None, "stitching all events");
        let st = guarded(db, retries, "stitching from scratch", || {
            full_batch(&db.client, eval, &s, &setup, &pb)
        })
        .await?;
        pb.finish_and_clear();
        add(&mut sum, &st);
        sum.batches = 1;
        sum.phases_ms = st.phases.to_vec();
    } else {
        sum.mode = "incremental".into();
        let hi: Option<i64> = db
            .client
            .query_one(
                &s.substitute("SELECT max(seq) FROM {{ps}}.customer_events_to_process"),
                &[],
            )
            .await
            .pg_context(|| "reading the stitching queue".into())?
            .get(0);
        let total = backlog(db).await?.unwrap_or(0);
        let pb = out.progress(Some(total as u64), "stitching queued events");
        let mut cursor = 0i64;
        if let Some(hi) = hi {
            loop {
                if opts.max_batches.is_some_and(|m| sum.batches >= m) {
                    break;
                }
                let bhi: Option<i64> = db
                    .client
                    .query_one(
                        &s.substitute(&format!(
                            "SELECT max(seq) FROM (SELECT seq FROM {{{{ps}}}}.customer_events_to_process
                              WHERE seq > {cursor} AND seq <= {hi} ORDER BY seq LIMIT {batch_size}) b"
                        )),
                        &[],
                    )
                    .await
                    .pg_context(|| "reading the stitching queue".into())?
                    .get(0);
                let Some(bhi) = bhi else { break };
                let st = guarded(db, retries, "stitching a batch", || {
                    incremental_batch(&db.client, eval, &s, &setup, cursor, bhi, &pb)
                })
                .await?;
                pb.inc(st.events);
                add(&mut sum, &st);
                sum.batches += 1;
                cursor = bhi;
            }
        }
        pb.finish_and_clear();
        if sum.batches == 0 {
            sum.mode = "idle".into();
        }
    }
    sum.backlog_left = backlog(db).await?.unwrap_or(0);
    sum.duration_ms = started.elapsed().as_millis() as u64;
    Ok(sum)
}

fn add(sum: &mut StitchSummary, st: &BatchStats) {
    sum.events += st.events;
    sum.edges += st.edges;
    sum.new_identifiers += st.new_identifiers;
    sum.entities_created += st.entities_created;
    sum.entities_updated += st.entities_updated;
    sum.merges += st.merges;
    sum.refused_blocked += st.refused_blocked;
    sum.refused_limit += st.refused_limit;
}

/// Events waiting in the queue (`None` when the queue table is missing).
pub async fn backlog(db: &Db) -> Result<Option<i64>> {
    if !db
        .relation_exists("ps", "customer_events_to_process")
        .await?
    {
        return Ok(None);
    }
    Ok(Some(
        db.client
            .query_one(
                &db.schemas
                    .substitute("SELECT count(*) FROM {{ps}}.customer_events_to_process"),
                &[],
            )
            .await
            .pg_context(|| "counting the stitching queue".into())?
            .get(0),
    ))
}

/// Runs one batch transaction: retried on lock timeouts, cancelled
/// server-side on Ctrl-C/SIGTERM (on every connection, the evaluation
/// session's included), rolled back on any error.
async fn guarded<F, Fut>(db: &Db, retries: u32, what: &str, mut f: F) -> Result<BatchStats>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<BatchStats>>,
{
    let mut attempt = || {
        let fut = f();
        async move {
            let res = tokio::select! {
                r = fut => r,
                sig = crate::signals::interrupted() => {
                    crate::db::cancel_all().await;
                    Err(anyhow!("interrupted by {sig}: the running batch was cancelled and rolled back; committed batches are kept, rerun to continue"))
                }
            };
            if res.is_err() {
                db.client.batch_execute("ROLLBACK").await.ok();
            }
            res
        }
    };
    crate::db::retry_locked(retries, what, &mut attempt).await
}

async fn begin_run(client: &Client, s: &Schemas, kind: &str) -> Result<i64> {
    Ok(client
        .query_one(
            &s.substitute("INSERT INTO {{ps}}.stitching_runs (kind) VALUES ($1) RETURNING id"),
            &[&kind],
        )
        .await
        .pg_context(|| "recording the run".into())?
        .get(0))
}

async fn finish_run(client: &Client, s: &Schemas, run_id: i64, st: &BatchStats) -> Result<()> {
    client
        .execute(
            &s.substitute(
                "UPDATE {{ps}}.stitching_runs SET finished_at = clock_timestamp(), events = $2, edges = $3,
                        new_identifiers = $4, new_entities = $5, merges = $6, refused = $7 WHERE id = $1",
            ),
            &[
                &run_id,
                &(st.events as i64),
                &(st.edges as i64),
                &(st.new_identifiers as i64),
                &(st.entities_created as i64),
                &(st.merges as i64),
                &((st.refused_blocked + st.refused_limit) as i64),
            ],
        )
        .await
        .pg_context(|| "recording the run".into())?;
    Ok(())
}

async fn extract_or_explain(
    tx: &EvalTx<'_>,
    main: &Client,
    s: &Schemas,
    setup: &Setup,
    source: &str,
    dedupe: bool,
    pb: &indicatif::ProgressBar,
) -> Result<Extracted> {
    let sql = setup.extract_sql(s, source);
    match extract(tx, setup, &sql, dedupe, pb).await {
        Ok(x) => Ok(x),
        Err(e) => {
            if crate::db::sqlstate(&e).is_some() {
                main.batch_execute("ROLLBACK").await.ok();
                if let Some(msg) = diagnose(tx.session(), s, setup, &s.substitute(source)).await {
                    bail!(msg);
                }
            }
            Err(e)
        }
    }
}

/// The full run: everything from the beginning, in one transaction whose
/// snapshot is the extraction's, so the queue rows it deletes are exactly
/// the events it stitched.
async fn full_batch(
    main: &Client,
    eval: &Eval,
    s: &Schemas,
    setup: &Setup,
    pb: &indicatif::ProgressBar,
) -> Result<BatchStats> {
    let mut ph = Phases::default();
    let tx = eval.begin_repeatable().await?;
    let res = async {
        let snap = tx.export_snapshot().await?;
        main.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT {}",
            quote_literal(&snap)
        ))
        .await
        .pg_context(|| "starting the stitching transaction".into())?;
        extract_or_explain(&tx, main, s, setup, all_events(), false, pb).await
    }
    .await;
    tx.end().await;
    let mut x = res?;
    ph.lap("extract");
    x.input.ident_gid = (1..=x.idents.len() as u64).collect();
    let res = engine::resolve(&x.input);
    ph.lap("resolve");
    pb.set_message("writing entities");
    // refill the tables the way pg_restore does: empty them, drop their
    // indexes, COPY the rows in frozen, rebuild the indexes, analyze; all
    // in this transaction, so the previous results stay until it commits
    main.batch_execute(&s.substitute(&format!(
        "TRUNCATE {{{{ps}}}}.identifiers, {{{{ps}}}}.refused_edges, {{{{ps}}}}.entities,
                  {{{{ps}}}}.event_entities, {{{{ps}}}}.entity_merges;
         TRUNCATE {{{{attr}}}}.customer_entities CASCADE;
         {}",
        bulk::BUILD_SETTINGS
    )))
    .await
    .pg_context(|| "clearing the previous stitching results".into())?;
    let big: Vec<String> = [
        "{{ps}}.identifiers",
        "{{ps}}.event_entities",
        "{{ps}}.entities",
        "{{attr}}.customer_entities",
    ]
    .iter()
    .map(|t| s.substitute(t))
    .collect();
    let deferred = bulk::defer_indexes(main, &big).await?;
    ph.lap("truncate");
    let run_id = begin_run(main, s, "full").await?;
    let mut st = write_batch(main, s, setup, &x, &res, &[], run_id, true).await?;
    drop(x);
    drop(res);
    ph.lap("write");
    pb.set_message("building indexes");
    bulk::restore_indexes(main, deferred).await?;
    ph.lap("index");
    main.batch_execute(&s.substitute(
        "DELETE FROM {{ps}}.customer_events_to_process;
         UPDATE {{ps}}.stitching_state SET full_run_pending = false, reason = NULL, last_full_run = now();",
    ))
    .await
    .pg_context(|| "clearing the stitching queue".into())?;
    finish_run(main, s, run_id, &st).await?;
    // fresh statistics, so the next incremental run's look-ups use the indexes
    main.batch_execute(&s.substitute(
        "ANALYZE {{ps}}.identifiers, {{ps}}.event_entities, {{ps}}.entities, {{attr}}.customer_entities",
    ))
    .await
    .pg_context(|| "analyzing the stitching tables".into())?;
    ph.lap("analyze");
    main.batch_execute("COMMIT")
        .await
        .pg_context(|| "committing the stitching run".into())?;
    ph.lap("commit");
    st.phases = ph.done;
    Ok(st)
}

/// Wall-clock time per phase of a run.
struct Phases {
    at: Instant,
    done: Vec<(String, u64)>,
}

impl Default for Phases {
    fn default() -> Self {
        Phases {
            at: Instant::now(),
            done: Vec::new(),
        }
    }
}

impl Phases {
    fn lap(&mut self, name: &str) {
        let now = Instant::now();
        self.done
            .push((name.to_string(), (now - self.at).as_millis() as u64));
        self.at = now;
    }
}

/// One incremental batch: queue rows `seq` in `(lo, hi]`.
async fn incremental_batch(
    main: &Client,
    eval: &Eval,
    s: &Schemas,
    setup: &Setup,
    lo: i64,
    hi: i64,
    pb: &indicatif::ProgressBar,
) -> Result<BatchStats> {
    let tx = eval.begin_repeatable().await?;
    let x = extract_or_explain(&tx, main, s, setup, &queued_events(lo, hi), true, pb).await;
    tx.end().await;
    let mut x = x?;
    main.batch_execute("BEGIN")
        .await
        .pg_context(|| "starting the stitching transaction".into())?;
    let run_id = begin_run(main, s, "incremental").await?;
    // existing labels of the batch's identifiers
    let n = x.idents.len();
    let mut gid = vec![0u64; n];
    let mut ent_ids: Vec<[u8; 16]> = Vec::new();
    if n > 0 {
        main.batch_execute(
            "CREATE TEMP TABLE cdpctl_stitch_keys (idx int4, attribute_id text, value text) ON COMMIT DROP",
        )
        .await
        .pg_context(|| "creating a staging table".into())?;
        let mut w = CopyWriter::start(
            main,
            "pg_temp.cdpctl_stitch_keys (idx, attribute_id, value)",
            "the identifier staging table",
        )
        .await?;
        for i in 0..n as u32 {
            if x.input.ident_blocked[i as usize] != NONE {
                continue;
            }
            w.row(3).await?;
            w.i32(i as i32);
            w.text(setup.attrs[x.idents.attr[i as usize] as usize].as_bytes());
            w.text(x.idents.value(i));
        }
        w.finish().await?;
        main.batch_execute("ANALYZE pg_temp.cdpctl_stitch_keys")
            .await
            .ok();
        let mut ent_idx: HashMap<[u8; 16], u32> = HashMap::new();
        let input = &mut x.input;
        copy_out(
            main,
            &s.substitute(
                "SELECT k.idx, i.id, i.entity_id, en.events, en.seq
                   FROM pg_temp.cdpctl_stitch_keys k
                   JOIN {{ps}}.identifiers i ON hashtextextended(i.value, 0) = hashtextextended(k.value, 0)
                                         AND i.attribute_id = k.attribute_id AND i.value = k.value
                   JOIN {{ps}}.entities en ON en.id = i.entity_id",
            ),
            "looking up existing identifiers",
            |t| {
                let idx = i32::from_be_bytes(t.get(0).unwrap_or(&[0; 4]).try_into()?) as usize;
                gid[idx] = t.i64(1).unwrap_or(0) as u64;
                let ent = t.uuid(2)?;
                let k = *ent_idx.entry(ent).or_insert_with(|| {
                    ent_ids.push(ent);
                    input.entities.push(Existing {
                        events: t.i64(3).unwrap_or(0),
                        seq: t.i64(4).unwrap_or(0),
                    });
                    (ent_ids.len() - 1) as u32
                });
                input.ident_entity[idx] = k;
                Ok(())
            },
        )
        .await?;
        if setup.limited() && !ent_ids.is_empty() {
            let ents: Vec<String> = ent_ids.iter().map(copy::uuid_string).collect();
            let attrs: Vec<String> = setup
                .attrs
                .iter()
                .zip(&setup.limits)
                .filter(|(_, l)| **l > 0)
                .map(|(a, _)| a.clone())
                .collect();
            for r in main
                .query(
                    &s.substitute(
                        "SELECT entity_id::text, attribute_id, id FROM {{ps}}.identifiers
                          WHERE entity_id = ANY($1::text[]::uuid[]) AND attribute_id = ANY($2::text[])",
                    ),
                    &[&ents, &attrs],
                )
                .await
                .pg_context(|| "reading limited identifiers".into())?
            {
                let e: String = r.get(0);
                let a: String = r.get(1);
                let k = ents.iter().position(|x| *x == e).unwrap() as u32;
                let attr = setup.attrs.iter().position(|x| *x == a).unwrap() as u16;
                x.input.entity_limited.push((k, attr, r.get::<_, i64>(2) as u64));
            }
        }
    }
    let max_id: i64 = main
        .query_one(
            &s.substitute("SELECT coalesce(max(id), 0) FROM {{ps}}.identifiers"),
            &[],
        )
        .await
        .pg_context(|| "reading identifier ids".into())?
        .get(0);
    let mut next = max_id as u64;
    for g in gid.iter_mut() {
        if *g == 0 {
            next += 1;
            *g = next;
        }
    }
    x.input.ident_gid = gid;
    let res = engine::resolve(&x.input);
    let st = write_batch(main, s, setup, &x, &res, &ent_ids, run_id, false).await?;
    main.batch_execute(&s.substitute(&format!(
        "DELETE FROM {{{{ps}}}}.customer_events_to_process q
          WHERE q.seq > {lo} AND q.seq <= {hi}
            AND EXISTS (SELECT 1 FROM {{{{ps}}}}.event_entities x WHERE x.event_id = q.event_id)"
    )))
    .await
    .pg_context(|| "removing stitched events from the queue".into())?;
    finish_run(main, s, run_id, &st).await?;
    main.batch_execute("COMMIT")
        .await
        .pg_context(|| "committing the stitching batch".into())?;
    Ok(st)
}

/// Writes a resolved batch: new identifiers, edges, refused edges, event
/// labels, entities, merges and the change journal. `ent_ids` are the
/// existing entities' ids (empty in a full run).
#[allow(clippy::too_many_arguments)]
async fn write_batch(
    main: &Client,
    s: &Schemas,
    setup: &Setup,
    x: &Extracted,
    res: &Resolution,
    ent_ids: &[[u8; 16]],
    run_id: i64,
    full: bool,
) -> Result<BatchStats> {
    // a run from scratch truncated the tables in this transaction: its rows
    // go in frozen, so nothing rewrites them later to set hint bits
    let start = |target: &'static str, what: &'static str| {
        let target = s.substitute(target);
        async move {
            if full {
                CopyWriter::start_frozen(main, &target, what).await
            } else {
                CopyWriter::start(main, &target, what).await
            }
        }
    };
    let inp = &x.input;
    let mut st = BatchStats {
        events: x.ev_ids.len() as u64,
        ..Default::default()
    };
    // entity id per component
    let comp_ids: Vec<[u8; 16]> = res
        .comps
        .iter()
        .map(|c| {
            if c.entity == NONE {
                new_uuid()
            } else {
                ent_ids[c.entity as usize]
            }
        })
        .collect();
    // new identifiers
    let mut w = start(
        "{{ps}}.identifiers (id, attribute_id, value, entity_id)",
        "identifiers",
    )
    .await?;
    for i in 0..inp.ident_attr.len() {
        let c = res.ident_comp[i];
        if c == NONE || inp.ident_entity[i] != NONE {
            continue;
        }
        w.row(4).await?;
        w.i64(inp.ident_gid[i] as i64);
        w.text(setup.attrs[inp.ident_attr[i] as usize].as_bytes());
        w.text(x.idents.value(i as u32));
        w.uuid(&comp_ids[c as usize]);
    }
    st.new_identifiers = w.finish().await?;
    // edges: counted, not stored (`stitch explain` derives them on demand)
    st.edges = res.edge_ok.iter().filter(|ok| **ok).count() as u64;
    // refused edges
    if !res.refused.is_empty() {
        let mut w = start(
            "{{ps}}.refused_edges (event_id, attribute_id, value, reason, run_id)",
            "refused_edges",
        )
        .await?;
        for (e, i, why) in &res.refused {
            let reason = match why {
                Refusal::Blocked { rule } => {
                    st.refused_blocked += 1;
                    setup.blocklist.reason(*rule)
                }
                Refusal::Limit { attr, max } => {
                    st.refused_limit += 1;
                    format!(
                        "limit: an entity holds at most {max} value(s) of {}",
                        setup.attrs[*attr as usize]
                    )
                }
            };
            w.row(5).await?;
            w.uuid(&x.ev_ids[*e as usize]);
            w.text(setup.attrs[inp.ident_attr[*i as usize] as usize].as_bytes());
            w.text(x.idents.value(*i));
            w.text(reason.as_bytes());
            w.i64(run_id);
        }
        w.finish().await?;
    }
    // event labels
    let mut w = start(
        "{{ps}}.event_entities (event_id, entity_id)",
        "event_entities",
    )
    .await?;
    for (e, id) in x.ev_ids.iter().enumerate() {
        w.row(2).await?;
        w.uuid(id);
        w.uuid(&comp_ids[res.ev_comp[e] as usize]);
    }
    w.finish().await?;
    // event keys gained per component (for the journal of an incremental run)
    let mut comp_keys: Vec<Vec<u16>> = vec![Vec::new(); if full { 0 } else { res.comps.len() }];
    for (e, &c) in res.ev_comp.iter().enumerate().filter(|_| !full) {
        let v = &mut comp_keys[c as usize];
        let k = x.ev_key[e];
        if !v.contains(&k) {
            v.push(k);
        }
    }
    // new entities
    let mut w = start("{{ps}}.entities (id, events)", "entities").await?;
    for (c, comp) in res.comps.iter().enumerate() {
        if comp.entity == NONE {
            w.row(2).await?;
            w.uuid(&comp_ids[c]);
            w.i64(comp.new_events as i64);
        }
    }
    st.entities_created = w.finish().await?;
    let mut w = start("{{attr}}.customer_entities (id)", "customer_entities").await?;
    for (c, comp) in res.comps.iter().enumerate() {
        if comp.entity == NONE {
            w.row(1).await?;
            w.uuid(&comp_ids[c]);
        }
    }
    w.finish().await?;
    // existing entities that grew or absorbed others
    if res.comps.iter().any(|c| c.entity != NONE) {
        main.batch_execute(
            "CREATE TEMP TABLE cdpctl_stitch_grow (id uuid, added bigint) ON COMMIT DROP;
             CREATE TEMP TABLE cdpctl_stitch_merges (absorbed uuid, survivor uuid, bridge_event uuid,
                 bridge_identifier bigint, absorbed_events bigint) ON COMMIT DROP;",
        )
        .await
        .pg_context(|| "creating staging tables".into())?;
        let mut w = CopyWriter::start(
            main,
            "pg_temp.cdpctl_stitch_grow (id, added)",
            "the entity staging table",
        )
        .await?;
        for comp in &res.comps {
            if comp.entity != NONE {
                w.row(2).await?;
                w.uuid(&ent_ids[comp.entity as usize]);
                w.i64(comp.new_events as i64 + comp.absorbed_events);
            }
        }
        st.entities_updated = w.finish().await?;
        main.batch_execute("ANALYZE pg_temp.cdpctl_stitch_grow")
            .await
            .pg_context(|| "analyzing the entity staging table".into())?;
        if !res.merges.is_empty() {
            let mut w = CopyWriter::start(
                main,
                "pg_temp.cdpctl_stitch_merges (absorbed, survivor, bridge_event, bridge_identifier, absorbed_events)",
                "the merge staging table",
            )
            .await?;
            for m in &res.merges {
                w.row(5).await?;
                w.uuid(&ent_ids[m.absorbed as usize]);
                w.uuid(&ent_ids[m.survivor as usize]);
                w.uuid(&x.ev_ids[m.event as usize]);
                w.i64(inp.ident_gid[m.ident as usize] as i64);
                w.i64(inp.entities[m.absorbed as usize].events);
            }
            st.merges = w.finish().await?;
            // statistics, so the joins below use the entity_id indexes
            // instead of scanning the big tables
            main.batch_execute("ANALYZE pg_temp.cdpctl_stitch_merges")
                .await
                .pg_context(|| "analyzing the merge staging table".into())?;
            main.batch_execute(&s.substitute(&format!(
                "UPDATE {{{{ps}}}}.identifiers i SET entity_id = m.survivor
                   FROM pg_temp.cdpctl_stitch_merges m WHERE i.entity_id = m.absorbed;
                 UPDATE {{{{ps}}}}.event_entities x SET entity_id = m.survivor
                   FROM pg_temp.cdpctl_stitch_merges m WHERE x.entity_id = m.absorbed;
                 INSERT INTO {{{{ps}}}}.entity_merges (absorbed, survivor, run_id, bridge_event_id, bridge_identifier_id, absorbed_events)
                   SELECT absorbed, survivor, {run_id}, bridge_event, bridge_identifier, absorbed_events
                     FROM pg_temp.cdpctl_stitch_merges;
                 DELETE FROM {{{{ps}}}}.entities e USING pg_temp.cdpctl_stitch_merges m WHERE e.id = m.absorbed;
                 DELETE FROM {{{{attr}}}}.customer_entities c USING pg_temp.cdpctl_stitch_merges m WHERE c.id = m.absorbed;"
            )))
            .await
            .pg_context(|| "applying merges".into())?;
        }
        main.batch_execute(&s.substitute(
            "UPDATE {{ps}}.entities e SET events = e.events + g.added
               FROM pg_temp.cdpctl_stitch_grow g WHERE e.id = g.id;
             INSERT INTO {{attr}}.customer_entities (id)
               SELECT id FROM pg_temp.cdpctl_stitch_grow
             ON CONFLICT (id) DO UPDATE SET calculated = NULL;",
        ))
        .await
        .pg_context(|| "marking entities for attribute calculation".into())?;
    }
    // the change journal: after a run from scratch one row says "every
    // entity was rebuilt" (and replaces what was journalled about the old
    // entities); else one COPY of what changed
    if full {
        main.batch_execute(&s.substitute(
            "DELETE FROM {{cdpctl}}.entity_changes;
             INSERT INTO {{cdpctl}}.entity_changes (entity_id, kind)
             VALUES ('00000000-0000-0000-0000-000000000000', 'rebuilt')",
        ))
        .await
        .pg_context(|| "journalling the rebuild in entity_changes".into())?;
        return Ok(st);
    }
    let mut w = CopyWriter::start(
        main,
        &s.substitute("{{cdpctl}}.entity_changes (entity_id, kind, items)"),
        "entity_changes",
    )
    .await?;
    for (c, comp) in res.comps.iter().enumerate() {
        if comp.new_events > 0 {
            w.row(3).await?;
            w.uuid(&comp_ids[c]);
            w.text(b"events");
            w.text_array(comp_keys[c].iter().map(|k| x.keys[*k as usize].as_bytes()));
        }
        if !comp.absorbed.is_empty() {
            let ids: Vec<String> = comp
                .absorbed
                .iter()
                .map(|k| copy::uuid_string(&ent_ids[*k as usize]))
                .collect();
            w.row(3).await?;
            w.uuid(&comp_ids[c]);
            w.text(b"merged");
            w.text_array(ids.iter().map(|s| s.as_bytes()));
            let me = copy::uuid_string(&comp_ids[c]);
            for k in &comp.absorbed {
                w.row(3).await?;
                w.uuid(&ent_ids[*k as usize]);
                w.text(b"removed");
                w.text_array(std::iter::once(me.as_bytes()));
            }
        }
    }
    w.finish().await?;
    Ok(st)
}

/// `status` lines for stitching.
pub async fn status_items(db: &Db) -> Result<Vec<Item>> {
    if !db.relation_exists("ps", "stitching_state").await? {
        return Ok(Vec::new());
    }
    let s = &db.schemas;
    let mut v = Vec::new();
    match backlog(db).await? {
        Some(n) => v.push(Item::new("stitching", "events waiting for stitching", n)),
        None => v.push(Item::new(
            "stitching",
            "events waiting for stitching",
            "queue table dropped: the next run stitches everything from scratch",
        )),
    }
    let r = db
        .client
        .query_one(
            &s.substitute(
                "SELECT st.full_run_pending, st.reason,
                        (SELECT count(*) FROM {{ps}}.entities),
                        (SELECT count(*) FROM {{ps}}.identifiers),
                        (SELECT count(*) FROM {{ps}}.entity_merges),
                        (SELECT count(*) FROM {{ps}}.refused_edges WHERE reason LIKE 'blocklist%'),
                        (SELECT count(*) FROM {{ps}}.refused_edges WHERE reason LIKE 'limit%'),
                        (SELECT to_char(max(finished_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
                           FROM {{ps}}.stitching_runs)
                   FROM {{ps}}.stitching_state st",
            ),
            &[],
        )
        .await
        .pg_context(|| "reading stitching status".into())?;
    if r.get::<_, bool>(0) {
        v.push(Item::new(
            "stitching",
            "next run",
            format!(
                "from scratch ({})",
                r.get::<_, Option<String>>(1).unwrap_or_default()
            ),
        ));
    }
    v.push(Item::new("stitching", "entities", r.get::<_, i64>(2)));
    v.push(Item::new("stitching", "identifiers", r.get::<_, i64>(3)));
    v.push(Item::new("stitching", "merges", r.get::<_, i64>(4)));
    v.push(Item::new(
        "stitching",
        "refused edges (blocklist)",
        r.get::<_, i64>(5),
    ));
    v.push(Item::new(
        "stitching",
        "refused edges (limits)",
        r.get::<_, i64>(6),
    ));
    v.push(Item::new(
        "stitching",
        "last run",
        r.get::<_, Option<String>>(7)
            .unwrap_or_else(|| "never".into()),
    ));
    Ok(v)
}

/// Helper for callers: the summary as JSON.
pub fn summary_json(sum: &StitchSummary) -> Result<serde_json::Value> {
    serde_json::to_value(sum).context("serializing the stitching summary")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_section_errors_name_the_key() {
        let cfg =
            crate::config::Config::from_json(r#"{"stitching": {"batch_sise": 5}}"#, "t").unwrap();
        let e = StitchConfig::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("stitching") && e.contains("batch_sise"), "{e}");
        let cfg =
            crate::config::Config::from_json(r#"{"stitching": {"batch_size": "x"}}"#, "t").unwrap();
        let e = StitchConfig::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("key \"stitching.batch_size\""), "{e}");
        let cfg =
            crate::config::Config::from_json(r#"{"stitching": {"batch_size": 10}}"#, "t").unwrap();
        assert_eq!(StitchConfig::from_config(&cfg).unwrap().batch_size, 10);
    }
}
