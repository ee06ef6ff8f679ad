//! The query layer: connecting (URL or config block, TLS), session setup,
//! transactions, lock-timeout retries, per-job advisory locks, Ctrl-C
//! cancellation and identifier quoting. Every command talks to PostgreSQL
//! through a [`Db`].

pub mod eval;
pub mod tls;

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio_postgres::{Client, Config as PgConnConfig};

use crate::config::Config;
use crate::error::LockHeld;
use tls::SslMode;

/// Quotes an SQL identifier (`"my ""odd"" schema"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Schema names from the config, already quoted as identifiers.
#[derive(Debug, Clone)]
pub struct Schemas {
    pub cdp: String,
    pub ce: String,
    pub ps: String,
    pub attr: String,
    pub audience: String,
    pub history: String,
    pub cdpctl: String,
    raw: Vec<(&'static str, String)>,
}

impl Schemas {
    pub fn from_config(cfg: &Config) -> Self {
        let raw = vec![
            ("cdp", cfg.cdp_schema.clone()),
            ("ce", cfg.ce_schema.clone()),
            ("ps", cfg.ps_schema.clone()),
            ("attr", cfg.attr_schema.clone()),
            ("audience", cfg.audience_schema.clone()),
            ("history", cfg.history_schema.clone()),
            ("cdpctl", cfg.cdpctl_schema.clone()),
        ];
        Self {
            cdp: quote_ident(&cfg.cdp_schema),
            ce: quote_ident(&cfg.ce_schema),
            ps: quote_ident(&cfg.ps_schema),
            attr: quote_ident(&cfg.attr_schema),
            audience: quote_ident(&cfg.audience_schema),
            history: quote_ident(&cfg.history_schema),
            cdpctl: quote_ident(&cfg.cdpctl_schema),
            raw,
        }
    }

    /// Unquoted schema names with their template variable names
    /// (`cdp`, `ce`, `ps`, `attr`, `audience`, `history`, `cdpctl`).
    pub fn raw(&self) -> &[(&'static str, String)] {
        &self.raw
    }

    /// Unquoted name of one schema (`"ce"` → `cdp_ce`).
    pub fn raw_name(&self, var: &str) -> &str {
        self.raw
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("unknown schema variable {var}"))
    }

