//! `migrate-audiences`: per campaign, stream the legacy references in key
//! order, resolve them through DynamoDB, and write contact-id rows (merging
//! program runs into rows that already exist) plus the unmapped references.
//! Each batch commits with its checkpoint, so a rerun resumes exactly where
//! the last one stopped; verification gates `--drop-source`.
//!
//! Pipeline: a reader task (its own connection) pages through the legacy
//! table and keeps up to two batches in DynamoDB look-up while the writer
//! commits the previous one, so DynamoDB — the bottleneck — never waits for
//! PostgreSQL. Memory is bounded by a few batches, whatever the audience size.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::merge::{translate, IdRow, RefRow};
use crate::db::{Db, PgResultExt};
use crate::dynamo::{ContactMapper, LookupStats, BATCH_KEYS};
use crate::output::Output;

/// Which campaigns to migrate.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Explicit campaign ids.
    pub campaigns: Vec<i64>,
    /// Every campaign that has rows in the legacy table.
    pub all: bool,
    /// Only campaigns with at least this many legacy references.
    pub min_references: Option<i64>,
    /// Only campaigns with at most this many legacy references.
    pub max_references: Option<i64>,
}

/// Called after every committed batch (tests and tools observe progress).
pub type BatchHook = Arc<dyn Fn(&BatchDone) + Send + Sync>;

#[derive(Debug, Clone)]
pub struct BatchDone {
    pub campaign_id: i64,
    /// Batches committed for this campaign in this run.
    pub batch: u64,
    pub references: usize,
    pub migrated: usize,
    pub unmapped: usize,
}

#[derive(Clone)]
pub struct MigrateOptions {
    pub selection: Selection,
    /// References per transaction (and checkpoint).
    pub batch_size: usize,
    /// Only report what would be done.
    pub dry_run: bool,
    /// After verification, delete the campaign's legacy rows (the caller
    /// confirms with the operator first).
    pub drop_source: bool,
    /// Start the chosen campaigns over from their first reference
    /// (idempotent: rows merge into what is already there).
    pub restart: bool,
    pub on_batch: Option<BatchHook>,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            selection: Selection::default(),
            batch_size: super::MigrationSettings::default().batch_size,
            dry_run: false,
            drop_source: false,
            restart: false,
            on_batch: None,
        }
    }
}

/// One campaign's line of the final report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CampaignReport {
    pub campaign_id: i64,
    /// Legacy references of the campaign when the run started.
    pub references: i64,
    /// References resolved to a contact id (all runs so far).
    pub migrated: i64,
    /// References without a contact id, kept in unmapped_contact_references.
    pub unmapped: i64,
    /// References still to process (dry run: what this run would read).
    pub remaining: i64,
    /// BatchGetItem requests needed for the remaining references (dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamodb_requests: Option<i64>,
    pub duration_ms: u64,
    /// not started | copying | migrated | source_dropped
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub dry_run: bool,
    pub campaigns: Vec<CampaignReport>,
    /// References processed by this run.
    pub processed: i64,
    pub duration_ms: u64,
    pub dynamodb: LookupStats,
}

impl Summary {
    /// Campaigns that failed verification.
    pub fn failed(&self) -> usize {
        self.campaigns.iter().filter(|c| c.error.is_some()).count()
    }
}

/// The migration state row of a campaign.
#[derive(Debug, Clone)]
struct StateRow {
    state: String,
    last_reference: Option<String>,
    migrated: i64,
    unmapped: i64,
}

struct Sql {
    legacy: String,
    ids: String,
    unmapped: String,
    state: String,
}

impl Sql {
    fn new(db: &Db) -> Sql {
        let t = |name: &str| db.schemas.substitute(&format!("{{{{audience}}}}.{name}"));
        Sql {
            legacy: t("campaign_contact_reference_master"),
            ids: t("campaign_contact_id_master"),
            unmapped: t("unmapped_contact_references"),
            state: t("audience_migrations"),
        }
    }
}

