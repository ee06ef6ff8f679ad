//! The flush loop: claim a batch, keep per-key arrival order across
//! concurrent flushers, resolve references, coalesce, apply, delete the
//! claimed rows and record statistics in one transaction.
//!
//! Order across flushers: a flusher claims the lowest unlocked ids
//! (`SKIP LOCKED`). When another flusher holds a request of a claimed key
//! that lies before (or between) this flusher's requests of that key, the
//! claimed requests after it are left queued, untouched, so every key's
//! requests apply in arrival order. A cheap count detects the common case
//! where no foreign rows interleave and skips that check.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio_postgres::Client;

use super::coalesce::{coalesce, Change, Outcome, ProgramKind, Request, Verb};
use super::resolve::Resolver;
use super::split::{RestConfig, SplitDestination};
use super::tenants::{self, SecretKey};
use super::{FlushReport, SegmentStats, SegmentsConfig};
use crate::db::{Db, PgResultExt};
use crate::signals::StopFlag;

/// What to flush and how much.
#[derive(Debug, Clone)]
pub struct FlushOptions {
    /// Only this segment.
    pub segment: Option<String>,
    /// Requests claimed per batch.
    pub batch_size: i64,
    /// Stop after this many batches (the rest stays queued).
    pub max_batches: Option<u64>,
    /// Coalesce and report, change nothing (one transaction, rolled back).
    pub dry_run: bool,
    /// Only the rows `cdpctl serve` queued (those with a tenant).
    pub server_fed_only: bool,
}

impl Default for FlushOptions {
    fn default() -> Self {
        Self {
            segment: None,
            batch_size: 50_000,
            max_batches: None,
            dry_run: false,
            server_fed_only: false,
        }
    }
}

/// Flushes the queue until it is drained (or `max_batches`), with the
/// destinations of `cfg`. The library entry point (demo, benchmarks, tests).
pub async fn flush(
    db: &Db,
    cfg: &SegmentsConfig,
    opts: &FlushOptions,
    resolver: &dyn Resolver,
) -> Result<FlushReport> {
    let mut f = Flusher::new(cfg.clone(), resolver);
    f.run(db, opts, None).await
}

struct Queued {
    id: i64,
    /// 0 for rows without a tenant (producers' SQL).
    tenant: i64,
    segment: String,
    key: String,
    key_kind: String,
    verb: String,
    program_kind: Option<String>,
    run_id: Option<i64>,
}

impl Queued {
    fn request(&self) -> Request {
        Request {
            verb: if self.verb == "add" {
                Verb::Add
            } else {
                Verb::Remove
            },
            program: match (&self.program_kind, self.run_id) {
                (Some(k), Some(r)) => ProgramKind::parse(k).map(|k| (k, r)),
                _ => None,
            },
        }
    }
}

enum Destination {
    Audience(i64),
    /// A configured destination (`segments.destinations`), by index.
    Rest(usize),
    /// A tenant's Split environment, by index into the batch's list.
    Tenant(usize),
}

/// One delivery unit: a segment of the plain queue (tenant 0) or a segment
/// of one tenant.
type Group = (i64, String);

/// The key of a group in reports (segment names alone for the plain queue).
fn label(g: &Group) -> String {
    if g.0 == 0 {
        g.1.clone()
    } else {
        format!("{} [tenant {}]", g.1, g.0)
    }
}

/// Keeps the destinations and the HTTP client across batches of one run.
pub struct Flusher<'a> {
    cfg: SegmentsConfig,
    resolver: &'a dyn Resolver,
    http: Option<reqwest::Client>,
    rest: Vec<SplitDestination>,
    rest_index: HashMap<String, usize>,
    /// Groups that failed in this run: excluded from later claims.
    failed: HashSet<Group>,
    /// `CDPCTL_SECRET_KEY`, read when the first tenant row is met.
    secret: Option<std::result::Result<SecretKey, String>>,
}

struct BatchOutcome {
    claimed: usize,
    settled: usize,
    max_id: i64,
    /// Every visible request up to `max_id` was claimed here and settled
    /// (or belongs to a segment that failed in this run).
    clean: bool,
}