    /// Replaces `{{cdp}}`, `{{ce}}`, ... with quoted schema names and
    /// `{{cdp_lit}}`, ... with the names as string literals.
    pub fn substitute(&self, sql: &str) -> String {
        let mut out = sql.to_string();
        for (var, name) in &self.raw {
            out = out.replace(&format!("{{{{{var}_lit}}}}"), &quote_literal(name));
            out = out.replace(&format!("{{{{{var}}}}}"), &quote_ident(name));
        }
        out
    }
}

/// Where and how to connect; built once, used for every connection of a run.
#[derive(Clone)]
pub struct ConnectParams {
    pub pg: PgConnConfig,
    pub ssl: SslMode,
    pub root_cert: Option<std::path::PathBuf>,
}

impl ConnectParams {
    /// `--database-url` (or `DATABASE_URL`) wins over the config's
    /// `postgresql` block; libpq environment variables fill the gaps.
    pub fn resolve(cfg: &Config, database_url: Option<&str>) -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut ssl = None;
        let mut root_cert = cfg.postgresql.sslrootcert.clone();
        let mut pg = if let Some(url) = database_url {
            let (cleaned, mode, cert) = strip_ssl_params(url)?;
            if mode.is_some() {
                ssl = mode;
            }
            if cert.is_some() {
                root_cert = cert;
            }
            cleaned.parse::<PgConnConfig>().map_err(|e| {
                anyhow!(
                    "invalid database URL: {e}; expected postgresql://user:password@host:port/dbname"
                )
            })?
        } else {
            let p = &cfg.postgresql;
            let mut c = PgConnConfig::new();
            let host = p
                .host
                .clone()
                .or_else(|| env("PGHOST"))
                .unwrap_or_else(|| "localhost".into());
            c.host(&host);
            let port = match p.port {
                Some(port) => port,
                None => match env("PGPORT") {
                    Some(v) => v
                        .parse()
                        .map_err(|_| anyhow!("PGPORT={v:?} is not a port number"))?,
                    None => 5432,
                },
            };
            c.port(port);
            let user = p
                .user
                .clone()
                .or_else(|| env("PGUSER"))
                .unwrap_or_else(|| "postgres".into());
            c.user(&user);
            if let Some(pw) = p.password.clone().filter(|s| !s.is_empty()) {
                c.password(pw);
            }
            let dbname = p
                .dbname
                .clone()
                .or_else(|| env("PGDATABASE"))
                .unwrap_or(user);
            c.dbname(&dbname);
            c
        };
        if pg.get_hosts().is_empty() {
            pg.host(env("PGHOST").as_deref().unwrap_or("localhost"));
        }
        if pg.get_ports().is_empty() {
            let port = env("PGPORT").and_then(|p| p.parse().ok()).unwrap_or(5432);
            pg.port(port);
        }
        if pg.get_user().is_none() {
            pg.user(env("PGUSER").as_deref().unwrap_or("postgres"));
        }
        if pg.get_dbname().is_none() {
            let db = env("PGDATABASE").unwrap_or_else(|| pg.get_user().unwrap().to_string());
            pg.dbname(&db);
        }
        if pg.get_password().is_none() {
            if let Some(pw) = env("PGPASSWORD") {
                pg.password(pw);
            }
        }
        let ssl = match ssl {
            Some(m) => m,
            None => match cfg.postgresql.sslmode.clone().or_else(|| env("PGSSLMODE")) {
                Some(m) => SslMode::parse(&m).map_err(|e| anyhow!("sslmode: {e}"))?,
                None => SslMode::Prefer,
            },
        };
        if root_cert.is_none() {
            root_cert = env("PGSSLROOTCERT").map(Into::into);
        }
        pg.ssl_mode(ssl.to_pg());
        pg.connect_timeout(Duration::from_secs(10));
        Ok(Self { pg, ssl, root_cert })
    }

    /// `user@host:port/dbname`, for messages (never the password).
    pub fn describe(&self) -> String {
        let host = match self.pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{}:{}/{}",
            self.pg.get_user().unwrap_or("?"),
            host,
            port,
            self.pg.get_dbname().unwrap_or("?")
        )
    }

    pub fn dbname(&self) -> &str {
        self.pg.get_dbname().unwrap_or("postgres")
    }

    /// Opens one connection with `application_name = 'cdpctl <command>'`.
    pub async fn connect_raw(&self, command: &str) -> Result<Client> {
        match self.connect_with(&format!("cdpctl {command}")).await {
            Ok(c) => Ok(c),
            Err(e) => Err(match e.downcast::<tokio_postgres::Error>() {
                Ok(pe) => explain_connect_error(pe, self),
                Err(other) => other,
            }),
        }
    }

    /// Opens one connection named `application_name` and registers it for
    /// cancellation on Ctrl-C/SIGTERM; a connection failure comes back as
    /// the driver's error, for the caller to explain.
    pub async fn connect_with(&self, application_name: &str) -> Result<Client> {
        let mut pg = self.pg.clone();
        pg.application_name(application_name);
        let tls = tls::make_tls(self.ssl, self.root_cert.as_deref())?;
        let (client, connection) = pg.connect(tls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        register(&client, self);
        Ok(client)
    }

    /// The same server, database and TLS settings for another role (its
    /// password, or none: trust/peer as the server's pg_hba.conf says).
    pub fn for_role(&self, user: &str, password: Option<String>) -> ConnectParams {
        let src = &self.pg;
        let mut pg = PgConnConfig::new();
        for h in src.get_hosts() {
            match h {
                tokio_postgres::config::Host::Tcp(h) => {
                    pg.host(h);
                }
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => {
                    pg.host_path(p);
                }
            }
        }
        for a in src.get_hostaddrs() {
            pg.hostaddr(*a);
        }
        for p in src.get_ports() {
            pg.port(*p);
        }
        if let Some(d) = src.get_dbname() {
            pg.dbname(d);
        }
        if let Some(o) = src.get_options() {
            pg.options(o);
        }
        if let Some(t) = src.get_connect_timeout() {
            pg.connect_timeout(*t);
        }
        pg.ssl_mode(src.get_ssl_mode());
        pg.keepalives(src.get_keepalives());
        pg.keepalives_idle(src.get_keepalives_idle());
        pg.target_session_attrs(src.get_target_session_attrs());
        pg.channel_binding(src.get_channel_binding());
        pg.user(user);
        if let Some(pw) = password {
            pg.password(pw);
        }
        ConnectParams {
            pg,
            ssl: self.ssl,
            root_cert: self.root_cert.clone(),
        }
    }
}

