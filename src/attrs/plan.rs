//! Turns validated definitions into the SQL of one calculation: a single
//! pass over the batch's events that evaluates every built-in attribute's
//! expressions as columns of one row per event, plus one set-based query per
//! custom attribute. Building is pure; `prepare` checks every piece against
//! the database so errors name the attribute.

use anyhow::Result;

use super::definition::{Definition, Kind};
use crate::db::{quote_literal, Db, PgError};

/// The batch's entities (a temporary table, one per session).
pub const BATCH: &str = "pg_temp.cdpctl_calc_batch";
/// The entities whose values changed, with the changed attributes' ids.
pub const STAGE: &str = "pg_temp.cdpctl_calc_changed";
/// The batch's events, copied once per batch when custom queries need them
/// (`idx` = the entity's position in the batch, indexed): the custom
/// queries' `base` and the pass read this instead of joining the event
/// tables again for every custom attribute.
pub const EVENTS: &str = "pg_temp.cdpctl_calc_events";

/// How one built-in attribute's observations arrive in the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One nullable text column (value), plus a weight column if `weight`.
    Scalar { weight: bool },
    /// One text[] column: `stride` elements per value: value, then the
    /// inner weight if `w1`, then the outer weight if `w2`.
    Array { w1: bool, w2: bool },
}

impl Layout {
    pub fn columns(self) -> usize {
        match self {
            Layout::Scalar { weight } => 1 + weight as usize,
            Layout::Array { .. } => 1,
        }
    }
}

/// A prepared calculation.
#[derive(Debug, Clone)]
pub struct Plan {
    pub defs: Vec<Definition>,
    /// Built-in attributes (indexes into `defs`) with their layout, in the
    /// order of their columns in the pass.
    pub builtin: Vec<(usize, Layout)>,
    /// Custom attributes: index into `defs`, and whether the query's value
    /// is `numeric` (written in canonical form, like the built-in types).
    pub customs: Vec<(usize, bool)>,
    /// Whether the pass carries event time and id (first/last present).
    pub timed: bool,
    pub pass_sql: String,
    /// The same pass over the batch's materialised events ([`EVENTS`]).
    pub pass_sql_materialized: String,
}

/// The events of the batch, exposing exactly the event columns (so
/// configured expressions can use `payload`, `type`, ... unqualified).
pub fn events_scope(db: &Db) -> String {
    let s = &db.schemas;
    format!(
        "(SELECT b.idx AS cdpctl_idx, ev.id, ev.source_id, ev.type, ev.version, ev.event_time, ev.payload
            FROM {BATCH} b
            JOIN {ps}.event_entities ee ON ee.entity_id = b.id
            JOIN {ce}.customer_events ev ON ev.id = ee.event_id) AS e",
        ps = s.ps,
        ce = s.ce
    )
}

fn in_list(col: &str, items: &[String]) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    let lits: Vec<String> = items.iter().map(|i| quote_literal(i)).collect();
    Some(format!("e.{col} IN ({})", lits.join(", ")))
}

/// The event-level condition of a definition (sources, types, versions,
/// filter); `None` when every event counts.
pub fn condition(d: &Definition) -> Option<String> {
    let parts: Vec<String> = [
        in_list("source_id", &d.sources),
        in_list("type", &d.types),
        in_list("version", &d.versions),
        d.filter.as_ref().map(|f| format!("({f})")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(" AND "))
    }
}

fn when(cond: &Option<String>, expr: String) -> String {
    match cond {
        Some(c) => format!("CASE WHEN {c} THEN {expr} END"),
        None => expr,
    }
}

/// Whether this definition needs the array layout regardless of probing.
pub fn needs_array(d: &Definition) -> bool {
    d.has_outer()
}