impl<'a> Flusher<'a> {
    pub fn new(cfg: SegmentsConfig, resolver: &'a dyn Resolver) -> Self {
        Self {
            cfg,
            resolver,
            http: None,
            rest: Vec::new(),
            rest_index: HashMap::new(),
            failed: HashSet::new(),
            secret: None,
        }
    }

    /// Uses `key` to unseal tenant tokens instead of reading the environment.
    pub fn with_secret_key(mut self, key: SecretKey) -> Self {
        self.secret = Some(Ok(key));
        self
    }

    fn secret_key(&mut self) -> std::result::Result<&SecretKey, &str> {
        self.secret
            .get_or_insert_with(|| SecretKey::from_env().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(String::as_str)
    }

    /// Runs batches until the queue is drained, `max_batches` is reached or
    /// `stop` is set (checked between batches).
    pub async fn run(
        &mut self,
        db: &Db,
        opts: &FlushOptions,
        stop: Option<&StopFlag>,
    ) -> Result<FlushReport> {
        let started = Instant::now();
        self.failed.clear();
        let mut report = FlushReport {
            dry_run: opts.dry_run,
            ..Default::default()
        };
        let client = &db.client;
        let a = db.schemas.audience.clone();
        if opts.dry_run {
            client
                .batch_execute("BEGIN")
                .await
                .pg_context(|| "starting the dry-run transaction".into())?;
        }
        let mut after = 0i64;
        let mut batches = 0u64;
        let result: Result<()> = async {
            loop {
                if stop.is_some_and(|s| s.is_set()) {
                    break;
                }
                if opts.max_batches.is_some_and(|m| batches >= m) {
                    break;
                }
                let outcome = if opts.dry_run {
                    self.batch(client, &a, opts, after, &mut report).await?
                } else {
                    client
                        .batch_execute("BEGIN")
                        .await
                        .pg_context(|| "starting a flush transaction".into())?;
                    match self.batch(client, &a, opts, after, &mut report).await {
                        Ok(o) => {
                            let t = Instant::now();
                            client
                                .batch_execute("COMMIT")
                                .await
                                .pg_context(|| "committing a flush batch".into())?;
                            *report.phase_ms.entry("commit").or_default() +=
                                t.elapsed().as_millis() as u64;
                            o
                        }
                        Err(e) => {
                            let _ = client.batch_execute("ROLLBACK").await;
                            return Err(e);
                        }
                    }
                };
                if outcome.claimed == 0 {
                    break;
                }
                batches += 1;
                // Skip the settled prefix of the queue in later claims, but
                // only when nothing below max_id was left queued or held by
                // another flusher (so no earlier request of a key is passed).
                if opts.dry_run || outcome.clean {
                    after = outcome.max_id;
                }
                if outcome.settled == 0 {
                    // every claimed key waits for another flusher's earlier rows
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Ok(())
        }
        .await;
        if opts.dry_run {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result?;
        report.batches = batches;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        report.changes_per_second = (report.read * 1000)
            .checked_div(report.elapsed_ms)
            .unwrap_or(0);
        report.remaining = client
            .query_one(&format!("SELECT count(*) FROM {a}.segment_changes"), &[])
            .await
            .pg_context(|| format!("counting {a}.segment_changes"))?
            .get(0);
        Ok(report)
    }

    /// `$1` after, `$2`/`$3` the failed groups (tenant, segment), `$4` the
    /// segment filter.
    fn filter_sql(opts: &FlushOptions) -> String {
        let mut sql = String::from(
            "id > $1 AND (cardinality($2::bigint[]) = 0 OR NOT EXISTS (
                 SELECT 1 FROM unnest($2::bigint[], $3::text[]) AS f(t, s)
                  WHERE f.t = coalesce(tenant_id, 0) AND f.s = segment))",
        );
        sql.push_str(if opts.segment.is_some() {
            " AND segment = $4"
        } else {
            " AND $4::text IS NULL"
        });
        if opts.server_fed_only {
            sql.push_str(" AND tenant_id IS NOT NULL");
        }
        sql
    }

    fn failed_params(&self) -> (Vec<i64>, Vec<&str>) {
        self.failed.iter().map(|(t, s)| (*t, s.as_str())).unzip()
    }

    async fn claim(
        &self,
        client: &Client,
        a: &str,
        opts: &FlushOptions,
        after: i64,
    ) -> Result<Vec<Queued>> {
        let (failed_t, failed_s) = self.failed_params();
        let sql = format!(
            "SELECT id, coalesce(tenant_id, 0), segment, key, key_kind, verb, program_kind, run_id
               FROM {a}.segment_changes
              WHERE {}
              ORDER BY id LIMIT $5
                FOR UPDATE SKIP LOCKED",
            Self::filter_sql(opts)
        );
        let rows = client
            .query(
                &sql,
                &[
                    &after,
                    &failed_t,
                    &failed_s,
                    &opts.segment,
                    &opts.batch_size,
                ],
            )
            .await
            .pg_context(|| format!("claiming queued requests from {a}.segment_changes"))?;
        Ok(rows
            .iter()
            .map(|r| Queued {
                id: r.get(0),
                tenant: r.get(1),
                segment: r.get(2),
                key: r.get(3),
                key_kind: r.get(4),
                verb: r.get(5),
                program_kind: r.get(6),
                run_id: r.get(7),
            })
            .collect())
    }

    /// `None` when every visible request in the claimed id range is this
    /// flusher's (the common case, one count). Else per key of this batch,
    /// the id of the first request of that key that this flusher does not hold (held by another flusher, or committed late
    /// by a producer): the key's claimed requests from there on must wait,
    /// so every key's requests apply in arrival order.
    async fn cutoffs(
        &self,
        client: &Client,
        a: &str,
        opts: &FlushOptions,
        after: i64,
        rows: &[Queued],
    ) -> Result<Option<HashMap<(i64, String, String), i64>>> {
        let max_id = rows.last().map(|r| r.id).unwrap_or(0);
        let (failed_t, failed_s) = self.failed_params();
        let visible: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {a}.segment_changes WHERE {} AND id <= $5",
                    Self::filter_sql(opts)
                ),
                &[&after, &failed_t, &failed_s, &opts.segment, &max_id],
            )
            .await
            .pg_context(|| "checking for requests held by other flushers".into())?
            .get(0);
        if visible == rows.len() as i64 {
            return Ok(None);
        }
        let mut last: HashMap<(i64, &str, &str), i64> = HashMap::new();
        for r in rows {
            last.insert((r.tenant, &r.segment, &r.key), r.id);
        }
        let (mut tenants, mut segs, mut keys, mut ids) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((t, s, k), id) in last {
            tenants.push(t);
            segs.push(s);
            keys.push(k);
            ids.push(id);
        }
        let all = client
            .query(
                &format!(
                    "SELECT coalesce(q.tenant_id, 0), q.segment, q.key, q.id
                       FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS c(tenant, segment, key, last_id)
                       JOIN {a}.segment_changes q
                         ON q.segment = c.segment AND q.key = c.key AND coalesce(q.tenant_id, 0) = c.tenant
                        AND q.id <= c.last_id AND q.id > $5"
                ),
                &[&tenants, &segs, &keys, &ids, &after],
            )
            .await
            .pg_context(|| "finding requests of the same keys held elsewhere".into())?;
        let mine: HashSet<i64> = rows.iter().map(|r| r.id).collect();
        let mut cut: HashMap<(i64, String, String), i64> = HashMap::new();
        for r in &all {
            let id: i64 = r.get(3);
            if mine.contains(&id) {
                continue;
            }
            let e = cut.entry((r.get(0), r.get(1), r.get(2))).or_insert(id);
            *e = (*e).min(id);
        }
        Ok(Some(cut))
    }