/// Runs the migration of the selected campaigns. Takes no lock itself: the
/// command holds the `migrate-audiences` job lock.
pub async fn migrate(
    db: &mut Db,
    mapper: &ContactMapper,
    opts: &MigrateOptions,
    out: &Output,
) -> Result<Summary> {
    let started = Instant::now();
    let sql = Sql::new(db);
    if opts.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let plan = plan(db, &sql, &opts.selection).await?;
    let stats_before = mapper.stats();
    let mut reports = Vec::new();
    let mut processed = 0i64;

    if !opts.dry_run {
        db.client
            .batch_execute(
                "CREATE TEMP TABLE IF NOT EXISTS cdpctl_stage_ids
                   (contact_id int8, rti int8[], ac int8[]) ON COMMIT DELETE ROWS;
                 CREATE TEMP TABLE IF NOT EXISTS cdpctl_stage_unmapped
                   (contact_reference text, rti int8[], ac int8[]) ON COMMIT DELETE ROWS;",
            )
            .await
            .pg_context(|| "creating the staging tables".into())?;
    }

    // remaining references per campaign, for dry-run and the progress bars
    let mut remaining = Vec::with_capacity(plan.len());
    for (cid, count, st) in &plan {
        let after = match (st, opts.restart) {
            (Some(s), false) => s.last_reference.clone(),
            _ => None,
        };
        let n = if st.as_ref().is_some_and(|s| s.state == "source_dropped") {
            0
        } else if after.is_none() {
            *count
        } else {
            db.client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {} WHERE campaign_id = $1 AND contact_reference > $2",
                        sql.legacy
                    ),
                    &[cid, &after],
                )
                .await
                .pg_context(|| format!("counting the references of campaign {cid}"))?
                .get(0)
        };
        remaining.push(n);
    }

    if opts.dry_run {
        for ((cid, count, st), rem) in plan.iter().zip(&remaining) {
            reports.push(CampaignReport {
                campaign_id: *cid,
                references: *count,
                migrated: st.as_ref().map_or(0, |s| s.migrated),
                unmapped: st.as_ref().map_or(0, |s| s.unmapped),
                remaining: *rem,
                dynamodb_requests: Some((*rem + BATCH_KEYS as i64 - 1) / BATCH_KEYS as i64),
                duration_ms: 0,
                state: st
                    .as_ref()
                    .map_or_else(|| "not started".to_string(), |s| s.state.clone()),
                note: None,
                error: None,
            });
        }
        return Ok(Summary {
            dry_run: true,
            campaigns: reports,
            processed: 0,
            duration_ms: started.elapsed().as_millis() as u64,
            dynamodb: LookupStats::default(),
        });
    }

    mapper.check().await?;
    let multi = indicatif::MultiProgress::new();
    let overall = out.progress(Some(remaining.iter().sum::<i64>() as u64), "all campaigns");
    let overall = if overall.is_hidden() {
        overall
    } else {
        multi.add(overall)
    };
    for ((cid, count, st), rem) in plan.into_iter().zip(remaining) {
        let bar = out.progress(Some(rem as u64), &format!("campaign {cid}"));
        let bar = if bar.is_hidden() { bar } else { multi.add(bar) };
        let t0 = Instant::now();
        let mut report = CampaignReport {
            campaign_id: cid,
            references: count,
            migrated: 0,
            unmapped: 0,
            remaining: rem,
            dynamodb_requests: None,
            duration_ms: 0,
            state: String::new(),
            note: None,
            error: None,
        };
        let res = migrate_campaign(db, &sql, mapper, opts, cid, st, &mut report, &|n| {
            bar.inc(n);
            overall.inc(n);
        })
        .await;
        bar.finish_and_clear();
        let n = res.with_context(|| format!("migrating campaign {cid}"))?;
        processed += n;
        report.duration_ms = t0.elapsed().as_millis() as u64;
        reports.push(report);
    }
    overall.finish_and_clear();
    let after = mapper.stats();
    Ok(Summary {
        dry_run: false,
        campaigns: reports,
        processed,
        duration_ms: started.elapsed().as_millis() as u64,
        dynamodb: LookupStats {
            requests: after.requests - stats_before.requests,
            keys: after.keys - stats_before.keys,
            found: after.found - stats_before.found,
            unprocessed_retries: after.unprocessed_retries - stats_before.unprocessed_retries,
            throttle_retries: after.throttle_retries - stats_before.throttle_retries,
            error_retries: after.error_retries - stats_before.error_retries,
        },
    })
}

