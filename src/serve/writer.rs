//! Group commit: request handlers hand their parsed request to one writer
//! task over a channel and wait for its answer. The writer takes everything
//! pending, writes it with one multi-row INSERT (its own transaction, in
//! arrival order, so queue ids follow the order requests were accepted) and
//! answers all of them after the COMMIT. Throughput comes from the batch:
//! while one commit is in flight the next batch gathers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;

use super::metrics::Metrics;
use crate::config::Config;
use crate::db::{ConnectParams, Db};
use crate::segments::tenants::{self, SecretKey, TenantRequest};

/// One accepted request: its tenant, segment, verb and keys.
pub struct Job {
    pub tenant: TenantRequest,
    pub segment: String,
    /// `add` or `remove` (the queue's verbs).
    pub verb: &'static str,
    pub keys: Vec<String>,
    pub reply: oneshot::Sender<Result<(), WriteError>>,
}

/// Why a request was not queued. Nothing of it was committed.
#[derive(Debug, Clone)]
pub enum WriteError {
    /// PostgreSQL is unreachable or too slow (503).
    Unavailable(String),
    /// The database refused the rows (500).
    Failed(String),
}

pub enum Msg {
    Job(Job),
    /// Answer everything queued before this, then stop.
    Stop,
}

pub struct Writer {
    pub config: Config,
    pub params: ConnectParams,
    pub key: SecretKey,
    pub metrics: std::sync::Arc<Metrics>,
    pub max_rows: usize,
    pub timeout: Duration,
    pub out: crate::output::Output,
}

struct Conn {
    client: Client,
    insert: tokio_postgres::Statement,
}