/// The pass columns of one built-in attribute.
pub fn columns(d: &Definition, layout: Layout) -> Vec<String> {
    let cond = condition(d);
    let weighted = d.kind.weighted();
    match layout {
        Layout::Scalar { weight } => {
            let mut v = vec![when(&cond, format!("({})::text", d.value))];
            if weight {
                v.push(when(
                    &cond,
                    format!("({})::text", d.weight.as_deref().unwrap_or("1")),
                ));
            }
            v
        }
        Layout::Array { w1, w2 } => {
            let inner = format!(
                "(SELECT ({}) AS value, ({}) AS weight) AS v",
                d.value,
                d.weight.as_deref().unwrap_or("1")
            );
            let (src, val) = if d.has_outer() {
                let outer = format!(
                    "(SELECT * FROM (SELECT ({}) AS value, ({}) AS weight FROM (SELECT v.value, v.weight) AS v) AS o{}) AS o",
                    d.outer_value.as_deref().unwrap_or("value"),
                    d.outer_weight.as_deref().unwrap_or("1"),
                    d.outer_filter
                        .as_ref()
                        .map(|f| format!(" WHERE ({f})"))
                        .unwrap_or_default()
                );
                (format!("{inner} CROSS JOIN LATERAL {outer}"), "o")
            } else {
                (inner, "v")
            };
            let elems = if weighted && (w1 || w2) {
                let mut parts = vec![format!("{val}.value::text")];
                if w1 {
                    parts.push("v.weight::text".into());
                }
                if w2 {
                    parts.push("o.weight::text".into());
                }
                format!("unnest(ARRAY[{}])", parts.join(", "))
            } else {
                format!("{val}.value::text")
            };
            vec![when(
                &cond,
                format!("ARRAY(SELECT {elems} FROM {src} WHERE {val}.value IS NOT NULL)"),
            )]
        }
    }
}

/// The layout a definition gets when its inner value is not a
/// set-returning expression (`srf` says it is).
pub fn layout_for(d: &Definition, srf: bool) -> Layout {
    let weighted = d.kind.weighted();
    if needs_array(d) || srf {
        Layout::Array {
            w1: weighted && d.weight.is_some(),
            w2: weighted && d.outer_weight.is_some(),
        }
    } else {
        Layout::Scalar {
            weight: weighted && d.weight.is_some(),
        }
    }
}

/// The whole pass: `cdpctl_idx, event_time, id, <columns of every
/// built-in attribute>` for every event of the batch.
pub fn pass_sql(
    scope: &str,
    defs: &[Definition],
    builtin: &[(usize, Layout)],
    timed: bool,
) -> String {
    let mut cols = vec!["e.cdpctl_idx".to_string()];
    if timed {
        cols.push("e.event_time".into());
        cols.push("e.id".into());
    } else {
        cols.push("NULL::timestamptz".into());
        cols.push("NULL::uuid".into());
    }
    for (i, layout) in builtin {
        cols.extend(columns(&defs[*i], *layout));
    }
    format!("SELECT {}\n  FROM {}", cols.join(",\n       "), scope)
}

/// The batch's events read from [`EVENTS`] (filled by [`fill_events`]),
/// with the same columns as [`events_scope`].
pub fn materialized_scope() -> String {
    format!(
        "(SELECT idx AS cdpctl_idx, id, source_id, type, version, event_time, payload
            FROM {EVENTS}) AS e"
    )
}

/// `base` for one entity of the batch (`b` is the batch row): its events
/// in [`EVENTS`], found by the index on `idx`.
pub fn base_cte() -> String {
    format!(
        "base AS (SELECT ev.id, ev.source_id, ev.type, ev.version, ev.event_time, ev.payload
                    FROM {EVENTS} ev
                   WHERE ev.idx = b.idx)"
    )
}

/// Copies the batch's events into [`EVENTS`] on the evaluation session (one
/// join of the event tables per batch), indexed by entity, and analyzes it.
pub async fn fill_events(db: &Db) -> Result<()> {
    db.eval()
        .await?
        .scratch(
            &fill_events_sql(db),
            "copying the batch's events into a temporary table",
        )
        .await
}

/// The statements of [`fill_events`] (the session must have [`BATCH`] and
/// [`EVENTS`], see [`events_table_sql`]).
pub fn fill_events_sql(db: &Db) -> String {
    let s = &db.schemas;
    format!(
        "TRUNCATE {EVENTS};
         DROP INDEX IF EXISTS pg_temp.cdpctl_calc_events_idx;
         INSERT INTO {EVENTS} (idx, id, source_id, type, version, event_time, payload)
         SELECT b.idx, ev.id, ev.source_id, ev.type, ev.version, ev.event_time, ev.payload
           FROM {BATCH} b
           JOIN {ps}.event_entities ee ON ee.entity_id = b.id
           JOIN {ce}.customer_events ev ON ev.id = ee.event_id;
         CREATE INDEX cdpctl_calc_events_idx ON {EVENTS} (idx);
         ANALYZE {EVENTS};",
        ps = s.ps,
        ce = s.ce
    )
}