/// The chosen campaigns in id order: (campaign, legacy references, state).
async fn plan(db: &Db, sql: &Sql, sel: &Selection) -> Result<Vec<(i64, i64, Option<StateRow>)>> {
    if !sel.all && sel.campaigns.is_empty() {
        bail!("choose campaigns: --campaign ID (repeatable) or --all");
    }
    let counts: BTreeMap<i64, i64> = db
        .client
        .query(
            &format!(
                "SELECT campaign_id, count(*) FROM {} WHERE $1 OR campaign_id = ANY($2) GROUP BY campaign_id",
                sql.legacy
            ),
            &[&sel.all, &sel.campaigns],
        )
        .await
        .pg_context(|| "counting legacy audience references per campaign".into())?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut ids: Vec<i64> = counts.keys().copied().collect();
    ids.extend(&sel.campaigns);
    ids.sort_unstable();
    ids.dedup();
    let states: HashMap<i64, StateRow> = db
        .client
        .query(
            &format!(
                "SELECT campaign_id, state, last_reference, migrated, unmapped FROM {} WHERE campaign_id = ANY($1)",
                sql.state
            ),
            &[&ids],
        )
        .await
        .pg_context(|| "reading audience migration state".into())?
        .into_iter()
        .map(|r| {
            (
                r.get(0),
                StateRow {
                    state: r.get(1),
                    last_reference: r.get(2),
                    migrated: r.get(3),
                    unmapped: r.get(4),
                },
            )
        })
        .collect();
    let missing: Vec<String> = sel
        .campaigns
        .iter()
        .filter(|c| !counts.contains_key(c) && !states.contains_key(c))
        .map(|c| c.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "campaign(s) {} have no rows in {} and were never migrated; check the ids",
            missing.join(", "),
            sql.legacy
        );
    }
    let mut out = Vec::new();
    for id in ids {
        let n = counts.get(&id).copied().unwrap_or(0);
        if sel.min_references.is_some_and(|m| n < m) || sel.max_references.is_some_and(|m| n > m) {
            continue;
        }
        out.push((id, n, states.get(&id).cloned()));
    }
    Ok(out)
}

/// Keeps a spawned task from outliving the run that needs it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A batch read from the legacy table with its look-up result.
struct Resolved {
    rows: Vec<RefRow>,
    last: String,
    mapping: HashMap<String, i64>,
}