    fn destination(&mut self, segment: &str) -> std::result::Result<Destination, String> {
        if let Some(i) = self.rest_index.get(segment) {
            return Ok(Destination::Rest(*i));
        }
        if let Some(cfg) = self.cfg.destinations.get(segment) {
            let d = SplitDestination::new(segment, cfg).map_err(|e| e.to_string())?;
            self.rest.push(d);
            self.rest_index
                .insert(segment.to_string(), self.rest.len() - 1);
            return Ok(Destination::Rest(self.rest.len() - 1));
        }
        segment.trim().parse::<i64>().map(Destination::Audience).map_err(|_| {
            format!(
                "segment {segment:?} is not a campaign id and has no REST destination; configure segments.destinations.{segment} or delete its queued rows"
            )
        })
    }

    /// Builds the destination of each tenant group of the batch: the
    /// tenant's environment and unsealed token, the `segments.split`
    /// settings. A group whose token cannot be unsealed fails alone.
    async fn tenant_destinations(
        &mut self,
        client: &Client,
        a: &str,
        groups: &[&Group],
    ) -> Result<HashMap<Group, (String, std::result::Result<SplitDestination, String>)>> {
        let mut ids: Vec<i64> = groups.iter().map(|g| g.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let split = self.cfg.split.clone();
        let loaded = tenants::load(client, a, self.secret_key(), &ids).await?;
        for g in groups {
            let t = &loaded[&g.0];
            let d = t
                .token
                .clone()
                .and_then(|token| {
                    let cfg = RestConfig {
                        environment: t.environment_id.clone(),
                        segment: Some(g.1.clone()),
                        api_token: Some(token),
                        ..split.clone()
                    };
                    SplitDestination::new(&g.1, &cfg).map_err(|e| e.to_string())
                })
                .map_err(|e| {
                    format!(
                        "segment {:?} of Split environment {:?}: {e}",
                        g.1, t.environment_id
                    )
                });
            out.insert((*g).clone(), (t.environment_id.clone(), d));
        }
        Ok(out)
    }

    async fn batch(
        &mut self,
        client: &Client,
        a: &str,
        opts: &FlushOptions,
        after: i64,
        report: &mut FlushReport,
    ) -> Result<BatchOutcome> {
        let mut clock = Instant::now();
        let mut lap = |report: &mut FlushReport, phase: &'static str| {
            let now = Instant::now();
            *report.phase_ms.entry(phase).or_default() += (now - clock).as_millis() as u64;
            clock = now;
        };
        let rows = self.claim(client, a, opts, after).await?;
        lap(report, "claim");
        if rows.is_empty() {
            return Ok(BatchOutcome {
                claimed: 0,
                settled: 0,
                max_id: after,
                clean: false,
            });
        }
        let max_id = rows.last().map(|r| r.id).unwrap_or(after);
        let cutoffs = self.cutoffs(client, a, opts, after, &rows).await?;
        lap(report, "order check");
        // no foreign or late rows among the claimed range
        let clean = cutoffs.is_none();
        let cutoffs = cutoffs.unwrap_or_default();

        // group by (tenant, segment), in arrival order
        let mut by_group: BTreeMap<Group, Vec<&Queued>> = BTreeMap::new();
        for r in &rows {
            if !cutoffs.is_empty() {
                if let Some(cut) = cutoffs.get(&(r.tenant, r.segment.clone(), r.key.clone())) {
                    if r.id > *cut {
                        continue;
                    }
                }
            }
            by_group
                .entry((r.tenant, r.segment.clone()))
                .or_default()
                .push(r);
        }
        let tenant_groups: Vec<&Group> = by_group.keys().filter(|g| g.0 != 0).collect();
        let mut tenant_dests = self.tenant_destinations(client, a, &tenant_groups).await?;
        let mut batch_rest: Vec<SplitDestination> = Vec::new();
        let mut stats: BTreeMap<Group, SegmentStats> = BTreeMap::new();
        let mut failures: BTreeMap<Group, String> = BTreeMap::new();
        let mut audience: Vec<(i64, &Queued)> = Vec::new();
        let mut rest: Vec<(Destination, Group, Vec<&Queued>)> = Vec::new();
        for (g, list) in by_group {
            let mut environment = None;
            let dest = if g.0 == 0 {
                self.destination(&g.1)
            } else {
                let (env, d) = tenant_dests
                    .remove(&g)
                    .expect("every tenant group has a destination");
                environment = Some(env);
                d.map(|d| {
                    batch_rest.push(d);
                    Destination::Tenant(batch_rest.len() - 1)
                })
            };
            match dest {
                Ok(Destination::Audience(campaign)) => {
                    stats.insert(g.clone(), new_stats(&g, "audience"));
                    audience.extend(list.into_iter().map(|r| (campaign, r)));
                }
                Ok(d) => {
                    let mut s = new_stats(&g, "rest");
                    s.environment = environment;
                    stats.insert(g.clone(), s);
                    rest.push((d, g, list));
                }
                Err(e) => {
                    let mut s = new_stats(&g, if g.0 == 0 { "none" } else { "rest" });
                    s.environment = environment;
                    s.failed = list.len() as u64;
                    stats.insert(g.clone(), s);
                    failures.insert(g, e);
                }
            }
        }
        audience.sort_by_key(|(_, r)| r.id);

        // resolve contact references (audience destination only)
        let refs: Vec<String> = {
            let set: HashSet<&str> = audience
                .iter()
                .filter(|(_, r)| r.key_kind == "contact_reference")
                .map(|(_, r)| r.key.as_str())
                .collect();
            set.into_iter().map(str::to_string).collect()
        };
        let resolved = if refs.is_empty() {
            HashMap::new()
        } else {
            self.resolver.resolve(&refs).await.map_err(|e| {
                e.context(format!(
                    "resolving {} contact reference(s) of the queued requests; nothing was applied, rerun when the mapping is reachable",
                    refs.len()
                ))
            })?
        };
        lap(report, "resolve");
        let mut parked: Vec<(i64, String)> = Vec::new();
        let mut settled_ids: Vec<i64> = Vec::new();
        let mut applicable: Vec<((i64, i64), Request)> = Vec::new();
        let mut segment_of: HashMap<(i64, i64), &str> = HashMap::new();
        for (campaign, r) in &audience {
            let contact = if r.key_kind == "contact_reference" {
                resolved
                    .get(&r.key)
                    .copied()
                    .ok_or("no contact id in the DynamoDB mapping")
            } else {
                r.key
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| "not a contact id (expected an integer)")
            };
            let s = stats
                .get_mut(&(0, r.segment.clone()))
                .expect("segment stats");
            s.read += 1;
            settled_ids.push(r.id);
            match contact {
                Ok(c) => {
                    applicable.push(((*campaign, c), r.request()));
                    segment_of.insert((*campaign, c), &r.segment);
                }
                Err(reason) => {
                    s.unresolved += 1;
                    parked.push((r.id, reason.to_string()));
                    if report.unresolved_examples.len() < 10 {
                        report.unresolved_examples.push((
                            r.segment.clone(),
                            r.key.clone(),
                            reason.to_string(),
                        ));
                    }
                }
            }
        }
        let mut changes = coalesce(applicable);
        // key order: index pages are visited once, in order
        changes.sort_unstable_by_key(|(k, _)| *k);
        for (k, c) in &changes {
            let s = stats
                .get_mut(&(0, segment_of[k].to_string()))
                .expect("segment stats");
            count_change(s, c);
        }
        for s in stats.values_mut() {
            if s.destination == "audience" {
                s.coalesced = s.read - s.unresolved - s.added - s.removed;
            }
        }
        lap(report, "coalesce");
        if !opts.dry_run {
            apply_audience(client, a, &changes).await?;
        }
        lap(report, "apply");

