//! One `calc-audiences` run.
//!
//! 1. Read the entity change journal into a session temp table (the rows are
//!    deleted only when the run commits, so rows committed meanwhile wait for
//!    the next run).
//! 2. Decide per group: full recalculation (`--all`, `--group`, a new or
//!    changed definition, a changed context key, the daily refresh of groups
//!    that change with time), incremental (the entities whose journal rows
//!    touch the group's dependencies), or skipped.
//! 3. Evaluate in batches: one feature statement per batch for all groups
//!    involved, then one set-based statement per group that finds the
//!    membership differences. Both run on the evaluation session (group
//!    predicates may hold configured custom SQL): prepared, read-only, as
//!    the unprivileged role; the differences stream back into the main
//!    session by COPY.
//! 4. Apply the differences, the member journal, the segment queue of linked
//!    groups and the group bookkeeping, and delete the consumed journal rows,
//!    in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::rules::{self, Batch, Compiled, SqlEnv};
use super::{load_groups, Group, Settings};
use crate::db::{quote_literal, Db, PgResultExt, Schemas};
use crate::stitch::copy::CopyWriter;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Recalculate every group for every entity.
    pub all: bool,
    /// Recalculate only these groups, in full (the journal is left alone).
    pub groups: Vec<String>,
    /// Reference time for activity windows (default: the database's now()).
    pub now: Option<DateTime<Utc>>,
    /// Evaluate and report, change nothing.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct GroupReport {
    pub id: String,
    /// full | incremental | skipped
    pub mode: String,
    pub reason: String,
    /// Entities evaluated for this group (full: every entity).
    pub evaluated: i64,
    pub added: i64,
    pub removed: i64,
    pub members: i64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RunReport {
    pub now: String,
    pub dry_run: bool,
    pub journal_rows: i64,
    pub changed_entities: i64,
    pub removed_entities: i64,
    /// Journal entities no group had evaluated yet: evaluated by every group.
    pub new_entities: i64,
    pub groups_evaluated: usize,
    pub groups_skipped: usize,
    pub batches: usize,
    pub added: i64,
    pub removed: i64,
    pub segment_changes: i64,
    pub unmapped_contacts: i64,
    pub seconds: f64,
    /// Seconds per phase: plan (journal, candidates, batches), features,
    /// predicates, apply.
    pub timings: BTreeMap<String, f64>,
    pub groups: Vec<GroupReport>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Full,
    Incremental,
}

struct Plan {
    group: Group,
    compiled: Compiled,
    hash: String,
    context_stamp: Option<String>,
    mode: Mode,
    reason: String,
}

async fn exec(c: &Client, sql: &str, what: &str) -> Result<u64> {
    c.execute(sql, &[]).await.pg_context(|| what.to_string())
}

