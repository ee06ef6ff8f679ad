//! The evaluation connection. Configured SQL (attribute value expressions,
//! filters and custom queries, context queries, stitching value expressions,
//! group predicates) runs only here: on a session of its own whose *session
//! user* is the unprivileged role `cdpctl_eval` that `init` creates, one
//! prepared statement at a time (extended protocol, so a second statement is a
//! protocol error), inside a `READ ONLY` transaction with a statement timeout,
//! always rolled back, with every advisory lock the statement may have taken
//! released afterwards. The session holds no cdpctl lock; results stream back
//! to the caller, which writes them through the main connection.

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use futures_util::{pin_mut, StreamExt};
use postgres_types::ToSql;
use tokio_postgres::{Client, CopyInSink, Row, RowStream, Statement};

use super::{ConnectParams, PgError};
use crate::config::Config;

/// The role configured SQL runs as.
pub const ROLE: &str = "cdpctl_eval";
/// Where its password comes from (else trust/peer as `pg_hba.conf` says).
pub const PASSWORD_ENV: &str = "CDPCTL_EVAL_PASSWORD";

/// The password of [`ROLE`] from the environment, if set.
pub fn password() -> Option<String> {
    std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty())
}

/// The session configured SQL runs in.
pub struct Eval {
    client: Client,
    params: ConnectParams,
    timeout_ms: u64,
    /// A transaction was begun and not ended (an evaluation that failed
    /// half-way): the next one rolls it back first.
    open: std::sync::atomic::AtomicBool,
    /// The server process of this session, so checks for other running
    /// jobs can tell it from a job of someone else.
    backend_pid: i32,
}

impl Eval {
    /// The server process id of this session.
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// Opens the evaluation session: same host, port, database and TLS as
    /// the main connection, user [`ROLE`]. Refuses a role that could do
    /// more than read (superuser, CREATEROLE, a member of other roles...).
    pub async fn connect(params: &ConnectParams, config: &Config, command: &str) -> Result<Eval> {
        let eval = params.for_role(ROLE, password());
        let client = eval
            .connect_with(&format!("cdpctl {command} (eval)"))
            .await
            .map_err(|e| connect_error(&eval, e))?;
        let row = client
            .query_one(
                "SELECT current_setting('is_superuser') = 'on',
                        r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication,
                        coalesce((SELECT string_agg(g.rolname::text, ', ' ORDER BY g.rolname)
                                    FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                                   WHERE m.member = r.oid), ''),
                        pg_backend_pid()
                   FROM pg_roles r WHERE r.rolname = session_user",
                &[],
            )
            .await
            .map_err(|e| anyhow::Error::new(PgError::from(e)))
            .context("checking the evaluation role")?;
        let has: Vec<&str> = [
            "SUPERUSER",
            "CREATEROLE",
            "CREATEDB",
            "BYPASSRLS",
            "REPLICATION",
        ]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| row.get::<_, bool>(*i))
        .map(|(_, a)| a)
        .collect();
        let member_of: String = row.get(5);
        let backend_pid: i32 = row.get(6);
        let (mut wrong, mut fix) = (Vec::new(), Vec::new());
        if !has.is_empty() {
            wrong.push(format!("has {}", has.join(", ")));
            let no: Vec<String> = has.iter().map(|a| format!("NO{a}")).collect();
            fix.push(format!("ALTER ROLE {ROLE} {}", no.join(" ")));
        }
        if !member_of.is_empty() {
            wrong.push(format!("is a member of {member_of}"));
            fix.push(format!("REVOKE {member_of} FROM {ROLE}"));
        }
        if !wrong.is_empty() {
            bail!(
                "refusing to evaluate configured SQL as role {ROLE}: it must only read, but it {}; fix it as a superuser: {}",
                wrong.join(" and "),
                fix.join("; ")
            );
        }
        let s = &config.session;
        client
            .batch_execute(&format!(
                "SET statement_timeout = {}; SET lock_timeout = {}; SET idle_in_transaction_session_timeout = 0;
                 SET jit = off; SET default_transaction_read_only = on;",
                s.statement_timeout_ms, s.lock_timeout_ms
            ))
            .await
            .map_err(|e| anyhow::Error::new(PgError::from(e)))
            .context("setting up the evaluation session")?;
        Ok(Eval {
            client,
            params: eval,
            timeout_ms: s.configured_sql_timeout_ms,
            open: std::sync::atomic::AtomicBool::new(false),
            backend_pid,
        })
    }

    /// cdpctl's own statements on this session: creating and filling its
    /// temporary tables (the batch's entities and events), in a read-write
    /// transaction of their own (the session's default is read-only), under
    /// `session.statement_timeout_ms` like every statement of cdpctl's. Never
    /// configured SQL: that goes through [`EvalTx`], under
    /// `session.configured_sql_timeout_ms`.
    pub async fn scratch(&self, sql: &str, what: &str) -> Result<()> {
        let res = self
            .client
            .batch_execute(&format!("BEGIN READ WRITE; {sql}; COMMIT"))
            .await;
        if res.is_err() {
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
        res.map_err(|e| anyhow::Error::new(PgError::from(e)))
            .with_context(|| what.to_string())
    }

    /// Prepares one statement: parsed and described, nothing runs. How
    /// configured SQL is checked; outside any transaction, so one that fails
    /// does not affect the next.
    pub async fn prepare(
        &self,
        sql: &str,
    ) -> std::result::Result<Statement, tokio_postgres::Error> {
        self.client.prepare(sql).await
    }

    /// `COPY <temporary table> FROM STDIN` on this session (cdpctl's data;
    /// allowed in the session's read-only transactions, as the table is
    /// temporary).
    pub async fn copy_in(&self, sql: &str, what: &str) -> Result<CopyInSink<Bytes>> {
        self.client
            .copy_in(sql)
            .await
            .map_err(|e| anyhow::Error::new(PgError::from(e)))
            .with_context(|| what.to_string())
    }

    /// Starts a read-only transaction for configured SQL.
    pub async fn begin(&self) -> Result<EvalTx<'_>> {
        self.start("BEGIN READ ONLY").await
    }

    /// A read-only transaction with one snapshot for all its statements
    /// (exportable with [`EvalTx::export_snapshot`]).
    pub async fn begin_repeatable(&self) -> Result<EvalTx<'_>> {
        self.start("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
    }

    async fn start(&self, begin: &str) -> Result<EvalTx<'_>> {
        // an earlier evaluation that failed half-way must not leave its
        // transaction (or locks) to this one
        if self.open.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let _ = self
                .client
                .batch_execute("ROLLBACK; SELECT pg_advisory_unlock_all()")
                .await;
        }
        self.client
            .batch_execute(&format!(
                "{begin}; SET LOCAL statement_timeout = {}",
                self.timeout_ms
            ))
            .await
            .map_err(|e| anyhow::Error::new(PgError::from(e)))
            .context("starting a read-only transaction for configured SQL")?;
        Ok(EvalTx { eval: self })
    }

    /// Turns a server error into one that says what the limits are.
    pub fn error(&self, e: tokio_postgres::Error) -> anyhow::Error {
        let mut pe = PgError::from(e);
        if pe.code.as_deref() == Some("57014") && pe.message.contains("statement timeout") {
            pe.message = format!(
                "{}: configured SQL may run for at most {} ms (session.configured_sql_timeout_ms); make it cheaper or raise the limit",
                pe.message, self.timeout_ms
            );
        }
        anyhow::Error::new(pe)
    }
}