        // REST destinations: delete rows only after the destination accepted
        for (dest, g, list) in rest {
            let changes = coalesce(list.iter().map(|r| (r.key.as_str(), r.request())));
            let (mut add, mut remove) = (Vec::new(), Vec::new());
            for (k, c) in &changes {
                match c.outcome() {
                    Outcome::Added => add.push(k.to_string()),
                    Outcome::Removed => remove.push(k.to_string()),
                    Outcome::RunsRemoved => {}
                }
            }
            let delivered = if opts.dry_run {
                Ok(Default::default())
            } else {
                let http = match &self.http {
                    Some(h) => h.clone(),
                    None => {
                        let h = super::split::http_client()?;
                        self.http = Some(h.clone());
                        h
                    }
                };
                let d = match dest {
                    Destination::Tenant(i) => &batch_rest[i],
                    Destination::Rest(i) => &self.rest[i],
                    Destination::Audience(_) => unreachable!("audience groups are applied above"),
                };
                d.deliver(&http, &add, &remove).await
            };
            let s = stats.get_mut(&g).expect("segment stats");
            match delivered {
                Ok(d) => {
                    s.read = list.len() as u64;
                    s.added = add.len() as u64;
                    s.removed = remove.len() as u64;
                    s.coalesced = s.read - s.added - s.removed;
                    s.calls = d.calls;
                    s.retries = d.retries;
                    settled_ids.extend(list.iter().map(|r| r.id));
                }
                Err(e) => {
                    s.failed = list.len() as u64;
                    failures.insert(g, format!("{e:#}"));
                }
            }
        }

