//! Test harness: every test gets its own database, cloned from a migrated
//! template (`CREATE DATABASE … TEMPLATE`), on a real PostgreSQL server:
//! `DATABASE_URL` if set, else 127.0.0.1:5432 if it answers, else a private
//! cluster started once from the installed server binaries and shared by all
//! test processes.
#![allow(dead_code)]

pub mod dynamo;
pub mod split_api;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use cdpctl::cli::GlobalOpts;
use cdpctl::config::Config;
use cdpctl::db::Db;
use cdpctl::output::Format;
use cdpctl::App;
use sha2::Digest;

static SERVER: OnceLock<String> = OnceLock::new();

/// URL of the maintenance database (`postgres`) of the test server.
pub fn server_url() -> String {
    SERVER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("DATABASE_URL") {
                if !url.is_empty() {
                    return url;
                }
            }
            let local = "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable";
            if std::net::TcpStream::connect_timeout(
                &"127.0.0.1:5432".parse().unwrap(),
                std::time::Duration::from_millis(500),
            )
            .is_ok()
            {
                return local.to_string();
            }
            shared_cluster()
        })
        .clone()
}

/// Starts (once per machine) the private cluster that test processes share.
fn shared_cluster() -> String {
    let root = std::env::temp_dir().join(format!("cdpctl-test-pg-{}", unsafe { libc::geteuid() }));
    let lock_path = root.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .expect("lock file");
    use std::os::fd::AsRawFd;
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    let port_file = root.with_extension("port");
    if let Ok(port) = std::fs::read_to_string(&port_file) {
        let port = port.trim();
        if std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok() {
            return format!("postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    let cluster = cdpctl::pgcluster::Cluster::start(&root, true)
        .expect("starting a private PostgreSQL cluster");
    std::fs::write(&port_file, cluster.port.to_string()).unwrap();
    let url = cluster.url("postgres");
    std::mem::forget(cluster);
    url
}

pub fn url_for(dbname: &str) -> String {
    let mut u = url::Url::parse(&server_url()).unwrap();
    u.set_path(&format!("/{dbname}"));
    u.to_string()
}

pub fn global(url: &str) -> GlobalOpts {
    GlobalOpts {
        config: None,
        database_url: Some(url.to_string()),
        format: Format::Json,
        region: None,
        yes: true,
        quiet: true,
        verbose: 0,
    }
}

async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to the test server");
    tokio::spawn(conn);
    client
}

fn template_name() -> String {
    let mut h = sha2::Sha256::new();
    for m in cdpctl::schema::MIGRATIONS {
        h.update(m.version.as_bytes());
        h.update(m.checksum().as_bytes());
    }
    format!("cdpctl_tpl_{}", &hex::encode(h.finalize())[..12])
}

/// Creates the migrated template once (serialised across test processes).
async fn ensure_template() -> String {
    let name = template_name();
    let admin = admin().await;
    admin
        .execute("SELECT pg_advisory_lock(7411)", &[])
        .await
        .unwrap();
    let ready = admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate",
            &[&name],
        )
        .await
        .unwrap()
        .is_some();
    if !ready {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        {
            let app = App::with_config(&global(&url_for(&name)), Config::default()).unwrap();
            let mut db = app.connect("test-template").await.unwrap();
            cdpctl::schema::apply(&mut db)
                .await
                .expect("migrating the template");
            cdpctl::commands::init::post_migrate(&mut db).await.unwrap();
        }
        // wait until the migrating session has gone
        for _ in 0..100 {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    &[&name],
                )
                .await
                .unwrap()
                .get(0);
            if n == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        admin
            .batch_execute(&format!("ALTER DATABASE \"{name}\" WITH is_template true"))
            .await
            .unwrap();
    }
    admin
        .execute("SELECT pg_advisory_unlock(7411)", &[])
        .await
        .unwrap();
    name
}

/// A database of one's own, dropped when the test ends (kept with
/// CDPCTL_KEEP_TEST_DB=1 for debugging).
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A fresh database with the cdpctl schema (default schema names).
    pub async fn new() -> TestDb {
        let tpl = ensure_template().await;
        Self::create(&format!("TEMPLATE \"{tpl}\"")).await
    }

    /// A fresh, empty database (no cdpctl schema).
    pub async fn empty() -> TestDb {
        Self::create("").await
    }

    /// A fresh database with the cdpctl schema and its own locale, e.g.
    /// `LOCALE_PROVIDER icu ICU_LOCALE 'und'` (cloned from template0, and
    /// migrated, since a template fixes the collation of its copies).
    pub async fn with_locale(options: &str) -> TestDb {
        let t = Self::create(&format!("TEMPLATE template0 ENCODING 'UTF8' {options}")).await;
        let app = t.app();
        let mut db = app.connect("test-locale").await.unwrap();
        cdpctl::schema::apply(&mut db).await.expect("migrating");
        cdpctl::commands::init::post_migrate(&mut db).await.unwrap();
        t
    }

    /// Creates a database; `options` follow `CREATE DATABASE name`.
    async fn create(options: &str) -> TestDb {
        let name = format!(
            "cdpctl_t_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let admin = admin().await;
        let sql = format!("CREATE DATABASE \"{name}\" {options}");
        let mut tries = 0;
        loop {
            match admin.batch_execute(&sql).await {
                Ok(()) => break,
                Err(e) if tries < 50 => {
                    let _ = e;
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("creating test database: {e:?}"),
            }
        }
        TestDb {
            url: url_for(&name),
            name,
        }
    }

    pub fn app(&self) -> App {
        App::with_config(&global(&self.url), Config::default()).unwrap()
    }

    pub fn app_with(&self, config: Config) -> App {
        App::with_config(&global(&self.url), config).unwrap()
    }

    pub async fn db(&self) -> Db {
        self.app().connect("test").await.unwrap()
    }

    /// A plain client for assertions.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    /// `cdpctl` with `--database-url` pointing at this database.
    pub fn cli(&self) -> Command {
        let mut c = cli();
        c.env("DATABASE_URL", &self.url);
        c
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var("CDPCTL_KEEP_TEST_DB").is_ok() {
            eprintln!("keeping test database {}", self.url);
            return;
        }
        cleanup(
            &server_url(),
            format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        );
    }
}

/// Runs `sql` on `url` from a destructor (inside or outside a runtime),
/// ignoring failures: clean-up must not turn a passing test into a panic.
pub fn cleanup(url: &str, sql: String) {
    let url = url.to_string();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            if let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                tokio::spawn(conn);
                let _ = client.batch_execute(&sql).await;
            }
        });
    })
    .join();
}