/// Runs one calculation. `progress` receives (done, total) batch counts.
pub async fn run(
    db: &Db,
    settings: &Settings,
    opts: &RunOptions,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<RunReport> {
    let started = Instant::now();
    let s = db.schemas.clone();
    let c = &db.client;
    let now: DateTime<Utc> = match opts.now {
        Some(t) => t,
        None => c.query_one("SELECT now()", &[]).await?.get(0),
    };
    let env = SqlEnv {
        schemas: s.clone(),
        now,
    };
    let mut groups = load_groups(db, true).await?;
    if !opts.groups.is_empty() {
        for g in &opts.groups {
            if !groups.iter().any(|x| &x.id == g) {
                bail!(
                    "group \"{g}\" does not exist or is disabled; list the groups with `cdpctl calc-audiences --list`"
                );
            }
        }
        groups.retain(|g| opts.groups.contains(&g.id));
    }
    let consume = opts.groups.is_empty();
    // a stitching run from scratch journals one 'rebuilt' row: every entity
    // may have changed, so every group is recalculated in full
    let rebuilt = consume
        && c.query_one(
            &s.substitute(
                "SELECT EXISTS (SELECT 1 FROM {{cdpctl}}.entity_changes WHERE kind = 'rebuilt')",
            ),
            &[],
        )
        .await
        .pg_context(|| "reading the entity change journal".into())?
        .get::<_, bool>(0);

    // context stamps: the newest modification of the keys each group reads
    let ctx_keys: BTreeSet<String> = groups
        .iter()
        .flat_map(|g| g.rule.deps().context.into_iter())
        .collect();
    let ctx_mod: BTreeMap<String, String> = if ctx_keys.is_empty() {
        BTreeMap::new()
    } else {
        let keys: Vec<String> = ctx_keys.into_iter().collect();
        c.query(
            &s.substitute("SELECT key, coalesce(modified::text, '') || '|' || coalesce(md5(value), '') FROM {{attr}}.context WHERE key = ANY($1)"),
            &[&keys],
        )
        .await
        .pg_context(|| "reading context keys".into())?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };

    let refresh = chrono::Duration::hours(settings.time_window_refresh_hours as i64);
    let plans: Vec<Plan> = groups
        .into_iter()
        .map(|g| {
            let compiled = rules::compile(&g.rule, &env);
            let hash = rules::definition_hash(&g.definition);
            let context_stamp = (!compiled.deps.context.is_empty()).then(|| {
                compiled
                    .deps
                    .context
                    .iter()
                    .map(|k| format!("{k}={}", ctx_mod.get(k).map(String::as_str).unwrap_or("-")))
                    .collect::<Vec<_>>()
                    .join(";")
            });
            let (mode, reason) = if opts.all {
                (Mode::Full, "--all")
            } else if !opts.groups.is_empty() {
                (Mode::Full, "--group")
            } else if rebuilt {
                (Mode::Full, "stitching rebuilt every entity")
            } else if g.evaluated_hash.as_deref() != Some(hash.as_str()) {
                (
                    Mode::Full,
                    if g.evaluated_hash.is_none() {
                        "new group"
                    } else {
                        "definition changed"
                    },
                )
            } else if context_stamp.is_some() && context_stamp != g.context_stamp {
                (Mode::Full, "context changed")
            } else if compiled.deps.time && g.last_full_at.is_none_or(|t| now - t >= refresh) {
                (Mode::Full, "daily refresh (time window)")
            } else {
                (Mode::Incremental, "")
            };
            Plan {
                group: g,
                compiled,
                hash,
                context_stamp,
                mode,
                reason: reason.to_string(),
            }
        })
        .collect();

    // session temp tables; JIT compilation costs more than it saves on the
    // many medium-sized statements of a run
    c.batch_execute(
        "SET jit = off;
         DROP TABLE IF EXISTS pg_temp.grp_journal, pg_temp.grp_removed, pg_temp.grp_cand, pg_temp.grp_cand_ids,
                              pg_temp.grp_batch, pg_temp.grp_diff, pg_temp.grp_feat, pg_temp.grp_dep_attr, pg_temp.grp_dep_event,
                              pg_temp.grp_new, pg_temp.grp_seen;
         CREATE TEMP TABLE grp_journal (seq bigint, entity_id uuid, kind text, items text[]);
         CREATE TEMP TABLE grp_removed (id uuid PRIMARY KEY);
         CREATE TEMP TABLE grp_new (id uuid PRIMARY KEY);
         CREATE TEMP TABLE grp_seen (id uuid);
         CREATE TEMP TABLE grp_cand (group_id text, id uuid);
         CREATE TEMP TABLE grp_batch (id uuid PRIMARY KEY);
         CREATE TEMP TABLE grp_diff (group_id text, entity_id uuid, verb text, PRIMARY KEY (group_id, entity_id));
         CREATE TEMP TABLE grp_dep_attr (group_id text, attribute_id text);
         CREATE TEMP TABLE grp_dep_event (group_id text, source text, type text, version text);",
    )
    .await
    .pg_context(|| "creating the run's temp tables".into())?;
    // the evaluation session's: the batch's candidates and features, which
    // the predicates read
    db.eval()
        .await?
        .scratch(
            "DROP TABLE IF EXISTS pg_temp.grp_cand, pg_temp.grp_batch, pg_temp.grp_feat;
             CREATE TEMP TABLE grp_cand (group_id text, id uuid);
             CREATE INDEX ON grp_cand (group_id, id);
             CREATE TEMP TABLE grp_batch (id uuid PRIMARY KEY);",
            "creating the evaluation's temp tables",
        )
        .await?;

    let mut report = RunReport {
        now: now.to_rfc3339(),
        dry_run: opts.dry_run,
        ..RunReport::default()
    };
    if consume {
        report.journal_rows = exec(
            c,
            &s.substitute("INSERT INTO grp_journal SELECT seq, entity_id, kind, items FROM {{cdpctl}}.entity_changes"),
            "reading the entity change journal",
        )
        .await? as i64;
        if !rebuilt
            && c.query_one(
                "SELECT EXISTS (SELECT 1 FROM grp_journal WHERE kind = 'rebuilt')",
                &[],
            )
            .await?
            .get::<_, bool>(0)
        {
            bail!("stitching rebuilt every entity while this run was planned; nothing was changed, run calc-audiences again");
        }
        exec(
            c,
            &s.substitute(
                "INSERT INTO grp_removed SELECT entity_id FROM grp_journal WHERE kind = 'removed'
                 UNION SELECT unnest(items)::uuid FROM grp_journal WHERE kind = 'merged'
                 UNION SELECT m.entity_id FROM {{audience}}.group_members m
                        WHERE EXISTS (SELECT 1 FROM grp_journal WHERE kind = 'rebuilt')
                          AND NOT EXISTS (SELECT 1 FROM {{attr}}.customer_entities ce WHERE ce.id = m.entity_id)
                 UNION SELECT v.entity_id FROM {{audience}}.group_entities_seen v
                        WHERE EXISTS (SELECT 1 FROM grp_journal WHERE kind = 'rebuilt')
                          AND NOT EXISTS (SELECT 1 FROM {{attr}}.customer_entities ce WHERE ce.id = v.entity_id)
                 ON CONFLICT DO NOTHING",
            ),
            "collecting removed entities",
        )
        .await
        .context("an item of a 'merged' journal row is not an entity id")?;
        exec(
            c,
            &s.substitute(
                "INSERT INTO grp_new SELECT DISTINCT j.entity_id FROM grp_journal j
                  WHERE j.kind NOT IN ('removed', 'rebuilt')
                    AND EXISTS (SELECT 1 FROM {{attr}}.customer_entities ce WHERE ce.id = j.entity_id)
                    AND NOT EXISTS (SELECT 1 FROM grp_removed r WHERE r.id = j.entity_id)
                    AND NOT EXISTS (SELECT 1 FROM {{audience}}.group_entities_seen s WHERE s.entity_id = j.entity_id)",
            ),
            "finding new entities",
        )
        .await?;
        let r = c
            .query_one(
                "SELECT (SELECT count(DISTINCT entity_id) FROM grp_journal), (SELECT count(*) FROM grp_removed),
                        (SELECT count(*) FROM grp_new)",
                &[],
            )
            .await?;
        report.changed_entities = r.get(0);
        report.removed_entities = r.get(1);
        report.new_entities = r.get(2);
    }

    // candidates of incremental groups, from their dependencies
    let incr: Vec<&Plan> = plans
        .iter()
        .filter(|p| p.mode == Mode::Incremental)
        .collect();
    if consume && !incr.is_empty() && report.journal_rows > 0 {
        let (mut ga, mut aa) = (Vec::<String>::new(), Vec::<String>::new());
        let (mut ge, mut es, mut et, mut ev) = (
            Vec::<String>::new(),
            Vec::<Option<String>>::new(),
            Vec::<String>::new(),
            Vec::<Option<String>>::new(),
        );
        for p in &incr {
            for a in &p.compiled.deps.attributes {
                ga.push(p.group.id.clone());
                aa.push(a.clone());
            }
            for e in &p.compiled.deps.events {
                ge.push(p.group.id.clone());
                es.push(e.source.clone());
                et.push(e.event_type.clone());
                ev.push(e.version.clone());
            }
        }
        c.execute(
            "INSERT INTO grp_dep_attr SELECT * FROM unnest($1::text[], $2::text[])",
            &[&ga, &aa],
        )
        .await
        .pg_context(|| "loading group dependencies".into())?;
        c.execute(
            "INSERT INTO grp_dep_event SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
            &[&ge, &es, &et, &ev],
        )
        .await
        .pg_context(|| "loading group dependencies".into())?;
        let incr_ids: Vec<String> = incr.iter().map(|p| p.group.id.clone()).collect();
        c.execute(
            "INSERT INTO grp_cand (group_id, id)
             SELECT DISTINCT x.group_id, x.id FROM (
                 SELECT d.group_id, j.entity_id AS id
                   FROM grp_journal j CROSS JOIN LATERAL unnest(j.items) AS it(item)
                   JOIN grp_dep_attr d ON d.attribute_id = it.item
                  WHERE j.kind = 'attributes'
                 UNION ALL
                 SELECT d.group_id, j.entity_id
                   FROM grp_journal j CROSS JOIN LATERAL unnest(j.items) AS it(item)
                   JOIN grp_dep_event d ON d.type = split_part(it.item, '/', 2)
                        AND (d.source IS NULL OR d.source = split_part(it.item, '/', 1))
                        AND (d.version IS NULL OR d.version = substr(it.item, length(split_part(it.item, '/', 1)) + length(split_part(it.item, '/', 2)) + 3))
                  WHERE j.kind = 'events'
                 UNION ALL
                 SELECT g.group_id, j.entity_id
                   FROM grp_journal j CROSS JOIN unnest($1::text[]) AS g(group_id)
                  WHERE j.kind = 'merged'
                 UNION ALL
                 SELECT g.group_id, n.id FROM grp_new n CROSS JOIN unnest($1::text[]) AS g(group_id)
             ) x
             WHERE NOT EXISTS (SELECT 1 FROM grp_removed r WHERE r.id = x.id)",
            &[&incr_ids],
        )
        .await
        .pg_context(|| "finding the entities to re-evaluate".into())?;
    }
    let cand_counts: BTreeMap<String, i64> = c
        .query("SELECT group_id, count(*) FROM grp_cand GROUP BY 1", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();

    // batches: key ranges of customer_entities for full groups, slices of
    // the candidate list for incremental ones
    let full: Vec<&Plan> = plans.iter().filter(|p| p.mode == Mode::Full).collect();
    let mut ranges: Vec<(Option<String>, Option<String>)> = Vec::new();
    let mut entity_total = 0i64;
    if !full.is_empty() {
        let bounds: Vec<String> = c
            .query(
                &s.substitute(
                    "SELECT id::text FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM {{attr}}.customer_entities) x
                      WHERE rn % $1 = 0 ORDER BY id",
                ),
                &[&(settings.batch_size as i64)],
            )
            .await
            .pg_context(|| "splitting customer entities into batches".into())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        entity_total = c
            .query_one(
                &s.substitute("SELECT count(*) FROM {{attr}}.customer_entities"),
                &[],
            )
            .await?
            .get(0);
        let mut lo = None;
        for b in bounds {
            ranges.push((lo.clone(), Some(b.clone())));
            lo = Some(b);
        }
        ranges.push((lo, None));
    }
    let incr_batches: i64 = if cand_counts.is_empty() {
        0
    } else {
        c.execute(
            "CREATE TEMP TABLE grp_cand_ids AS
             SELECT id, ((row_number() OVER (ORDER BY id)) - 1) / $1 AS batch FROM (SELECT DISTINCT id FROM grp_cand) x",
            &[&(settings.batch_size as i64)],
        )
        .await
        .pg_context(|| "splitting candidates into batches".into())?;
        c.batch_execute("CREATE INDEX ON grp_cand_ids (batch); CREATE INDEX ON grp_cand (group_id, id); ANALYZE grp_cand; ANALYZE grp_cand_ids")
            .await?;
        c.query_one("SELECT coalesce(max(batch) + 1, 0) FROM grp_cand_ids", &[])
            .await?
            .get(0)
    };
    report.batches = ranges.len() + incr_batches as usize;
    report
        .timings
        .insert("plan".into(), started.elapsed().as_secs_f64());
    let mut phase = (0f64, 0f64);
    if let Some(pb) = progress {
        pb.set_length(report.batches as u64);
    }

    // full groups, batch by batch; when every group runs in full, the
    // entities evaluated are recorded as seen by all groups
    let all_full = consume && incr.is_empty();
    for (lo, hi) in &ranges {
        let needed: Vec<&Plan> = full.clone();
        evaluate_batch(
            db,
            &env,
            &Batch::Range(lo.clone(), hi.clone()),
            &needed,
            true,
            all_full,
        )
        .await
        .map(|t| {
            phase.0 += t.0;
            phase.1 += t.1;
        })?;
        if let Some(pb) = progress {
            pb.inc(1);
        }
    }
    // incremental groups, batch by batch
    for k in 0..incr_batches {
        exec(c, "DELETE FROM grp_batch", "clearing the batch").await?;
        c.execute(
            "INSERT INTO grp_batch SELECT id FROM grp_cand_ids WHERE batch = $1",
            &[&k],
        )
        .await
        .pg_context(|| "filling the batch".into())?;
        exec(c, "ANALYZE grp_batch", "analyzing the batch").await?;
        let present: BTreeSet<String> = c
            .query(
                "SELECT DISTINCT c.group_id FROM grp_cand c JOIN grp_batch b ON b.id = c.id",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let needed: Vec<&Plan> = incr
            .iter()
            .copied()
            .filter(|p| present.contains(&p.group.id))
            .collect();
        evaluate_batch(
            db,
            &env,
            &Batch::Table("grp_batch".into()),
            &needed,
            false,
            false,
        )
        .await
        .map(|t| {
            phase.0 += t.0;
            phase.1 += t.1;
        })?;
        if let Some(pb) = progress {
            pb.inc(1);
        }
    }

    report.timings.insert("features".into(), phase.0);
    report.timings.insert("predicates".into(), phase.1);
    // removed entities leave every group
    if report.removed_entities > 0 {
        c.batch_execute(&s.substitute(
            "DELETE FROM grp_diff d USING grp_removed r WHERE d.entity_id = r.id AND d.verb = 'add';
             INSERT INTO grp_diff (group_id, entity_id, verb)
             SELECT m.group_id, m.entity_id, 'remove' FROM {{audience}}.group_members m JOIN grp_removed r ON r.id = m.entity_id
             ON CONFLICT (group_id, entity_id) DO NOTHING;",
        ))
        .await
        .pg_context(|| "removing absorbed entities from their groups".into())?;
    }

    let diff_counts: BTreeMap<(String, String), i64> = c
        .query(
            "SELECT group_id, verb, count(*) FROM grp_diff GROUP BY 1, 2",
            &[],
        )
        .await?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let dc = |g: &str, v: &str| {
        diff_counts
            .get(&(g.to_string(), v.to_string()))
            .copied()
            .unwrap_or(0)
    };

    for p in &plans {
        let id = &p.group.id;
        let (mode, evaluated) = match p.mode {
            Mode::Full => ("full", entity_total),
            Mode::Incremental => match cand_counts.get(id) {
                Some(n) => ("incremental", *n),
                None => ("skipped", 0),
            },
        };
        let (added, removed) = (dc(id, "add"), dc(id, "remove"));
        report.added += added;
        report.removed += removed;
        if mode == "skipped" {
            report.groups_skipped += 1;
        } else {
            report.groups_evaluated += 1;
        }
        report.groups.push(GroupReport {
            id: id.clone(),
            mode: mode.into(),
            reason: p.reason.clone(),
            evaluated,
            added,
            removed,
            members: p.group.member_count + added - removed,
        });
    }

    if !opts.dry_run {
        let t = Instant::now();
        apply(db, settings, &plans, now, consume, &mut report).await?;
        report
            .timings
            .insert("apply".into(), t.elapsed().as_secs_f64());
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Features for one batch, then each group's differences into grp_diff.
/// Both run on the evaluation session (the predicates may hold configured
/// SQL): the features into its temporary table, then one read-only,
/// prepared statement per group whose rows (the entities to add or remove)
/// stream into grp_diff on the main session by COPY. With `seen`, the
/// batch's entities are also recorded in grp_seen.
async fn evaluate_batch(
    db: &Db,
    env: &SqlEnv,
    batch: &Batch,
    plans: &[&Plan],
    full: bool,
    seen: bool,
) -> Result<(f64, f64)> {
    if plans.is_empty() {
        return Ok((0.0, 0.0));
    }
    let s = &db.schemas;
    let c = &db.client;
    let eval = db.eval().await?;
    let t0 = Instant::now();
    let mut attrs = BTreeSet::new();
    let mut acts = BTreeMap::new();
    for p in plans {
        attrs.extend(p.compiled.attributes.iter().cloned());
        acts.extend(
            p.compiled
                .activities
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
    }
    if let Batch::Table(_) = batch {
        // the batch's candidates, from the main session's tables
        eval.scratch(
            "TRUNCATE grp_cand, grp_batch",
            "clearing the evaluation's batch",
        )
        .await?;
        relay(
            c,
            "SELECT c.group_id, c.id FROM grp_cand c JOIN grp_batch b ON b.id = c.id",
            eval,
            "grp_cand (group_id, id)",
        )
        .await?;
        eval.scratch(
            "INSERT INTO grp_batch SELECT DISTINCT id FROM grp_cand; ANALYZE grp_cand; ANALYZE grp_batch",
            "filling the evaluation's batch",
        )
        .await?;
    }
    eval.scratch(
        &format!(
            "DROP TABLE IF EXISTS pg_temp.grp_feat; {}; ANALYZE grp_feat",
            rules::features_sql(env, "grp_feat", batch, &attrs, &acts)
        ),
        "computing the batch's features",
    )
    .await?;
    let features = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let tx = eval.begin().await?;
    let res = async {
        let mut w = CopyWriter::start(c, "grp_diff (group_id, entity_id, verb)", "grp_diff").await?;
        for p in plans {
            let g = quote_literal(&p.group.id);
            let sql = if full {
                let (lo, hi) = match batch {
                    Batch::Range(lo, hi) => (lo, hi),
                    _ => unreachable!("full groups are evaluated over key ranges"),
                };
                let mut range = String::new();
                if let Some(lo) = lo {
                    range.push_str(&format!(" AND m.entity_id > {}::uuid", quote_literal(lo)));
                }
                if let Some(hi) = hi {
                    range.push_str(&format!(" AND m.entity_id <= {}::uuid", quote_literal(hi)));
                }
                format!(
                    "SELECT coalesce(x.id, m.entity_id), x.id IS NULL
                       FROM (SELECT e.id FROM grp_feat e WHERE {pred}) x
                       FULL JOIN (SELECT m.entity_id FROM {aud}.group_members m WHERE m.group_id = {g}{range}) m ON m.entity_id = x.id
                      WHERE x.id IS NULL OR m.entity_id IS NULL",
                    pred = p.compiled.predicate,
                    aud = s.audience,
                )
            } else {
                format!(
                    "SELECT c.id, x.id IS NULL
                       FROM grp_cand c JOIN grp_batch b ON b.id = c.id
                       LEFT JOIN (SELECT e.id FROM grp_feat e WHERE {pred}) x ON x.id = c.id
                       LEFT JOIN {aud}.group_members m ON m.group_id = {g} AND m.entity_id = c.id
                      WHERE c.group_id = {g} AND (x.id IS NULL) = (m.entity_id IS NOT NULL)",
                    pred = p.compiled.predicate,
                    aud = s.audience,
                )
            };
            let what = || {
                format!(
                    "evaluating group \"{}\" (see `cdpctl calc-audiences --explain {}`)",
                    p.group.id, p.group.id
                )
            };
            tx.watch(async {
                let rows = tx.rows(&sql, &[]).await?;
                futures_util::pin_mut!(rows);
                while let Some(row) = tx.next(&mut rows).await? {
                    let id = crate::stitch::copy::uuid_field(&row, 0)?;
                    let remove: bool = row.get(1);
                    w.row(3).await?;
                    w.text(p.group.id.as_bytes());
                    w.uuid(&id);
                    w.text(if remove { b"remove" } else { b"add" });
                }
                Ok(())
            })
            .await
            .with_context(what)?;
        }
        w.finish().await?;
        if seen {
            let mut w = CopyWriter::start(c, "grp_seen (id)", "grp_seen").await?;
            tx.watch(async {
                let rows = tx.rows("SELECT id FROM grp_feat", &[]).await?;
                futures_util::pin_mut!(rows);
                while let Some(row) = tx.next(&mut rows).await? {
                    w.row(1).await?;
                    w.uuid(&crate::stitch::copy::uuid_field(&row, 0)?);
                }
                Ok(())
            })
            .await
            .context("recording evaluated entities")?;
            w.finish().await?;
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    tx.end().await;
    res?;
    Ok((features, t1.elapsed().as_secs_f64()))
}

/// Streams the rows of `query` (cdpctl's own, on the main session) into a
/// temporary table of the evaluation session, as binary COPY passed through.
async fn relay(
    main: &Client,
    query: &str,
    eval: &crate::db::eval::Eval,
    target: &str,
) -> Result<()> {
    use futures_util::{SinkExt, StreamExt};
    let stream = main
        .copy_out(&format!("COPY ({query}) TO STDOUT (FORMAT binary)"))
        .await
        .pg_context(|| format!("reading {target}"))?;
    let sink = eval
        .copy_in(
            &format!("COPY {target} FROM STDIN (FORMAT binary)"),
            "copying the batch to the evaluation session",
        )
        .await?;
    futures_util::pin_mut!(stream);
    futures_util::pin_mut!(sink);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.pg_context(|| format!("reading {target}"))?;
        sink.send(chunk)
            .await
            .pg_context(|| format!("copying {target} to the evaluation session"))?;
    }
    sink.as_mut()
        .finish()
        .await
        .pg_context(|| format!("copying {target} to the evaluation session"))?;
    Ok(())
}

/// Applies grp_diff and deletes the consumed journal rows, in one transaction.
async fn apply(
    db: &Db,
    settings: &Settings,
    plans: &[Plan],
    now: DateTime<Utc>,
    consume: bool,
    report: &mut RunReport,
) -> Result<()> {
    let s = db.schemas.clone();
    db.client.batch_execute("BEGIN").await?;
    let res = apply_in_tx(&db.client, &s, settings, plans, now, consume, report).await;
    match res {
        Ok(()) => db
            .client
            .batch_execute("COMMIT")
            .await
            .context("committing the membership changes"),
        Err(e) => {
            let _ = db.client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn apply_in_tx(
    tx: &Client,
    s: &Schemas,
    settings: &Settings,
    plans: &[Plan],
    now: DateTime<Utc>,
    consume: bool,
    report: &mut RunReport,
) -> Result<()> {
    if consume {
        tx.execute(
            &s.substitute(
                "DELETE FROM {{cdpctl}}.entity_changes WHERE seq IN (SELECT seq FROM grp_journal)",
            ),
            &[],
        )
        .await
        .pg_context(|| "deleting the consumed journal rows".into())?;
    }
    if consume {
        tx.batch_execute(&s.substitute(
            "INSERT INTO grp_seen SELECT entity_id FROM grp_journal j
              WHERE kind NOT IN ('removed', 'rebuilt') AND NOT EXISTS (SELECT 1 FROM grp_removed r WHERE r.id = j.entity_id)
                AND EXISTS (SELECT 1 FROM {{attr}}.customer_entities ce WHERE ce.id = j.entity_id);
             INSERT INTO {{audience}}.group_entities_seen SELECT DISTINCT id FROM grp_seen ON CONFLICT DO NOTHING;
             DELETE FROM {{audience}}.group_entities_seen s USING grp_removed r WHERE s.entity_id = r.id;",
        ))
        .await
        .pg_context(|| "recording evaluated entities".into())?;
    }
    let contact = "(SELECT min(ca.value) FROM {{attr}}.customer_attributes ca
                     WHERE ca.customer_entity_id = d.entity_id AND ca.attribute_id = $2)";
    let removed = tx
        .query_one(
            &s.substitute(&format!(
                "WITH rem AS (
                     DELETE FROM {{{{audience}}}}.group_members m USING grp_diff d
                      WHERE d.verb = 'remove' AND m.group_id = d.group_id AND m.entity_id = d.entity_id
                     RETURNING m.group_id, m.entity_id, m.contact_id),
                 ch AS (
                     INSERT INTO {{{{audience}}}}.group_member_changes (group_id, entity_id, change, changed_at)
                     SELECT group_id, entity_id, 'removed', $1 FROM rem),
                 linked AS (
                     SELECT g.campaign_id, coalesce(d.contact_id, {contact}) AS contact_id
                       FROM rem d JOIN {{{{audience}}}}.groups g ON g.id = d.group_id
                      WHERE g.campaign_id IS NOT NULL),
                 q AS (
                     INSERT INTO {{{{audience}}}}.segment_changes (segment, key, key_kind, verb)
                     SELECT campaign_id::text, contact_id, 'contact_id', 'remove' FROM linked WHERE contact_id IS NOT NULL
                     RETURNING 1)
                 SELECT (SELECT count(*) FROM q), (SELECT count(*) FROM linked WHERE contact_id IS NULL)"
            )),
            &[&now, &settings.contact_id_attribute],
        )
        .await
        .pg_context(|| "applying removals".into())?;
    let added = tx
        .query_one(
            &s.substitute(&format!(
                "WITH a AS (
                     SELECT d.group_id, d.entity_id, g.campaign_id,
                            CASE WHEN g.campaign_id IS NOT NULL THEN {contact} END AS contact_id
                       FROM grp_diff d JOIN {{{{audience}}}}.groups g ON g.id = d.group_id
                      WHERE d.verb = 'add'),
                 ins AS (
                     INSERT INTO {{{{audience}}}}.group_members (group_id, entity_id, since, contact_id)
                     SELECT group_id, entity_id, $1, contact_id FROM a),
                 ch AS (
                     INSERT INTO {{{{audience}}}}.group_member_changes (group_id, entity_id, change, changed_at)
                     SELECT group_id, entity_id, 'added', $1 FROM a),
                 q AS (
                     INSERT INTO {{{{audience}}}}.segment_changes (segment, key, key_kind, verb)
                     SELECT campaign_id::text, contact_id, 'contact_id', 'add' FROM a
                      WHERE campaign_id IS NOT NULL AND contact_id IS NOT NULL
                     RETURNING 1)
                 SELECT (SELECT count(*) FROM q), (SELECT count(*) FROM a WHERE campaign_id IS NOT NULL AND contact_id IS NULL)"
            )),
            &[&now, &settings.contact_id_attribute],
        )
        .await
        .pg_context(|| "applying additions".into())?;
    report.segment_changes = removed.get::<_, i64>(0) + added.get::<_, i64>(0);
    report.unmapped_contacts = removed.get::<_, i64>(1) + added.get::<_, i64>(1);

    // bookkeeping of every group the run looked at
    let ids: Vec<String> = plans.iter().map(|p| p.group.id.clone()).collect();
    let hashes: Vec<String> = plans.iter().map(|p| p.hash.clone()).collect();
    let full: Vec<bool> = plans.iter().map(|p| p.mode == Mode::Full).collect();
    let stamps: Vec<Option<String>> = plans.iter().map(|p| p.context_stamp.clone()).collect();
    tx.execute(
        &s.substitute(
            "UPDATE {{audience}}.groups g
                SET evaluated_hash = u.hash,
                    last_full_at = CASE WHEN u.is_full THEN $5 ELSE g.last_full_at END,
                    context_stamp = u.stamp
               FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[]) AS u(id, hash, is_full, stamp)
              WHERE g.id = u.id",
        ),
        &[&ids, &hashes, &full, &stamps, &now],
    )
    .await
    .pg_context(|| "recording the groups' state".into())?;
    tx.execute(
        &s.substitute(
            "UPDATE {{audience}}.groups g
                SET member_count = g.member_count + d.delta
               FROM (SELECT group_id, sum(CASE WHEN verb = 'add' THEN 1 ELSE -1 END)::bigint AS delta
                       FROM grp_diff GROUP BY 1) d
              WHERE g.id = d.group_id",
        ),
        &[],
    )
    .await
    .pg_context(|| "updating member counts".into())?;
    Ok(())
}