        lap(report, "deliver");
        if !opts.dry_run {
            if !parked.is_empty() {
                let (ids, reasons): (Vec<i64>, Vec<String>) = parked.iter().cloned().unzip();
                client
                    .execute(
                        &format!(
                            "INSERT INTO {a}.segment_changes_unresolved
                                    (id, segment, key, key_kind, verb, program_kind, run_id, enqueued_at, reason)
                             SELECT q.id, q.segment, q.key, q.key_kind, q.verb, q.program_kind, q.run_id, q.enqueued_at, u.reason
                               FROM {a}.segment_changes q
                               JOIN unnest($1::bigint[], $2::text[]) AS u(id, reason) ON q.id = u.id
                             ON CONFLICT (id) DO NOTHING"
                        ),
                        &[&ids, &reasons],
                    )
                    .await
                    .pg_context(|| format!("keeping unresolved requests aside in {a}.segment_changes_unresolved"))?;
            }
            if !settled_ids.is_empty() {
                client
                    .execute(
                        &format!("DELETE FROM {a}.segment_changes WHERE id = ANY($1::bigint[])"),
                        &[&settled_ids],
                    )
                    .await
                    .pg_context(|| format!("deleting applied requests from {a}.segment_changes"))?;
            }
            record_stats(client, a, &stats, &rows).await?;
        }
        lap(report, "delete + statistics");