/// The connections this process opened (the most recent ones), so a
/// signal can cancel whatever each of them is running, server-side.
static OPEN: Mutex<
    Vec<(
        tokio_postgres::CancelToken,
        SslMode,
        Option<std::path::PathBuf>,
    )>,
> = Mutex::new(Vec::new());

fn register(client: &Client, params: &ConnectParams) {
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    if open.len() >= 64 {
        open.remove(0);
    }
    open.push((client.cancel_token(), params.ssl, params.root_cert.clone()));
}

/// Cancels the running statement of every open connection (main, workers,
/// evaluation), server-side; their open transactions then roll back.
pub async fn cancel_all() {
    let open: Vec<_> = OPEN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let cancels = open.into_iter().map(|(token, ssl, cert)| async move {
        if let Ok(tls) = tls::make_tls(ssl, cert.as_deref()) {
            let _ = tokio::time::timeout(Duration::from_secs(3), token.cancel_query(tls)).await;
        }
    });
    futures_util::future::join_all(cancels).await;
}

fn strip_ssl_params(url: &str) -> Result<(String, Option<SslMode>, Option<std::path::PathBuf>)> {
    let mut mode = None;
    let mut cert = None;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut parsed = url::Url::parse(url).map_err(|e| {
            anyhow!(
                "invalid database URL: {e}; expected postgresql://user:password@host:port/dbname"
            )
        })?;
        let mut kept = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "sslmode" => {
                    mode = Some(SslMode::parse(&v).map_err(|e| anyhow!("database URL: {e}"))?)
                }
                "sslrootcert" => cert = Some(std::path::PathBuf::from(v.as_ref())),
                _ => kept.push((k.into_owned(), v.into_owned())),
            }
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        Ok((parsed.to_string(), mode, cert))
    } else {
        let mut kept = Vec::new();
        for part in url.split_whitespace() {
            if let Some(v) = part.strip_prefix("sslmode=") {
                mode = Some(SslMode::parse(v).map_err(|e| anyhow!("connection string: {e}"))?);
            } else if let Some(v) = part.strip_prefix("sslrootcert=") {
                cert = Some(v.into());
            } else {
                kept.push(part);
            }
        }
        Ok((kept.join(" "), mode, cert))
    }
}