/// One read-only transaction on the evaluation session. Call [`EvalTx::end`]
/// when done, also after an error.
pub struct EvalTx<'a> {
    eval: &'a Eval,
}

impl<'a> EvalTx<'a> {
    /// The session this transaction runs on.
    pub fn session(&self) -> &'a Eval {
        self.eval
    }

    /// Runs one prepared statement and returns its rows as a stream.
    pub async fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<RowStream> {
        let stmt = self
            .eval
            .client
            .prepare(sql)
            .await
            .map_err(|e| self.eval.error(e))?;
        self.eval
            .client
            .query_raw(&stmt, params.iter().copied())
            .await
            .map_err(|e| self.eval.error(e))
    }

    /// The next row of a stream from [`EvalTx::rows`].
    pub async fn next(&self, rows: &mut std::pin::Pin<&mut RowStream>) -> Result<Option<Row>> {
        match rows.next().await {
            None => Ok(None),
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err(e)) => Err(self.eval.error(e)),
        }
    }

    /// Runs one prepared statement, calling `f` for every row; returns the
    /// number of rows.
    pub async fn for_each(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        mut f: impl FnMut(&Row) -> Result<()>,
    ) -> Result<u64> {
        self.watch(async {
            let rows = self.rows(sql, params).await?;
            pin_mut!(rows);
            let mut n = 0;
            while let Some(row) = self.next(&mut rows).await? {
                f(&row)?;
                n += 1;
            }
            Ok(n)
        })
        .await
    }

    /// All rows of one prepared statement (for small results).
    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        self.for_each(sql, params, |r| {
            out.push(r.clone());
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Runs `fut` (which reads rows of this transaction) under a client-side
    /// deadline a little past the statement timeout, so configured SQL that
    /// found a way around `statement_timeout` is still cancelled.
    pub async fn watch<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        if self.eval.timeout_ms == 0 {
            return fut.await;
        }
        let limit = Duration::from_millis(self.eval.timeout_ms) + Duration::from_secs(5);
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => {
                if let Ok(tls) = super::tls::make_tls(
                    self.eval.params.ssl,
                    self.eval.params.root_cert.as_deref(),
                ) {
                    let _ = self.eval.client.cancel_token().cancel_query(tls).await;
                }
                Err(anyhow!(
                    "canceling statement: configured SQL may run for at most {} ms (session.configured_sql_timeout_ms) and this one ran on; make it cheaper or raise the limit",
                    self.eval.timeout_ms
                ))
            }
        }
    }

    /// Exports this transaction's snapshot for the main connection.
    pub async fn export_snapshot(&self) -> Result<String> {
        Ok(self
            .eval
            .client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(|e| self.eval.error(e))
            .context("exporting the snapshot")?
            .get(0))
    }

    /// Rolls back (a read-only transaction has nothing to keep) and releases
    /// every advisory lock the evaluated SQL may have taken.
    pub async fn end(self) {
        if self
            .eval
            .client
            .batch_execute("ROLLBACK; SELECT pg_advisory_unlock_all()")
            .await
            .is_ok()
        {
            self.eval
                .open
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// `init`: re-applies the role's grants (so tables created again since, such
/// as a dropped stitching queue, are readable again) and, when
/// [`PASSWORD_ENV`] is set, sets the role's password from it, sent as a
/// SCRAM verifier so the password itself never reaches the server or its
/// logs. Returns what changed.
pub async fn install(db: &super::Db) -> Result<Vec<String>> {
    db.client
        .batch_execute(&db.schemas.substitute("SELECT {{cdpctl}}.grant_eval_role()"))
        .await
        .map_err(|e| anyhow::Error::new(PgError::from(e)))
        .with_context(|| format!("granting the evaluation role {ROLE} its read access"))?;
    let Some(sql) = password().map(|pw| password_sql(&pw)) else {
        return Ok(Vec::new());
    };
    db.client
        .batch_execute(&sql)
        .await
        .map_err(|e| anyhow::Error::new(PgError::from(e)))
        .with_context(|| {
            format!(
                "setting the password of role {ROLE} from {PASSWORD_ENV}; run init as a role with CREATEROLE, or have a superuser set it (\\password {ROLE} in psql)"
            )
        })?;
    Ok(vec![format!(
        "set the password of role {ROLE} from {PASSWORD_ENV}"
    )])
}

/// What [`install`] would run, for `init --dry-run` (the verifier hidden).
pub fn install_dry_run() -> Vec<String> {
    match password() {
        Some(_) => vec![format!(
            "\n-- config: set the password of role {ROLE} from {PASSWORD_ENV}\nALTER ROLE {ROLE} PASSWORD 'SCRAM-SHA-256$…'"
        )],
        None => Vec::new(),
    }
}

fn password_sql(password: &str) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    format!(
        "ALTER ROLE {ROLE} PASSWORD {}",
        super::quote_literal(&verifier)
    )
}

fn connect_error(params: &ConnectParams, err: anyhow::Error) -> anyhow::Error {
    let reason = match err.downcast_ref::<tokio_postgres::Error>() {
        Some(e) => match e.as_db_error() {
            Some(d) => d.message().to_string(),
            None => {
                let mut m = e.to_string();
                if let Some(src) = std::error::Error::source(e) {
                    m.push_str(&format!(": {src}"));
                }
                m
            }
        },
        None => format!("{err:#}"),
    };
    let target = params.describe();
    let db = params.dbname();
    anyhow!(
        "cannot open the evaluation connection as {target}: {reason}. Configured SQL runs as the unprivileged role {ROLE}; \
         run `cdpctl init` to create it, and give it a login: set {PASSWORD_ENV} to its password \
         (`cdpctl init` sets the password from {PASSWORD_ENV}), or allow it in pg_hba.conf, e.g. \
         `host {db} {ROLE} 127.0.0.1/32 scram-sha-256` or `local {db} {ROLE} peer map=...`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eval_login_keeps_the_server_and_drops_the_main_credentials() {
        let cfg = Config::default();
        let main = ConnectParams::resolve(
            &cfg,
            Some("postgresql://admin:s3cret@db1.example:6432/cdp?sslmode=require"),
        )
        .unwrap();
        let eval = main.for_role(ROLE, None);
        assert_eq!(eval.describe(), "cdpctl_eval@db1.example:6432/cdp");
        assert_eq!(eval.pg.get_password(), None);
        assert_eq!(eval.ssl, main.ssl);
        assert_eq!(eval.pg.get_ssl_mode(), main.pg.get_ssl_mode());
        assert_eq!(eval.pg.get_connect_timeout(), main.pg.get_connect_timeout());
        let eval = main.for_role(ROLE, Some("pw".into()));
        assert_eq!(eval.pg.get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn the_password_is_sent_as_a_scram_verifier() {
        let sql = password_sql("hunter2'; DROP ROLE x; --");
        assert!(
            sql.starts_with("ALTER ROLE cdpctl_eval PASSWORD 'SCRAM-SHA-256$4096:"),
            "{sql}"
        );
        assert!(!sql.contains("hunter2") && !sql.contains("DROP"), "{sql}");
    }
}