        for (g, e) in failures {
            report.failures.insert(label(&g), e);
            self.failed.insert(g);
        }
        let settled = settled_ids.len();
        for (g, s) in stats {
            report.read += s.read;
            report
                .segments
                .entry(label(&g))
                .or_insert_with(|| SegmentStats {
                    segment: s.segment.clone(),
                    destination: s.destination.clone(),
                    tenant: s.tenant,
                    environment: s.environment.clone(),
                    ..Default::default()
                })
                .merge(&s);
        }
        Ok(BatchOutcome {
            claimed: rows.len(),
            settled,
            max_id,
            clean,
        })
    }
}

fn new_stats(g: &Group, destination: &str) -> SegmentStats {
    SegmentStats {
        segment: g.1.clone(),
        destination: destination.to_string(),
        tenant: (g.0 != 0).then_some(g.0),
        ..Default::default()
    }
}

fn count_change(s: &mut SegmentStats, c: &Change) {
    match c.outcome() {
        Outcome::Added => s.added += 1,
        Outcome::Removed | Outcome::RunsRemoved => s.removed += 1,
    }
}

fn pg_array(set: &std::collections::BTreeSet<i64>) -> String {
    let items: Vec<String> = set.iter().map(i64::to_string).collect();
    format!("{{{}}}", items.join(","))
}