/// Migrates one campaign; returns the references processed by this run.
#[allow(clippy::too_many_arguments)]
async fn migrate_campaign(
    db: &mut Db,
    sql: &Sql,
    mapper: &ContactMapper,
    opts: &MigrateOptions,
    cid: i64,
    st: Option<StateRow>,
    report: &mut CampaignReport,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<i64> {
    let set_counts = |report: &mut CampaignReport, s: &StateRow| {
        report.migrated = s.migrated;
        report.unmapped = s.unmapped;
        report.state = s.state.clone();
    };
    let mut st = match st {
        Some(s) if s.state == "source_dropped" => {
            if opts.restart {
                bail!("campaign {cid}: its legacy rows were dropped, there is nothing to restart from");
            }
            set_counts(report, &s);
            report.note = Some("legacy rows already dropped".into());
            return Ok(0);
        }
        Some(s) if opts.restart => {
            // start over: the pass re-records every unmapped reference
            let tx = db.client.transaction().await?;
            tx.execute(
                &format!(
                    "UPDATE {} SET state = 'copying', last_reference = NULL, migrated = 0, unmapped = 0,
                            batches = 0, started_at = now(), updated_at = now(), finished_at = NULL
                      WHERE campaign_id = $1",
                    sql.state
                ),
                &[&cid],
            )
            .await
            .pg_context(|| format!("resetting the checkpoint of campaign {cid}"))?;
            tx.execute(
                &format!("DELETE FROM {} WHERE campaign_id = $1", sql.unmapped),
                &[&cid],
            )
            .await
            .pg_context(|| format!("clearing the unmapped references of campaign {cid}"))?;
            tx.commit().await?;
            let _ = s;
            StateRow {
                state: "copying".into(),
                last_reference: None,
                migrated: 0,
                unmapped: 0,
            }
        }
        Some(s) => s,
        None => {
            db.client
                .execute(
                    &format!(
                        "INSERT INTO {} (campaign_id, references_total) VALUES ($1, $2) ON CONFLICT (campaign_id) DO NOTHING",
                        sql.state
                    ),
                    &[&cid, &report.references],
                )
                .await
                .pg_context(|| format!("recording the migration of campaign {cid}"))?;
            StateRow {
                state: "copying".into(),
                last_reference: None,
                migrated: 0,
                unmapped: 0,
            }
        }
    };

    if st.state == "migrated" {
        // finished earlier: nothing to do unless the legacy table changed since
        if st.migrated + st.unmapped == report.references {
            set_counts(report, &st);
            report.note = Some("already migrated".into());
            if opts.drop_source {
                drop_source(db, sql, cid, &st).await?;
                report.state = "source_dropped".into();
                report.note = Some("already migrated; legacy rows dropped".into());
            }
            return Ok(0);
        }
        db.client
            .execute(
                &format!(
                    "UPDATE {} SET state = 'copying', finished_at = NULL, updated_at = now() WHERE campaign_id = $1",
                    sql.state
                ),
                &[&cid],
            )
            .await
            .pg_context(|| format!("reopening the migration of campaign {cid}"))?;
        st.state = "copying".into();
        report.note = Some("legacy rows changed after the migration: resumed".into());
    }

    let processed = copy(db, sql, mapper, opts, cid, &mut st, progress).await?;
    report.remaining = 0;
    set_counts(report, &st);

    // verification: every source reference is migrated or recorded unmapped
    match verify(db, sql, cid, &st).await? {
        Some(problem) => {
            report.error = Some(format!(
                "verification failed: {problem}; nothing was dropped; rerun with --restart --campaign {cid}"
            ));
            return Ok(processed);
        }
        None => {
            db.client
                .execute(
                    &format!(
                        "UPDATE {} SET state = 'migrated', finished_at = now(), updated_at = now(),
                                references_total = $2
                          WHERE campaign_id = $1",
                        sql.state
                    ),
                    &[&cid, &(st.migrated + st.unmapped)],
                )
                .await
                .pg_context(|| format!("marking campaign {cid} migrated"))?;
            st.state = "migrated".into();
            report.state = st.state.clone();
        }
    }
    if opts.drop_source {
        drop_source(db, sql, cid, &st).await?;
        report.state = "source_dropped".into();
    }
    Ok(processed)
}

async fn read_batch(
    reader: &Client,
    query: &str,
    cid: i64,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<RefRow>> {
    let rows = reader
        .query(query, &[&cid, &after, &limit])
        .await
        .pg_context(|| format!("reading legacy references of campaign {cid}"))?;
    Ok(rows
        .into_iter()
        .map(|r| RefRow {
            contact_reference: r.get(0),
            rti_program_runs: r.get::<_, Option<Vec<i64>>>(1).unwrap_or_default(),
            ac_program_runs: r.get::<_, Option<Vec<i64>>>(2).unwrap_or_default(),
        })
        .collect())
}

/// The copy loop from the checkpoint to the end of the campaign.
async fn copy(
    db: &mut Db,
    sql: &Sql,
    mapper: &ContactMapper,
    opts: &MigrateOptions,
    cid: i64,
    st: &mut StateRow,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<i64> {
    let reader = db.connect_another().await?;
    let query = format!(
        "SELECT contact_reference, rti_program_runs, ac_program_runs FROM {}
          WHERE campaign_id = $1 AND ($2::text IS NULL OR contact_reference > $2)
          ORDER BY contact_reference LIMIT $3",
        sql.legacy
    );
    let limit = opts.batch_size as i64;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Resolved>>(1);
    let lookup_mapper = mapper.clone();
    let start_after = st.last_reference.clone();
    let task = tokio::spawn(async move {
        let pages = stream::unfold(
            (reader, start_after, false),
            move |(reader, after, done)| {
                let query = query.clone();
                async move {
                    if done {
                        return None;
                    }
                    match read_batch(&reader, &query, cid, after.as_deref(), limit).await {
                        Ok(rows) if rows.is_empty() => None,
                        Ok(rows) => {
                            let last = rows.last().map(|r| r.contact_reference.clone());
                            let end = (rows.len() as i64) < limit;
                            Some((Ok(rows), (reader, last, end)))
                        }
                        Err(e) => Some((Err(e), (reader, after, true))),
                    }
                }
            },
        );
        let resolved = pages
            .map(|rows| {
                let mapper = lookup_mapper.clone();
                async move {
                    let rows = rows?;
                    let refs: Vec<String> =
                        rows.iter().map(|r| r.contact_reference.clone()).collect();
                    let mapping = mapper.lookup(&refs).await?;
                    let last = refs.last().cloned().unwrap_or_default();
                    Ok(Resolved {
                        rows,
                        last,
                        mapping,
                    })
                }
            })
            .buffered(2);
        let mut resolved = std::pin::pin!(resolved);
        while let Some(item) = resolved.next().await {
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    let _guard = AbortOnDrop(task);

    let mut processed = 0i64;
    let mut batch = 0u64;
    while let Some(item) = rx.recv().await {
        let Resolved {
            rows,
            last,
            mapping,
        } = item?;
        let n = rows.len();
        let (mapped, unmapped) = translate(rows, &mapping);
        let n_unmapped = unmapped.len();
        let n_mapped = n - n_unmapped;
        write_batch(
            db, sql, cid, st, &mapped, &unmapped, &last, n_mapped, n_unmapped,
        )
        .await?;
        st.last_reference = Some(last);
        st.migrated += n_mapped as i64;
        st.unmapped += n_unmapped as i64;
        processed += n as i64;
        batch += 1;
        progress(n as u64);
        if let Some(hook) = &opts.on_batch {
            hook(&BatchDone {
                campaign_id: cid,
                batch,
                references: n,
                migrated: n_mapped,
                unmapped: n_unmapped,
            });
        }
    }
    Ok(processed)
}

/// Writes one batch and moves the checkpoint, in one transaction.
#[allow(clippy::too_many_arguments)]
async fn write_batch(
    db: &mut Db,
    sql: &Sql,
    cid: i64,
    st: &StateRow,
    mapped: &[IdRow],
    unmapped: &[RefRow],
    last: &str,
    n_mapped: usize,
    n_unmapped: usize,
) -> Result<()> {
    let tx = db
        .client
        .transaction()
        .await
        .pg_context(|| "starting a batch transaction".into())?;
    if !mapped.is_empty() {
        let sink = tx
            .copy_in("COPY cdpctl_stage_ids (contact_id, rti, ac) FROM STDIN (FORMAT binary)")
            .await
            .pg_context(|| "staging contact-id rows".into())?;
        let writer =
            BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT8_ARRAY, Type::INT8_ARRAY]);
        let mut writer = std::pin::pin!(writer);
        for r in mapped {
            writer
                .as_mut()
                .write(&[&r.contact_id, &r.rti_program_runs, &r.ac_program_runs])
                .await
                .pg_context(|| "staging contact-id rows".into())?;
        }
        writer
            .finish()
            .await
            .pg_context(|| "staging contact-id rows".into())?;
        // a row that already exists (new members arrive in the new structure
        // during the transition) gets the union of program runs; a rerun of
        // the same rows changes nothing
        tx.execute(
            &format!(
                "INSERT INTO {ids} AS t (campaign_id, contact_id, rti_program_runs, ac_program_runs)
                 SELECT $1, contact_id, rti, ac FROM cdpctl_stage_ids
                 ON CONFLICT (campaign_id, contact_id) DO UPDATE SET
                   rti_program_runs = ARRAY(SELECT DISTINCT x FROM unnest(t.rti_program_runs || EXCLUDED.rti_program_runs) x ORDER BY x),
                   ac_program_runs  = ARRAY(SELECT DISTINCT x FROM unnest(t.ac_program_runs || EXCLUDED.ac_program_runs) x ORDER BY x)
                 WHERE NOT (EXCLUDED.rti_program_runs <@ t.rti_program_runs
                            AND EXCLUDED.ac_program_runs <@ t.ac_program_runs)",
                ids = sql.ids
            ),
            &[&cid],
        )
        .await
        .pg_context(|| format!("writing contact-id rows of campaign {cid}"))?;
    }
    if !unmapped.is_empty() {
        let sink = tx
            .copy_in(
                "COPY cdpctl_stage_unmapped (contact_reference, rti, ac) FROM STDIN (FORMAT binary)",
            )
            .await
            .pg_context(|| "staging unmapped references".into())?;
        let writer =
            BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::INT8_ARRAY, Type::INT8_ARRAY]);
        let mut writer = std::pin::pin!(writer);
        for r in unmapped {
            writer
                .as_mut()
                .write(&[
                    &r.contact_reference,
                    &r.rti_program_runs,
                    &r.ac_program_runs,
                ])
                .await
                .pg_context(|| "staging unmapped references".into())?;
        }
        writer
            .finish()
            .await
            .pg_context(|| "staging unmapped references".into())?;
        tx.execute(
            &format!(
                "INSERT INTO {u} (campaign_id, contact_reference, rti_program_runs, ac_program_runs)
                 SELECT $1, contact_reference, rti, ac FROM cdpctl_stage_unmapped
                 ON CONFLICT (campaign_id, contact_reference) DO UPDATE SET
                   rti_program_runs = EXCLUDED.rti_program_runs,
                   ac_program_runs = EXCLUDED.ac_program_runs,
                   recorded_at = now()",
                u = sql.unmapped
            ),
            &[&cid],
        )
        .await
        .pg_context(|| format!("recording unmapped references of campaign {cid}"))?;
    }
    let moved = tx
        .execute(
            &format!(
                "UPDATE {} SET last_reference = $2, migrated = migrated + $3, unmapped = unmapped + $4,
                        batches = batches + 1, updated_at = now()
                  WHERE campaign_id = $1 AND last_reference IS NOT DISTINCT FROM $5",
                sql.state
            ),
            &[
                &cid,
                &last,
                &(n_mapped as i64),
                &(n_unmapped as i64),
                &st.last_reference,
            ],
        )
        .await
        .pg_context(|| format!("moving the checkpoint of campaign {cid}"))?;
    if moved != 1 {
        bail!("the checkpoint of campaign {cid} moved under this run (another migration touched it?); nothing of this batch was written, rerun");
    }
    tx.commit()
        .await
        .pg_context(|| format!("committing a batch of campaign {cid}"))?;
    Ok(())
}

/// `None` when every legacy reference is accounted for, else the problem.
async fn verify(db: &Db, sql: &Sql, cid: i64, st: &StateRow) -> Result<Option<String>> {
    let r = db
        .client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {l} WHERE campaign_id = $1),
                        (SELECT count(*) FROM {u} WHERE campaign_id = $1),
                        (SELECT count(*) FROM {u} u WHERE u.campaign_id = $1 AND NOT EXISTS
                            (SELECT 1 FROM {l} r WHERE r.campaign_id = u.campaign_id
                                                   AND r.contact_reference = u.contact_reference)),
                        (SELECT count(*) FROM {l} WHERE campaign_id = $1 AND contact_reference > $2)",
                l = sql.legacy,
                u = sql.unmapped
            ),
            &[&cid, &st.last_reference.clone().unwrap_or_default()],
        )
        .await
        .pg_context(|| format!("verifying campaign {cid}"))?;
    let (source, unmapped_rows, orphans, beyond): (i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    let mut problems = Vec::new();
    if source != st.migrated + st.unmapped {
        problems.push(format!(
            "the legacy table has {source} references, the checkpoint accounts for {} migrated + {} unmapped (references were added or removed below the checkpoint during the copy)",
            st.migrated, st.unmapped
        ));
    }
    if unmapped_rows != st.unmapped {
        problems.push(format!(
            "{unmapped_rows} unmapped references recorded, {} counted",
            st.unmapped
        ));
    }
    if orphans > 0 {
        problems.push(format!(
            "{orphans} recorded unmapped references are no longer in the legacy table"
        ));
    }
    if beyond > 0 && st.last_reference.is_some() {
        problems.push(format!("{beyond} references beyond the checkpoint"));
    }
    Ok(if problems.is_empty() {
        None
    } else {
        Some(problems.join("; "))
    })
}

