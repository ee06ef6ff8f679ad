//! Connecting as libpq does: Unix sockets, the password file, service files,
//! sslmode against a server with a private CA, client certificates.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cdpctl::config::Config;
use cdpctl::db::ConnectParams;
use cdpctl::pgcluster::Cluster;
use common::*;

fn params(url: &str) -> ConnectParams {
    ConnectParams::resolve(&Config::default(), Some(url)).unwrap()
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    ConnectParams::resolve(&Config::default(), Some(url))?
        .connect_raw("test")
        .await
}

async fn scalar(c: &tokio_postgres::Client, sql: &str) -> String {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

fn give_to_postgres(path: &Path) {
    if unsafe { libc::geteuid() } == 0 {
        let st = Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_directory_as_host() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("pg"), false).unwrap();
    let sock = cluster.root.display().to_string();
    let url = format!(
        "postgresql:///postgres?host={sock}&port={}&user=postgres",
        cluster.port
    );
    let c = connect(&url).await.unwrap();
    // No server address: the connection came through the socket.
    let via: String = scalar(&c, "SELECT coalesce(inet_server_addr()::text, 'socket')").await;
    assert_eq!(via, "socket");
    // Socket connections never use TLS, whatever sslmode says.
    let c = connect(&format!("{url}&sslmode=require")).await.unwrap();
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!ssl);
    // PGHOST as a directory, end to end through the binary.
    let out = run(cli()
        .env("PGHOST", &sock)
        .env("PGPORT", cluster.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", "postgres")
        .args(["init"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    // A missing socket is named.
    let bad = connect(&format!(
        "postgresql:///postgres?host={sock}/nowhere&port={}&user=postgres",
        cluster.port
    ))
    .await
    .unwrap_err();
    let msg = format!("{bad:#}");
    assert!(msg.contains(".s.PGSQL."), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_file_as_libpq_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start_with(&dir.path().join("pg"), false, Some("s3cr:et")).unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(
        &pgpass,
        format!(
            "# comment\nother:*:*:*:wrong\n127.0.0.1:{}:*:postgres:s3cr\\:et\n",
            cluster.port
        ),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable&passfile={}",
        cluster.port,
        pgpass.display()
    );
    let c = connect(&url).await.unwrap();
    assert_eq!(scalar(&c, "SELECT current_user::text").await, "postgres");

    // Through PGPASSFILE and the binary; a wildcard line.
    let wild = dir.path().join("pgpass2");
    std::fs::write(&wild, "*:*:*:*:s3cr\\:et\n").unwrap();
    std::fs::set_permissions(&wild, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    );
    let out = run(cli()
        .env("PGPASSFILE", &wild)
        .args(["--database-url", &url, "init"]));
    assert_eq!(out.code, 0, "{}", out.stderr);

    // A file others can read is ignored, with libpq's warning.
    std::fs::set_permissions(&wild, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(cli()
        .env("PGPASSFILE", &wild)
        .args(["--database-url", &url, "status"]));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("group or world access"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("asks for a password"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn service_file_supplies_the_options() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("pg"), false).unwrap();
    let services = dir.path().join("pg_service.conf");
    std::fs::write(
        &services,
        format!(
            "[other]\nhost=nowhere.invalid\n\n[cdp]\nhost={}\nport={}\nuser=postgres\ndbname=postgres\n",
            cluster.root.display(),
            cluster.port
        ),
    )
    .unwrap();
    let out = run(cli()
        .env("PGSERVICEFILE", &services)
        .env("PGSERVICE", "cdp")
        .args(["init"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    // An explicit option wins over the service.
    let out = run(cli().env("PGSERVICEFILE", &services).args([
        "--database-url",
        "service=cdp dbname=nosuchdb",
        "status",
    ]));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("\"nosuchdb\" does not exist"),
        "{}",
        out.stderr
    );
    let out = run(cli()
        .env("PGSERVICEFILE", &services)
        .env("PGSERVICE", "missing")
        .args(["status"]));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("service \"missing\" is not defined"),
        "{}",
        out.stderr
    );
}

#[test]
fn default_user_is_the_os_user() {
    let p = params("host=/nonexistent port=5");
    assert_eq!(
        p.pg.get_user(),
        Some(cdpctl::db::conninfo::os_user().unwrap().as_str())
    );
    assert_eq!(p.dbname(), p.pg.get_user().unwrap());
    assert_eq!(p.host_db(), format!("/nonexistent:5/{}", p.dbname()));
}

/// CA, a server certificate for `localhost` only, and a client certificate
/// for the role `certuser`, made with the openssl command.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make(dir: &Path) -> Certs {
        let ossl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (ca, cn) in [("ca", "Test CA"), ("otherca", "Other CA")] {
            let mut a = vec!["req", "-x509", "-days", "3", "-subj"];
            let subj = format!("/CN={cn}");
            a.push(&subj);
            a.extend(key);
            let (k, c) = (format!("{ca}.key"), format!("{ca}.crt"));
            a.extend(["-keyout", &k, "-out", &c]);
            a.extend([
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            ossl(&a);
        }
        std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost\n").unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, cn, ext) in [
            ("server", "localhost", "server.ext"),
            ("client", "certuser", "client.ext"),
        ] {
            let mut a = vec!["req", "-new", "-subj"];
            let subj = format!("/CN={cn}");
            a.push(&subj);
            a.extend(key);
            let (k, r, c) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            a.extend(["-keyout", &k, "-out", &r]);
            ossl(&a);
            ossl(&[
                "x509",
                "-req",
                "-in",
                &r,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "3",
                "-extfile",
                ext,
                "-out",
                &c,
            ]);
        }
        for k in ["server.key", "client.key"] {
            std::fs::set_permissions(dir.join(k), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Certs {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// A cluster with TLS on (server certificate for `localhost`), where the
/// role `certuser` must present a client certificate signed by the CA.
async fn tls_cluster(dir: &Path) -> (Cluster, Certs) {
    let root = dir.join("pg");
    let first = Cluster::start(&root, true).unwrap();
    let c = connect(&format!(
        "host={} port={} user=postgres dbname=postgres",
        root.display(),
        first.port
    ))
    .await
    .unwrap();
    // The cluster stops with -m immediate: checkpoint so the role survives.
    c.batch_execute("CREATE ROLE certuser LOGIN").await.unwrap();
    c.batch_execute("CHECKPOINT").await.unwrap();
    drop(c);
    first.stop();
    drop(first);
    let certs_dir = root.join("certs");
    std::fs::create_dir_all(&certs_dir).unwrap();
    let certs = Certs::make(&certs_dir);
    let data = root.join("data");
    let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    conf.push_str(&format!(
        "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
        certs.path("server.crt"),
        certs.path("server.key"),
        certs.path("ca.crt")
    ));
    std::fs::write(data.join("postgresql.conf"), conf).unwrap();
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all certuser 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 trust\nhost all all ::1/128 reject\n",
    )
    .unwrap();
    give_to_postgres(&root);
    // The client's copy of its key stays the caller's.
    let client_dir = dir.join("client");
    std::fs::create_dir_all(&client_dir).unwrap();
    for f in ["ca.crt", "otherca.crt", "client.crt", "client.key"] {
        std::fs::copy(certs_dir.join(f), client_dir.join(f)).unwrap();
    }
    std::fs::set_permissions(
        client_dir.join("client.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let cluster = Cluster::restart_existing(&root, false).unwrap();
    (cluster, Certs { dir: client_dir })
}

async fn uses_tls(c: &tokio_postgres::Client) -> bool {
    c.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn sslmode_verify_ca_and_verify_full_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, certs) = tls_cluster(dir.path()).await;
    let port = cluster.port;
    let ca = certs.path("ca.crt");
    let at = |host: &str, mode: &str, root: &str| {
        format!("host={host} port={port} user=postgres dbname=postgres sslmode={mode} sslrootcert={root}")
    };

    // verify-ca checks the chain, not the name (the certificate names only localhost).
    let c = connect(&at("127.0.0.1", "verify-ca", &ca)).await.unwrap();
    assert!(uses_tls(&c).await);
    // verify-full checks the name too.
    let e = format!(
        "{:#}",
        connect(&at("127.0.0.1", "verify-full", &ca))
            .await
            .unwrap_err()
    );
    assert!(e.contains("does not name host \"127.0.0.1\""), "{e}");
    let c = connect(&at("localhost", "verify-full", &ca)).await.unwrap();
    assert!(uses_tls(&c).await);
    // Only sslrootcert is trusted: another CA fails, for both modes.
    for mode in ["verify-ca", "verify-full"] {
        let e = format!(
            "{:#}",
            connect(&at("localhost", mode, &certs.path("otherca.crt")))
                .await
                .unwrap_err()
        );
        assert!(e.contains("not signed by a CA in sslrootcert"), "{e}");
        assert!(
            !e.contains("disable") && !e.contains("prefer"),
            "advises a downgrade: {e}"
        );
    }
    // No root certificate: the error says where to put it.
    let e = format!(
        "{:#}",
        connect(&at("localhost", "verify-full", "/nonexistent/root.crt"))
            .await
            .unwrap_err()
    );
    assert!(e.contains("/nonexistent/root.crt"), "{e}");
    assert!(
        !e.contains("sslmode=disable") && !e.contains("prefer"),
        "{e}"
    );
    // require encrypts without a root certificate; with one it checks the chain.
    let c = connect(&at("127.0.0.1", "require", "/nonexistent/root.crt"))
        .await
        .unwrap();
    assert!(uses_tls(&c).await);
    assert!(
        connect(&at("127.0.0.1", "require", &certs.path("otherca.crt")))
            .await
            .is_err()
    );
    // prefer uses TLS when offered.
    let c = connect(&at("127.0.0.1", "prefer", "/nonexistent/root.crt"))
        .await
        .unwrap();
    assert!(uses_tls(&c).await);
    // disable never does; this server refuses unencrypted TCP.
    let e = format!(
        "{:#}",
        connect(&at("127.0.0.1", "disable", &ca)).await.unwrap_err()
    );
    assert!(e.contains("pg_hba.conf"), "{e}");
    // allow starts unencrypted and retries with TLS when refused.
    let c = connect(&at("127.0.0.1", "allow", "/nonexistent/root.crt"))
        .await
        .unwrap();
    assert!(uses_tls(&c).await);
    // The URL form says the same, with sslrootcert=system only with verify-full.
    let e = ConnectParams::resolve(
        &Config::default(),
        Some(&format!(
            "postgresql://localhost:{port}/postgres?sslmode=verify-ca&sslrootcert=system"
        )),
    )
    .err()
    .unwrap();
    assert!(
        format!("{e:#}").contains("use sslmode=verify-full"),
        "{e:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificate_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, certs) = tls_cluster(dir.path()).await;
    let base = format!(
        "host=localhost port={} user=certuser dbname=postgres sslmode=verify-full sslrootcert={}",
        cluster.port,
        certs.path("ca.crt")
    );
    let with_cert = format!(
        "{base} sslcert={} sslkey={}",
        certs.path("client.crt"),
        certs.path("client.key")
    );
    let c = connect(&with_cert).await.unwrap();
    assert_eq!(scalar(&c, "SELECT current_user::text").await, "certuser");
    assert!(uses_tls(&c).await);
    // Through the config file's postgresql block and the binary.
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &cfg_dir,
        &serde_json::json!({"postgresql": {
            "host": "localhost", "port": cluster.port, "user": "certuser", "dbname": "postgres",
            "sslmode": "verify-full", "sslrootcert": certs.path("ca.crt"),
            "sslcert": certs.path("client.crt"), "sslkey": certs.path("client.key"),
        }}),
    );
    let out = run(cli().arg("--config").arg(&cfg).arg("status"));
    assert!(!out.stderr.contains("cannot connect"), "{}", out.stderr);
    // Without the certificate the server refuses.
    let e = format!("{:#}", connect(&base).await.unwrap_err());
    assert!(e.contains("cannot connect to certuser@localhost"), "{e}");
    assert!(e.contains("certificate"), "{e}");
    // A named certificate that is not there is an error naming it.
    let e = format!(
        "{:#}",
        connect(&format!("{base} sslcert=/nonexistent.crt"))
            .await
            .unwrap_err()
    );
    assert!(e.contains("sslcert /nonexistent.crt"), "{e}");
    // A key others can read is refused before connecting, as libpq does.
    std::fs::set_permissions(
        dir.path().join("client/client.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let e = format!("{:#}", connect(&with_cert).await.unwrap_err());
    assert!(e.contains("group or world access"), "{e}");
}