impl Writer {
    /// Runs until [`Msg::Stop`] (or every sender is gone).
    pub async fn run(self, mut rx: mpsc::Receiver<Msg>) {
        let a = crate::db::Schemas::from_config(&self.config).audience;
        let mut conn: Option<Conn> =
            match tokio::time::timeout(self.timeout, self.connect(&a)).await {
                Ok(Ok(c)) => Some(c),
                _ => None,
            };
        let mut tenants: HashMap<String, (i64, [u8; 32])> = HashMap::new();
        let mut last_attempt: Option<Instant> = None;
        let mut stopping = false;
        while !stopping {
            let Some(first) = rx.recv().await else { break };
            let mut batch = Vec::new();
            let mut rows = 0usize;
            match first {
                Msg::Job(j) => {
                    rows += j.keys.len();
                    batch.push(j);
                }
                Msg::Stop => stopping = true,
            }
            while !stopping && rows < self.max_rows {
                match rx.try_recv() {
                    Ok(Msg::Job(j)) => {
                        rows += j.keys.len();
                        batch.push(j);
                    }
                    Ok(Msg::Stop) => stopping = true,
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
                conn = None;
                // while PostgreSQL is down, answer at once instead of
                // queueing requests behind connection attempts
                let recently =
                    last_attempt.is_some_and(|t| t.elapsed() < Duration::from_millis(500));
                if !recently {
                    last_attempt = Some(Instant::now());
                    match tokio::time::timeout(self.timeout, self.connect(&a)).await {
                        Ok(Ok(c)) => {
                            self.out.info(format!(
                                "serve: connected to PostgreSQL {}",
                                self.params.describe()
                            ));
                            conn = Some(c);
                            tenants.clear();
                        }
                        Ok(Err(e)) => self.out.info(format!(
                            "serve: PostgreSQL unreachable, answering 503: {e:#}"
                        )),
                        Err(_) => self.out.info(format!(
                            "serve: PostgreSQL unreachable, answering 503: connecting took longer than {} ms",
                            self.timeout.as_millis()
                        )),
                    }
                }
            }
            let Some(c) = conn.as_ref() else {
                self.metrics
                    .database_up
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                answer(
                    batch,
                    Err(WriteError::Unavailable(format!(
                        "PostgreSQL ({}) is unreachable",
                        self.params.describe()
                    ))),
                );
                continue;
            };
            let res =
                tokio::time::timeout(self.timeout, self.write(c, &a, &mut tenants, &batch)).await;
            let res = match res {
                Ok(r) => r,
                Err(_) => {
                    // the statement may still commit; it was not acknowledged
                    conn = None;
                    Err(WriteError::Unavailable(format!(
                        "PostgreSQL did not commit within {} ms",
                        self.timeout.as_millis()
                    )))
                }
            };
            match res {
                Ok(()) => {
                    self.metrics
                        .database_up
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    self.metrics.commit(batch.len(), rows);
                    answer(batch, Ok(()));
                }
                Err(WriteError::Failed(_)) if batch.len() > 1 => {
                    // one bad request must not fail the others: one at a time
                    for job in batch {
                        let c = conn.as_ref().expect("connected");
                        let one = [job];
                        let r = self.write(c, &a, &mut tenants, &one).await;
                        if r.is_ok() {
                            self.metrics.commit(1, one[0].keys.len());
                        }
                        answer(one.into(), r);
                    }
                }
                Err(e) => {
                    if matches!(e, WriteError::Unavailable(_)) {
                        conn = None;
                        self.metrics
                            .database_up
                            .store(false, std::sync::atomic::Ordering::Relaxed);
                    }
                    answer(batch, Err(e));
                }
            }
        }
        // requests behind Stop are dropped with their reply channel: their
        // handlers answer 503, nothing of them was written
    }

    async fn connect(&self, a: &str) -> anyhow::Result<Conn> {
        let db = Db::connect(&self.config, &self.params, "serve").await?;
        // the answer promises durability: never acknowledge before the
        // WAL is flushed, whatever the server's default
        db.client
            .batch_execute("SET synchronous_commit = on")
            .await?;
        let insert = db
            .client
            .prepare(&format!(
                "INSERT INTO {a}.segment_changes (tenant_id, segment, key, verb)
                 SELECT t, s, k, v FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
                        WITH ORDINALITY AS u(t, s, k, v, n) ORDER BY n"
            ))
            .await?;
        Ok(Conn {
            client: db.client,
            insert,
        })
    }

    async fn write(
        &self,
        c: &Conn,
        a: &str,
        tenants: &mut HashMap<String, (i64, [u8; 32])>,
        batch: &[Job],
    ) -> Result<(), WriteError> {
        let (mut t, mut s, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for job in batch {
            let digest = job.tenant.digest();
            let id = match tenants.get(&job.tenant.environment_id) {
                Some((id, d)) if *d == digest => *id,
                _ => {
                    // first request of this tenant since start, or a new
                    // token: (re)seal and store it, its own statement
                    let id = tenants::upsert(&c.client, a, &self.key, &job.tenant)
                        .await
                        .map_err(|e| classify(&c.client, e))?;
                    tenants.insert(job.tenant.environment_id.clone(), (id, digest));
                    id
                }
            };
            for key in &job.keys {
                t.push(id);
                s.push(job.segment.as_str());
                k.push(key.as_str());
                v.push(job.verb);
            }
        }
        if k.is_empty() {
            return Ok(());
        }
        c.client
            .execute(&c.insert, &[&t, &s, &k, &v])
            .await
            .map_err(|e| {
                let e = anyhow::Error::new(crate::db::PgError::from(e)).context(format!(
                    "queueing {} key(s) in {a}.segment_changes",
                    k.len()
                ));
                classify(&c.client, e)
            })?;
        Ok(())
    }
}

/// A closed connection (or no SQLSTATE at all) means PostgreSQL is
/// unreachable; anything else is the database refusing the rows.
fn classify(client: &Client, e: anyhow::Error) -> WriteError {
    if client.is_closed() || crate::db::sqlstate(&e).is_none() {
        WriteError::Unavailable(format!("{e:#}"))
    } else if crate::db::sqlstate(&e)
        .is_some_and(|c| c.starts_with("08") || c.starts_with("57") || c.starts_with("53"))
    {
        // connection exceptions, shutdown/cancel, out of resources
        WriteError::Unavailable(format!("{e:#}"))
    } else {
        WriteError::Failed(format!("{e:#}"))
    }
}

fn answer(batch: Vec<Job>, res: Result<(), WriteError>) {
    for job in batch {
        let _ = job.reply.send(res.clone());
    }
}