/// Deletes the legacy rows of a verified campaign, re-checking the count in
/// the same transaction.
async fn drop_source(db: &mut Db, sql: &Sql, cid: i64, st: &StateRow) -> Result<()> {
    let tx = db.client.transaction().await?;
    let deleted: i64 = tx
        .query_one(
            &format!(
                "WITH d AS (DELETE FROM {} WHERE campaign_id = $1 RETURNING 1) SELECT count(*) FROM d",
                sql.legacy
            ),
            &[&cid],
        )
        .await
        .pg_context(|| format!("dropping the legacy rows of campaign {cid}"))?
        .get(0);
    let expected = st.migrated + st.unmapped;
    if deleted != expected {
        tx.rollback().await.ok();
        return Err(anyhow!(
            "campaign {cid}: refusing to drop the legacy rows: {deleted} rows found, {expected} verified (rows changed since verification); nothing was dropped, rerun"
        ));
    }
    tx.execute(
        &format!(
            "UPDATE {} SET state = 'source_dropped', source_dropped_at = now(), updated_at = now() WHERE campaign_id = $1",
            sql.state
        ),
        &[&cid],
    )
    .await
    .pg_context(|| format!("recording the drop of campaign {cid}"))?;
    tx.commit()
        .await
        .pg_context(|| format!("committing the drop of campaign {cid}"))?;
    Ok(())
}