/// Creates [`EVENTS`] in a session (idempotent).
pub fn events_table_sql(db: &Db) -> String {
    format!(
        "CREATE TEMP TABLE IF NOT EXISTS cdpctl_calc_events AS
           SELECT 0::int4 AS idx, id, source_id, type, version, event_time, payload
             FROM {ce}.customer_events WITH NO DATA",
        ce = db.schemas.ce
    )
}

/// A custom attribute over every entity of the batch: `idx, value` (reads
/// [`EVENTS`], filled by [`fill_events`]).
pub fn custom_sql(d: &Definition, numeric: bool) -> String {
    format!(
        "SELECT b.idx, {}::text
           FROM {BATCH} b
          CROSS JOIN LATERAL (WITH {} SELECT cq.value FROM ({}\n) AS cq) AS q
          WHERE q.value IS NOT NULL",
        if numeric {
            "trim_scale(q.value)"
        } else {
            "q.value"
        },
        base_cte(),
        d.query
    )
}

/// The custom query alone, over an empty `base`, to read its columns.
pub fn custom_shape_sql(db: &Db, d: &Definition) -> String {
    let s = &db.schemas;
    format!(
        "WITH base AS (SELECT ev.id, ev.source_id, ev.type, ev.version, ev.event_time, ev.payload
                         FROM {ce}.customer_events ev WHERE false)
         SELECT * FROM ({}\n) AS cq",
        d.query,
        ce = s.ce
    )
}

/// Creates the temporary tables of the calculation (idempotent): the batch
/// and the changed pairs on the main session (the write side), the batch
/// and its events on the evaluation session (where configured SQL reads
/// them). The evaluation session gets local buffers large enough for a
/// batch's events (only settable before it touches a temporary table, so a
/// failure is ignored).
pub async fn ensure_temp_tables(db: &Db) -> Result<()> {
    use crate::db::PgResultExt;
    db.client
        .batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS cdpctl_calc_batch (idx int4 PRIMARY KEY, id uuid NOT NULL, seen text);
             CREATE TEMP TABLE IF NOT EXISTS cdpctl_calc_changed (idx int4 NOT NULL, items text[] NOT NULL);
             TRUNCATE {BATCH}, {STAGE};"
        ))
        .await
        .pg_context(|| "creating the temporary tables of the calculation".into())?;
    let eval = db.eval().await?;
    let _ = eval.scratch("SET temp_buffers = '256MB'", "").await;
    eval.scratch(
        &format!(
            "CREATE TEMP TABLE IF NOT EXISTS cdpctl_calc_batch (idx int4 PRIMARY KEY, id uuid NOT NULL, seen text);
             {};
             TRUNCATE {BATCH}, {EVENTS};",
            events_table_sql(db)
        ),
        "creating the temporary tables of the evaluation",
    )
    .await
}

fn pg_message(e: tokio_postgres::Error) -> String {
    PgError::from(e).message
}

fn is_srf_in_case(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        d.message()
            .contains("set-returning functions are not allowed")
    })
}

