//! The query layer: connecting (URL or config block, TLS), session setup,
//! transactions, lock-timeout retries, per-job advisory locks, Ctrl-C
//! cancellation and identifier quoting. Every command talks to PostgreSQL
//! through a [`Db`].

pub mod conninfo;
pub mod eval;
pub mod tls;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
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

/// Where and how to connect, resolved as libpq does (explicit options, then
/// the service file, then the `PG*` environment, then the defaults); built
/// once, used for every connection of a run.
#[derive(Clone)]
pub struct ConnectParams {
    /// All hosts and ports, user, dbname, explicit password and the other
    /// options. A password from the password file is looked up per host at
    /// connect time.
    pub pg: PgConnConfig,
    /// The effective sslmode (`require` with a root certificate file is
    /// `verify-ca`, as in libpq).
    pub ssl: SslMode,
    /// `sslrootcert`: a PEM file, or `system`.
    pub root_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The password file (`passfile`, `PGPASSFILE`, `~/.pgpass`).
    pub passfile: Option<PathBuf>,
    /// Everything but the hosts, for the per-host attempts.
    base: PgConnConfig,
    targets: Vec<Target>,
}

#[derive(Clone, Debug)]
struct Target {
    host: String,
    hostaddr: Option<std::net::IpAddr>,
    port: u16,
}

/// Options that cdpctl handles itself rather than tokio-postgres.
const OWN_OPTIONS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "passfile",
    "service",
];