fn explain_connect_error(err: tokio_postgres::Error, params: &ConnectParams) -> anyhow::Error {
    let target = params.describe();
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        return match code {
            "28P01" => anyhow!(
                "cannot connect to {target}: password authentication failed for user {:?}; set the right password in postgresql.password, PGPASSWORD or the database URL",
                params.pg.get_user().unwrap_or("?")
            ),
            "28000" => anyhow!(
                "cannot connect to {target}: {}; check the user name and the server's pg_hba.conf",
                db.message()
            ),
            "3D000" => anyhow!(
                "cannot connect to {target}: database {:?} does not exist; create it (createdb {}) or fix postgresql.dbname / the database URL",
                params.dbname(),
                params.dbname()
            ),
            "57P03" => anyhow!("cannot connect to {target}: the server is starting up or shutting down; retry in a moment"),
            _ => anyhow!("cannot connect to {target}: {} (SQLSTATE {code})", db.message()),
        };
    }
    let text = err.to_string();
    let source = std::error::Error::source(&err)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let detail = if source.is_empty() {
        text.clone()
    } else {
        source
    };
    if detail.contains("refused") {
        anyhow!(
            "cannot connect to {target}: connection refused; is PostgreSQL running there? check postgresql.host/port in the config or --database-url"
        )
    } else if detail.contains("timed out") || text.contains("timeout") {
        anyhow!("cannot connect to {target}: connection timed out; check the host, the port and any firewall in between")
    } else if detail.contains("failed to lookup")
        || detail.contains("resolve")
        || detail.contains("Name or service")
    {
        anyhow!("cannot connect to {target}: unknown host; fix postgresql.host or the database URL")
    } else if detail.contains("server does not support TLS") || text.contains("TLS") {
        anyhow!("cannot connect to {target}: {detail}; use sslmode=prefer or disable for servers without TLS")
    } else {
        anyhow!("cannot connect to {target}: {detail}")
    }
}

/// One cdpctl session against the CDP database.
pub struct Db {
    pub client: Client,
    pub schemas: Schemas,
    pub config: Config,
    pub params: ConnectParams,
    pub command: String,
    eval: tokio::sync::OnceCell<eval::Eval>,
}

impl Db {
    /// Connects and applies the session settings of the config.
    pub async fn connect(config: &Config, params: &ConnectParams, command: &str) -> Result<Db> {
        let client = params.connect_raw(command).await?;
        setup_session(&client, config).await?;
        Ok(Db {
            client,
            schemas: Schemas::from_config(config),
            config: config.clone(),
            params: params.clone(),
            command: command.to_string(),
            eval: tokio::sync::OnceCell::new(),
        })
    }

    /// The evaluation session configured SQL runs in (opened on first use,
    /// as the unprivileged role [`eval::ROLE`]).
    pub async fn eval(&self) -> Result<&eval::Eval> {
        self.eval
            .get_or_try_init(|| eval::Eval::connect(&self.params, &self.config, &self.command))
            .await
    }

    /// A further connection with the same settings (parallel workers, the
    /// lock holder of a long job).
    pub async fn connect_another(&self) -> Result<Client> {
        let client = self.params.connect_raw(&self.command).await?;
        setup_session(&client, &self.config).await?;
        Ok(client)
    }

    /// Takes the per-job advisory lock for the lifetime of this session.
    /// A second run of the same job gets [`LockHeld`] (exit code 3).
    pub async fn lock_job(&self, job: &str) -> Result<()> {
        let (k1, k2) = job_lock_keys(job);
        // A run that just ended may still hold the lock for a moment while its
        // server session shuts down, so a held lock is retried briefly.
        for attempt in 0..20 {
            let got: bool = self
                .client
                .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&k1, &k2])
                .await
                .context("taking the job lock")?
                .get(0);
            if got {
                return Ok(());
            }
            if attempt < 19 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let holder = self
            .client
            .query_opt(
                "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local socket'),
                        to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
                   FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE l.locktype = 'advisory' AND l.granted
                    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.classid = ($1::int4)::oid AND l.objid = ($2::int4)::oid AND l.objsubid = 2
                  LIMIT 1",
                &[&k1, &k2],
            )
            .await
            .context("looking up the job lock holder")?;
        let holder = match holder {
            Some(r) => format!(
                "held by \"{}\" pid {} from {} since {}",
                r.get::<_, String>(1),
                r.get::<_, i32>(0),
                r.get::<_, String>(2),
                r.get::<_, String>(3)
            ),
            None => "the holder just finished".into(),
        };
        Err(LockHeld {
            job: job.to_string(),
            holder,
        }
        .into())
    }

    /// Runs `f` and retries it with jittered backoff when it fails on
    /// `lock_timeout` (SQLSTATE 55P03) or a deadlock/serialization failure.
    pub async fn retry_locked<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        retry_locked(self.config.session.lock_retries, what, &mut f).await
    }

    /// Runs a future; on Ctrl-C (or SIGTERM) the running statement is
    /// cancelled server-side, the open transaction rolls back and an error
    /// says so.
    pub async fn cancellable<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            res = fut => res,
            sig = crate::signals::interrupted() => {
                cancel_all().await;
                Err(anyhow!("{}", crate::signals::interrupted_message(sig)))
            }
        }
    }

    /// True when the relation `schema.name` exists.
    pub async fn relation_exists(&self, schema_var: &str, name: &str) -> Result<bool> {
        relation_exists(&self.client, self.schemas.raw_name(schema_var), name).await
    }

    /// Fails with a message pointing to `cdpctl init` when the schema has not
    /// been created (or upgraded) yet.
    pub async fn require_initialized(&self) -> Result<()> {
        crate::schema::require_current(self).await
    }
}