/// Validates every definition against the database and builds the plan.
/// Errors (one per broken attribute, each naming it) are returned together.
pub async fn prepare(db: &Db, defs: Vec<Definition>) -> std::result::Result<Plan, Vec<String>> {
    // on the evaluation session, only prepared (parsed and described)
    let eval = db.eval().await.map_err(|e| vec![format!("{e:#}")])?;
    let scope = events_scope(db);
    let mut errors = Vec::new();
    let mut builtin = Vec::new();
    let mut customs = Vec::new();
    for (i, d) in defs.iter().enumerate() {
        if d.kind == Kind::Custom {
            match eval.prepare(&custom_shape_sql(db, d)).await {
                Err(e) => errors.push(format!(
                    "attribute \"{}\": custom query: {}",
                    d.id,
                    pg_message(e)
                )),
                Ok(stmt) => {
                    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
                    if names != ["value"] {
                        errors.push(format!(
                            "attribute \"{}\": custom query must return one column named \"value\", got {} column{} ({})",
                            d.id,
                            names.len(),
                            if names.len() == 1 { "" } else { "s" },
                            names.join(", ")
                        ));
                        continue;
                    }
                    let numeric =
                        stmt.columns()[0].type_() == &tokio_postgres::types::Type::NUMERIC;
                    if let Err(e) = eval.prepare(&custom_sql(d, numeric)).await {
                        errors.push(format!(
                            "attribute \"{}\": custom query: {}",
                            d.id,
                            pg_message(e)
                        ));
                    } else {
                        customs.push((i, numeric));
                    }
                }
            }
            continue;
        }
        let mut layout = layout_for(d, false);
        let probe =
            |layout: Layout| format!("SELECT {} FROM {scope}", columns(d, layout).join(", "));
        let mut res = eval.prepare(&probe(layout)).await;
        if let Err(e) = &res {
            if is_srf_in_case(e) || (matches!(layout, Layout::Scalar { .. }) && srf_hint(e)) {
                layout = layout_for(d, true);
                res = eval.prepare(&probe(layout)).await;
            }
        }
        match res {
            Ok(_) => builtin.push((i, layout)),
            Err(e) => errors.push(format!("attribute \"{}\": {}", d.id, pg_message(e))),
        }
    }
    // A set-returning value without a condition is not caught by CASE:
    // probe each scalar one alone for returning sets.
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut fixed = Vec::new();
    for (i, layout) in builtin {
        let d = &defs[i];
        if matches!(layout, Layout::Scalar { .. }) && condition(d).is_none() {
            let probe = format!(
                "SELECT CASE WHEN e.cdpctl_idx IS NOT NULL THEN ({})::text END FROM {scope}",
                d.value
            );
            if let Err(e) = eval.prepare(&probe).await {
                if is_srf_in_case(&e) {
                    fixed.push((i, layout_for(d, true)));
                    continue;
                }
            }
        }
        fixed.push((i, layout));
    }
    let timed = fixed.iter().any(|(i, _)| defs[*i].kind.timed());
    let pass_sql_materialized = pass_sql(&materialized_scope(), &defs, &fixed, timed);
    let pass_sql = pass_sql(&scope, &defs, &fixed, timed);
    Ok(Plan {
        defs,
        builtin: fixed,
        customs,
        timed,
        pass_sql,
        pass_sql_materialized,
    })
}

fn srf_hint(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .and_then(|d| d.hint())
        .is_some_and(|h| h.contains("set-returning"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(doc: serde_json::Value) -> Definition {
        Definition::parse("a", Some(&doc)).unwrap()
    }

    #[test]
    fn conditions_quote_literals() {
        let d = def(
            json!({"type": "last", "value": "x", "sources": ["web", "o'brien"],
            "types": ["t"], "filter": "payload ? 'k'"}),
        );
        assert_eq!(
            condition(&d).unwrap(),
            "e.source_id IN ('web', 'o''brien') AND e.type IN ('t') AND (payload ? 'k')"
        );
        assert_eq!(condition(&def(json!({"type": "last", "value": "x"}))), None);
    }

    #[test]
    fn scalar_and_array_columns() {
        let d = def(
            json!({"type": "most_frequent", "value": "payload->>'p'", "weight": "2",
            "types": ["view"]}),
        );
        let l = layout_for(&d, false);
        assert_eq!(l, Layout::Scalar { weight: true });
        let cols = columns(&d, l);
        assert_eq!(cols.len(), 2);
        assert!(cols[0].starts_with("CASE WHEN e.type IN ('view') THEN (payload->>'p')::text"));
        let o = def(json!({"type": "most_frequent", "value": "payload->'items'",
            "outer_value": "jsonb_array_elements(value)->>'c'", "outer_weight": "2",
            "outer_filter": "value <> 'x'"}));
        let l = layout_for(&o, false);
        assert_eq!(
            l,
            Layout::Array {
                w1: false,
                w2: true
            }
        );
        let c = &columns(&o, l)[0];
        assert!(
            c.starts_with("ARRAY(SELECT unnest(ARRAY[o.value::text, o.weight::text])"),
            "{c}"
        );
        assert!(c.contains("WHERE (value <> 'x')"), "{c}");
        // weights are not shipped for types that do not use them
        let s = def(json!({"type": "sum", "value": "x", "weight": "2"}));
        assert_eq!(layout_for(&s, false), Layout::Scalar { weight: false });
    }
}