/// Applies coalesced changes to `campaign_contact_id_master`, set-based:
/// delete the reset rows, insert the rows that must exist, then merge the
/// program-run arrays ((runs − withdrawn) ∪ added, kept sorted).
async fn apply_audience(client: &Client, a: &str, changes: &[((i64, i64), Change)]) -> Result<()> {
    let t = format!("{a}.campaign_contact_id_master");
    let (mut rc, mut rk) = (Vec::new(), Vec::new());
    let (mut ec, mut ek) = (Vec::new(), Vec::new());
    let (mut uc, mut uk, mut ra, mut rr, mut aa, mut ar) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for ((campaign, contact), c) in changes {
        if c.reset {
            rc.push(*campaign);
            rk.push(*contact);
        }
        if c.ensure {
            ec.push(*campaign);
            ek.push(*contact);
        }
        if c.touches_runs() {
            uc.push(*campaign);
            uk.push(*contact);
            ra.push(pg_array(&c.rti_add));
            rr.push(pg_array(&c.rti_remove));
            aa.push(pg_array(&c.ac_add));
            ar.push(pg_array(&c.ac_remove));
        }
    }
    if !rc.is_empty() {
        client
            .execute(
                &format!(
                    "DELETE FROM {t} t USING unnest($1::bigint[], $2::bigint[]) AS d(c, k)
                      WHERE t.campaign_id = d.c AND t.contact_id = d.k"
                ),
                &[&rc, &rk],
            )
            .await
            .pg_context(|| format!("removing contacts from {t}"))?;
    }
    if !ec.is_empty() {
        client
            .execute(
                &format!(
                    "INSERT INTO {t} (campaign_id, contact_id)
                     SELECT c, k FROM unnest($1::bigint[], $2::bigint[]) AS d(c, k)
                     ON CONFLICT (campaign_id, contact_id) DO NOTHING"
                ),
                &[&ec, &ek],
            )
            .await
            .pg_context(|| format!("adding contacts to {t}"))?;
    }
    if !uc.is_empty() {
        let merge = |col: &str, add: &str, rem: &str| {
            format!(
                "{col} = CASE WHEN cardinality(d.{add}) = 0 AND cardinality(d.{rem}) = 0 THEN t.{col}
                         ELSE ARRAY(SELECT DISTINCT x FROM unnest(t.{col} || d.{add}) AS x
                                     WHERE x <> ALL(d.{rem}) ORDER BY x) END"
            )
        };
        client
            .execute(
                &format!(
                    "UPDATE {t} t SET {}, {}
                       FROM (SELECT c, k, ra::bigint[] AS ra, rr::bigint[] AS rr,
                                    aa::bigint[] AS aa, ar::bigint[] AS ar
                               FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
                                 AS u(c, k, ra, rr, aa, ar)) d
                      WHERE t.campaign_id = d.c AND t.contact_id = d.k",
                    merge("rti_program_runs", "ra", "rr"),
                    merge("ac_program_runs", "aa", "ar"),
                ),
                &[&uc, &uk, &ra, &rr, &aa, &ar],
            )
            .await
            .pg_context(|| format!("updating program runs in {t}"))?;
    }
    Ok(())
}

/// One statistics row per segment and batch, in the batch's transaction.
async fn record_stats(
    client: &Client,
    a: &str,
    stats: &BTreeMap<Group, SegmentStats>,
    rows: &[Queued],
) -> Result<()> {
    let mut range: HashMap<(i64, &str), (i64, i64)> = HashMap::new();
    for r in rows {
        let e = range.entry((r.tenant, &r.segment)).or_insert((r.id, r.id));
        e.0 = e.0.min(r.id);
        e.1 = e.1.max(r.id);
    }
    let settled: Vec<(&Group, &SegmentStats)> = stats.iter().filter(|(_, s)| s.read > 0).collect();
    if settled.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&SegmentStats) -> u64| -> Vec<i64> {
        settled.iter().map(|(_, s)| f(s) as i64).collect()
    };
    let segs: Vec<&str> = settled.iter().map(|(g, _)| g.1.as_str()).collect();
    let tenants: Vec<Option<i64>> = settled
        .iter()
        .map(|(g, _)| (g.0 != 0).then_some(g.0))
        .collect();
    let dests: Vec<&str> = settled
        .iter()
        .map(|(_, s)| s.destination.as_str())
        .collect();
    let span = |g: &Group| range[&(g.0, g.1.as_str())];
    let first: Vec<i64> = settled.iter().map(|(g, _)| span(g).0).collect();
    let last: Vec<i64> = settled.iter().map(|(g, _)| span(g).1).collect();
    client
        .execute(
            &format!(
                "INSERT INTO {a}.segment_flushes
                        (segment, destination, requests, coalesced, added, removed, unresolved, first_id, last_id, tenant_id)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                                      $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])"
            ),
            &[
                &segs,
                &dests,
                &col(|s| s.read),
                &col(|s| s.coalesced),
                &col(|s| s.added),
                &col(|s| s.removed),
                &col(|s| s.unresolved),
                &first,
                &last,
                &tenants,
            ],
        )
        .await
        .pg_context(|| format!("recording flush statistics in {a}.segment_flushes"))?;
    Ok(())
}