pub async fn relation_exists(client: &Client, schema: &str, name: &str) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
            &[&schema, &name],
        )
        .await?;
    Ok(row.get(0))
}

async fn setup_session(client: &Client, config: &Config) -> Result<()> {
    let s = &config.session;
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}; SET lock_timeout = {}; SET idle_in_transaction_session_timeout = 0;",
            s.statement_timeout_ms, s.lock_timeout_ms
        ))
        .await
        .context("setting up the session")?;
    Ok(())
}

fn job_lock_keys(job: &str) -> (i32, i32) {
    // FNV-1a: stable across versions and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in job.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (0x0cd9_c7a1, h as i32)
}

/// A PostgreSQL error reduced to its SQLSTATE and the server's message
/// (with detail and hint), so `error: {:#}` prints it once and readably.
#[derive(Debug)]
pub struct PgError {
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PgError {}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        let code = e.code().map(|c| c.code().to_string());
        let message = match e.as_db_error() {
            Some(d) => {
                let mut m = d.message().to_string();
                if let Some(det) = d.detail() {
                    m.push_str(&format!(" ({det})"));
                }
                if let Some(h) = d.hint() {
                    m.push_str(&format!("; hint: {h}"));
                }
                m
            }
            None => {
                let mut m = e.to_string();
                if let Some(src) = std::error::Error::source(&e) {
                    m.push_str(&format!(": {src}"));
                }
                m
            }
        };
        PgError { code, message }
    }
}

/// The SQLSTATE of the first PostgreSQL error in the chain.
pub fn sqlstate(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|c| {
        if let Some(p) = c.downcast_ref::<PgError>() {
            return p.code.clone();
        }
        c.downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.code())
            .map(|c| c.code().to_string())
    })
}

/// True for errors worth retrying: lock timeout, deadlock, serialization failure.
pub fn is_retryable(err: &anyhow::Error) -> bool {
    matches!(sqlstate(err).as_deref(), Some("55P03" | "40P01" | "40001"))
}

/// True when the error is a lock timeout.
pub fn is_lock_timeout(err: &anyhow::Error) -> bool {
    sqlstate(err).as_deref() == Some("55P03")
}

pub async fn retry_locked<T, F, Fut>(retries: u32, what: &str, f: &mut F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0u32;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if is_retryable(&e) && attempt < retries => {
                attempt += 1;
                let base = 100u64 << attempt.min(6);
                let jitter = rand::random::<u64>() % base;
                tokio::time::sleep(Duration::from_millis(base + jitter)).await;
            }
            Err(e) if is_lock_timeout(&e) => {
                return Err(e.context(format!(
                    "{what}: could not get a lock within lock_timeout after {} attempts; another session holds it (see pg_stat_activity), retry later or raise session.lock_timeout_ms",
                    attempt + 1
                )))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Extension for tokio-postgres results: `.pg_context(|| "what".into())`
/// turns the error into a [`PgError`] (server message, detail, hint; SQLSTATE
/// kept for retries) under the given context.
pub trait PgResultExt<T> {
    fn pg_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> PgResultExt<T> for std::result::Result<T, tokio_postgres::Error> {
    fn pg_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| anyhow::Error::new(PgError::from(e)).context(what()))
    }
}