/// The `cdpctl` binary, with no inherited configuration.
pub fn cli() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cdpctl"));
    c.env_remove("DATABASE_URL")
        .env_remove("CDPCTL_CONFIG")
        .env_remove("PGPASSWORD")
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGUSER")
        .env_remove("PGDATABASE")
        .env_remove("PGSERVICE")
        .env_remove("PGSERVICEFILE")
        .env_remove("PGPASSFILE")
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .env_remove("PGSSLCERT")
        .env_remove("PGSSLKEY")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env_remove("CDPCTL_EVAL_PASSWORD")
        .stdin(std::process::Stdio::null());
    c
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("running cdpctl");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes a config file into a temp dir and returns its path.
pub fn write_config(dir: &tempfile::TempDir, json: &serde_json::Value) -> PathBuf {
    let p = dir.path().join("cdpctl.json");
    std::fs::write(&p, serde_json::to_string_pretty(json).unwrap()).unwrap();
    p
}

/// Host/port/dbname of a test database as a config `postgresql` block.
pub fn pg_block(url: &str) -> serde_json::Value {
    let u = url::Url::parse(url).unwrap();
    serde_json::json!({
        "host": u.host_str().unwrap(),
        "port": u.port().unwrap_or(5432),
        "user": if u.username().is_empty() { "postgres" } else { u.username() },
        "dbname": u.path().trim_start_matches('/'),
        "sslmode": "disable",
    })
}

/// Terminates every cdpctl session on the current database (as a server
/// restart would, for the sessions of a running child process); returns how
/// many there were.
pub async fn terminate_cdpctl_sessions(c: &tokio_postgres::Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND backend_type = 'client backend' AND application_name LIKE 'cdpctl%') k",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}