fn quote_option(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl ConnectParams {
    /// `--database-url` (or `DATABASE_URL`, a URI or a `key=value` string)
    /// wins over the config's `postgresql` block (whose ssl keys still fill
    /// the URL's gaps); then the service (`service=`/`PGSERVICE`), the `PG*`
    /// environment variables and libpq's defaults.
    pub fn resolve(cfg: &Config, database_url: Option<&str>) -> Result<Self> {
        let p = &cfg.postgresql;
        let mut opts = match database_url {
            Some(url) => conninfo::parse(url)?,
            None => {
                let mut o = conninfo::Options::new();
                let port = p.port.map(|v| v.to_string());
                for (k, v) in [
                    ("host", p.host.as_ref()),
                    ("port", port.as_ref()),
                    ("user", p.user.as_ref()),
                    ("password", p.password.as_ref()),
                    ("dbname", p.dbname.as_ref()),
                    ("service", p.service.as_ref()),
                ] {
                    if let Some(v) = v {
                        o.insert(k.into(), v.clone());
                    }
                }
                o
            }
        };
        let path_str = |v: &Option<PathBuf>| v.as_ref().map(|p| p.to_string_lossy().into_owned());
        for (k, v) in [
            ("sslmode", p.sslmode.clone()),
            ("sslrootcert", path_str(&p.sslrootcert)),
            ("sslcert", path_str(&p.sslcert)),
            ("sslkey", path_str(&p.sslkey)),
        ] {
            if let Some(v) = v {
                opts.entry(k.into()).or_insert(v);
            }
        }
        opts.retain(|_, v| !v.is_empty());
        conninfo::add_service_and_env(&mut opts)?;
        Self::from_options(&opts)
    }

    /// Builds the parameters from complete libpq options (after the
    /// service and the environment were applied).
    pub fn from_options(opts: &conninfo::Options) -> Result<Self> {
        let home_pg = conninfo::home_dir().map(|h| h.join(".postgresql"));
        let default_file = |name: &str| {
            home_pg
                .as_ref()
                .map(|d| d.join(name))
                .filter(|f| f.exists())
        };
        // Ports, then hosts (the default host depends on the port).
        let ports: Vec<u16> = match opts.get("port") {
            Some(v) => v
                .split(',')
                .map(|p| {
                    let p = p.trim();
                    if p.is_empty() {
                        return Ok(5432);
                    }
                    p.parse().map_err(|_| {
                        anyhow!(
                            "port {p:?} is not a port number; fix port=, PGPORT or postgresql.port"
                        )
                    })
                })
                .collect::<Result<_>>()?,
            None => vec![5432],
        };
        let hostaddrs: Vec<Option<std::net::IpAddr>> = match opts.get("hostaddr") {
            Some(v) => v
                .split(',')
                .map(|a| {
                    let a = a.trim();
                    if a.is_empty() {
                        return Ok(None);
                    }
                    a.parse().map(Some).map_err(|_| {
                        anyhow!("hostaddr {a:?} is not an IP address; fix hostaddr= or PGHOSTADDR")
                    })
                })
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let hosts: Vec<String> = match opts.get("host") {
            Some(v) => v.split(',').map(|h| h.trim().to_string()).collect(),
            None if !hostaddrs.is_empty() => hostaddrs
                .iter()
                .map(|a| a.map(|a| a.to_string()).unwrap_or_default())
                .collect(),
            None => vec![default_host(ports[0])],
        };
        if ports.len() > 1 && ports.len() != hosts.len() {
            bail!(
                "{} ports for {} hosts; give one port for all hosts or one per host",
                ports.len(),
                hosts.len()
            );
        }
        if !hostaddrs.is_empty() && hostaddrs.len() != hosts.len() {
            bail!(
                "{} hostaddr values for {} hosts; give one per host",
                hostaddrs.len(),
                hosts.len()
            );
        }
        let targets: Vec<Target> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| Target {
                host: if h.is_empty() {
                    default_host(ports.get(i).copied().unwrap_or(ports[0]))
                } else {
                    h.clone()
                },
                hostaddr: hostaddrs.get(i).copied().flatten(),
                port: ports.get(i).copied().unwrap_or(ports[0]),
            })
            .collect();

        let user = opts
            .get("user")
            .cloned()
            .or_else(conninfo::os_user)
            .unwrap_or_else(|| "postgres".into());
        let dbname = opts.get("dbname").cloned().unwrap_or_else(|| user.clone());
        let mut kv = vec![
            format!("user={}", quote_option(&user)),
            format!("dbname={}", quote_option(&dbname)),
        ];
        for (k, v) in opts {
            if !OWN_OPTIONS.contains(&k.as_str()) && k != "user" && k != "dbname" {
                kv.push(format!("{k}={}", quote_option(v)));
            }
        }
        let mut base: PgConnConfig = kv.join(" ").parse().map_err(|e| {
            anyhow!("connection options: {e}; see the libpq connection parameters in docs/configuration.md")
        })?;
        if base.get_connect_timeout().is_none() {
            base.connect_timeout(Duration::from_secs(10));
        }

        let root_cert = opts
            .get("sslrootcert")
            .map(PathBuf::from)
            .or_else(|| default_file("root.crt"));
        let system = root_cert.as_deref().is_some_and(tls::is_system);
        let mut ssl = match opts.get("sslmode") {
            Some(m) => SslMode::parse(m).map_err(|e| anyhow!("sslmode: {e}"))?,
            None if system => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if system && ssl != SslMode::VerifyFull {
            bail!(
                "sslmode={} may not be used with sslrootcert=system; use sslmode=verify-full (the system's roots vouch only for host names)",
                ssl.as_str()
            );
        }
        if ssl == SslMode::Require && root_cert.as_deref().is_some_and(|p| p.is_file()) {
            // libpq: with a root certificate file, require checks the chain.
            ssl = SslMode::VerifyCa;
        }
        let client_cert = opts
            .get("sslcert")
            .map(PathBuf::from)
            .or_else(|| default_file("postgresql.crt"));
        let client_key = opts
            .get("sslkey")
            .map(PathBuf::from)
            .or_else(|| home_pg.as_ref().map(|d| d.join("postgresql.key")));
        let passfile = opts
            .get("passfile")
            .map(PathBuf::from)
            .or_else(|| conninfo::home_dir().map(|h| h.join(".pgpass")));

        let mut pg = base.clone();
        for t in &targets {
            pg.host(&t.host);
            pg.port(t.port);
            if let Some(a) = t.hostaddr {
                pg.hostaddr(a);
            }
        }
        pg.ssl_mode(ssl.to_pg());
        base.ssl_mode(ssl.to_pg());
        Ok(Self {
            pg,
            ssl,
            root_cert,
            client_cert,
            client_key,
            passfile,
            base,
            targets,
        })
    }

    /// The TLS settings (mode, root and client certificates).
    pub fn tls_params(&self) -> tls::TlsParams {
        tls::TlsParams {
            mode: self.ssl,
            root_cert: self.root_cert.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        }
    }

    /// The TLS connector for these parameters (with the client certificate).
    pub fn tls(&self) -> Result<tls::MakeTls> {
        tls::make_tls_with(&self.tls_params())
    }

    /// A tokio-postgres config for these parameters, connecting as `user`
    /// when given (the explicit password then does not apply; the password
    /// file is consulted for that user), plus its TLS connector. With
    /// several hosts, [`ConnectParams::connect_as`] also applies libpq's
    /// per-host rules (no TLS over Unix sockets, `allow`/`prefer` retries).
    pub fn config_for(&self, user: Option<&str>) -> Result<(PgConnConfig, tls::MakeTls)> {
        let t = &self.targets[0];
        let mut cfg = self.target_config(t, user);
        if t.host.starts_with('/') {
            cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        Ok((cfg, self.tls()?))
    }

    fn target_config(&self, t: &Target, user: Option<&str>) -> PgConnConfig {
        let mut cfg = self.base.clone();
        if let Some(u) = user {
            if Some(u) != self.base.get_user() {
                cfg = self.without_password(u);
            }
        }
        cfg.host(&t.host);
        cfg.port(t.port);
        if let Some(a) = t.hostaddr {
            cfg.hostaddr(a);
        }
        if cfg.get_password().is_none() {
            if let Some(file) = &self.passfile {
                let host = t.host.clone();
                let user = cfg.get_user().unwrap_or_default().to_string();
                let db = cfg.get_dbname().unwrap_or_default().to_string();
                if let Some(pw) =
                    conninfo::pgpass_lookup(file, &host, &t.port.to_string(), &db, &user)
                {
                    cfg.password(pw);
                }
            }
        }
        cfg
    }

    fn without_password(&self, user: &str) -> PgConnConfig {
        // tokio-postgres has no way to unset a password: rebuild.
        let mut cfg = PgConnConfig::new();
        let b = &self.base;
        cfg.user(user);
        if let Some(d) = b.get_dbname() {
            cfg.dbname(d);
        }
        if let Some(o) = b.get_options() {
            cfg.options(o);
        }
        if let Some(t) = b.get_connect_timeout() {
            cfg.connect_timeout(*t);
        }
        cfg.ssl_mode(b.get_ssl_mode());
        cfg.channel_binding(b.get_channel_binding());
        cfg.target_session_attrs(b.get_target_session_attrs());
        cfg
    }

    /// `user@host:port/dbname`, for messages (never the password).
    pub fn describe(&self) -> String {
        let t = &self.targets[0];
        format!(
            "{}@{}:{}/{}",
            self.pg.get_user().unwrap_or("?"),
            t.host,
            t.port,
            self.dbname()
        )
    }

    /// `host/dbname` (`host:port/dbname` off the default port), naming the
    /// database in prompts.
    pub fn host_db(&self) -> String {
        let t = &self.targets[0];
        if t.port == 5432 {
            format!("{}/{}", t.host, self.dbname())
        } else {
            format!("{}:{}/{}", t.host, t.port, self.dbname())
        }
    }

    pub fn dbname(&self) -> &str {
        self.pg.get_dbname().unwrap_or("postgres")
    }

    /// Opens one connection with `application_name = 'cdpctl <command>'`.
    pub async fn connect_raw(&self, command: &str) -> Result<Client> {
        self.connect_as(None, command).await
    }

    /// Opens one connection named `application_name` (registered for
    /// cancellation on Ctrl-C/SIGTERM like every connection).
    pub async fn connect_with(&self, application_name: &str) -> Result<Client> {
        self.open(None, application_name).await
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
        let mut base = self.without_password(user);
        if let Some(pw) = pg.get_password() {
            base.password(pw);
        }
        ConnectParams {
            pg,
            base,
            ..self.clone()
        }
    }

    /// Opens one connection, as `user` when given, trying the hosts in
    /// order: no TLS over a Unix socket; `allow` tries without TLS, then
    /// with; `prefer` the other way round.
    pub async fn connect_as(&self, user: Option<&str>, command: &str) -> Result<Client> {
        self.open(user, &format!("cdpctl {command}")).await
    }

    async fn open(&self, user: Option<&str>, application_name: &str) -> Result<Client> {
        use tokio_postgres::config::SslMode as M;
        let tls = self.tls()?;
        let mut last = None;
        for t in &self.targets {
            let mut cfg = self.target_config(t, user);
            cfg.application_name(application_name);
            let modes: &[M] = if t.host.starts_with('/') {
                &[M::Disable]
            } else {
                match self.ssl {
                    SslMode::Disable => &[M::Disable],
                    SslMode::Allow => &[M::Disable, M::Require],
                    SslMode::Prefer => &[M::Prefer, M::Disable],
                    _ => &[M::Require],
                }
            };
            for (i, mode) in modes.iter().enumerate() {
                cfg.ssl_mode(*mode);
                match cfg.connect(tls.clone()).await {
                    Ok((client, connection)) => {
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                        register(&client, self);
                        return Ok(client);
                    }
                    Err(e) => {
                        let other_way = i + 1 < modes.len() && retry_other_way(&e);
                        let from_passfile =
                            cfg.get_password().is_some() && self.base.get_password().is_none();
                        last = Some((
                            e,
                            t.clone(),
                            cfg.get_user().map(str::to_string),
                            from_passfile,
                        ));
                        if !other_way {
                            break;
                        }
                    }
                }
            }
        }
        let (e, t, user, from_passfile) = last.expect("at least one host");
        Err(explain_connect_error(
            e,
            self,
            &t,
            user.as_deref(),
            from_passfile,
        ))
    }
}

/// The first of libpq's usual socket directories that has this port's
/// socket, else `localhost`.
fn default_host(port: u16) -> String {
    conninfo::DEFAULT_SOCKET_DIRS
        .iter()
        .find(|d| Path::new(d).join(format!(".s.PGSQL.{port}")).exists())
        .map(|d| d.to_string())
        .unwrap_or_else(|| "localhost".into())
}

/// `allow`/`prefer`: the server refused the connection (pg_hba.conf has no
/// entry for it with or without TLS) or the TLS handshake failed.
fn retry_other_way(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => db.code().code().starts_with("28"),
        None => {
            let text = format!(
                "{e} {}",
                std::error::Error::source(e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            );
            text.contains("TLS") || text.contains("tls")
        }
    }
}

fn explain_connect_error(
    err: tokio_postgres::Error,
    params: &ConnectParams,
    t: &Target,
    user: Option<&str>,
    from_passfile: bool,
) -> anyhow::Error {
    let user = user.unwrap_or("?");
    let target = format!("{user}@{}:{}/{}", t.host, t.port, params.dbname());
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        return match code {
            "28P01" if from_passfile => anyhow!(
                "cannot connect to {target}: password authentication failed for user {user:?} with the password from {}; fix its line for this host, port, database and user",
                params.passfile.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
            ),
            "28P01" => anyhow!(
                "cannot connect to {target}: password authentication failed for user {user:?}; set the right password in postgresql.password, PGPASSWORD or the database URL"
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
    let mut detail = String::new();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        detail = text.clone();
    }
    let unix = t.host.starts_with('/');
    if detail == "password missing" {
        anyhow!(
            "cannot connect to {target}: the server asks for a password and none was given; set it in postgresql.password, PGPASSWORD, the database URL or the password file ({})",
            params.passfile.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "~/.pgpass".into())
        )
    } else if unix && (detail.contains("No such file") || detail.contains("refused")) {
        anyhow!(
            "cannot connect to {target}: no server socket {}/.s.PGSQL.{}; is PostgreSQL running with unix_socket_directories including {}? check host and port",
            t.host, t.port, t.host
        )
    } else if detail.contains("refused") {
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
    } else if detail.contains("server does not support TLS") {
        anyhow!(
            "cannot connect to {target}: the server does not offer TLS and sslmode={} requires it; enable TLS on the server (ssl = on in postgresql.conf)",
            params.ssl.as_str()
        )
    } else if detail.contains("NotValidForName") || detail.contains("not valid for name") {
        anyhow!(
            "cannot connect to {target}: the server certificate does not name host {:?} (sslmode=verify-full checks it); connect by a name the certificate lists",
            t.host
        )
    } else if detail.contains("UnknownIssuer") || detail.contains("invalid peer certificate") {
        anyhow!(
            "cannot connect to {target}: the server certificate is not signed by a CA in sslrootcert ({}): {detail}; put the CA certificate that signed the server's certificate there",
            params.root_cert.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "~/.postgresql/root.crt".into())
        )
    } else if text.contains("TLS") || text.contains("tls") {
        anyhow!("cannot connect to {target}: TLS handshake failed: {detail}; check sslrootcert, sslcert and sslkey")
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

    /// Server process ids of this run's sessions besides the main one (the
    /// evaluation session, once opened): not "another job" to checks that
    /// look for one in `pg_stat_activity`.
    pub fn side_session_pids(&self) -> Vec<i32> {
        self.eval
            .get()
            .map(|e| e.backend_pid())
            .into_iter()
            .collect()
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

/// True when `err` means a session is gone rather than a statement refused:
/// the connection closed (server restart, network, a terminated backend
/// noticed while idle), a connection exception (SQLSTATE class 08) or the
/// server shutting the session down (57P01–57P03). `--watch` loops
/// reconnect on these and go on.
pub fn is_connection_lost(client: &Client, err: &anyhow::Error) -> bool {
    client.is_closed()
        || err.chain().any(|c| {
            c.downcast_ref::<tokio_postgres::Error>()
                .is_some_and(|e| e.is_closed())
        })
        || sqlstate(err).is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_str(), "57P01" | "57P02" | "57P03")
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
