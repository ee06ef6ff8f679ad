//! A throwaway PostgreSQL cluster from the installed server binaries: for
//! `cdpctl demo` without a database and for the test harness on machines
//! where no server is running. Data directory in a temp dir, loopback only,
//! `fsync=off` (it starts in about half a second).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub struct Cluster {
    pub root: PathBuf,
    pub port: u16,
    bin: PathBuf,
    keep: bool,
    as_postgres: bool,
}

/// The newest `/usr/lib/postgresql/*/bin` (or `pg_config --bindir`).
pub fn find_bin() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in rd.flatten() {
            let bin = e.path().join("bin");
            if bin.join("initdb").exists() {
                let v = e.file_name().to_string_lossy().parse().unwrap_or(0);
                found.push((v, bin));
            }
        }
    }
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if p.join("initdb").exists() {
            return Ok(p);
        }
    }
    bail!("no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and pg_config); install them (apt-get install postgresql) or pass --database-url")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Cluster {
    /// initdb + start in `root` (created if missing). As root, the server runs
    /// as the `postgres` user (initdb refuses root).
    pub fn start(root: &Path, keep: bool) -> Result<Cluster> {
        Self::start_with(root, keep, None)
    }

    /// Like [`Cluster::start`]; with a password, TCP connections must
    /// authenticate with it (scram-sha-256) while the local socket trusts.
    pub fn start_with(root: &Path, keep: bool, password: Option<&str>) -> Result<Cluster> {
        let bin = find_bin()?;
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(root)
                .status()
                .context("chown of the cluster directory")?;
            if !status.success() {
                bail!("cannot hand {} to the postgres user", root.display());
            }
        }
        let data = root.join("data");
        let c = Cluster {
            root: root.to_path_buf(),
            port: free_port()?,
            bin,
            keep,
            as_postgres,
        };
        let data_s = data.to_string_lossy().to_string();
        let mut args = vec![
            "-D",
            &data_s,
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ];
        let pwfile = root.join("pwfile");
        let pwfile_s = pwfile.to_string_lossy().to_string();
        let pwopt = format!("--pwfile={pwfile_s}");
        match password {
            Some(pw) => {
                std::fs::write(&pwfile, pw)?;
                if c.as_postgres {
                    let _ = Command::new("chown")
                        .arg("postgres:postgres")
                        .arg(&pwfile)
                        .status();
                }
                args.extend(["--auth-local=trust", "--auth-host=scram-sha-256", &pwopt]);
            }
            None => args.push("--auth=trust"),
        }
        c.run("initdb", &args)?;
        c.pg_ctl_start()?;
        Ok(c)
    }

    /// Starts an existing (stopped) cluster directory on a new port.
    pub fn restart_existing(root: &Path, keep: bool) -> Result<Cluster> {
        let c = Cluster {
            root: root.to_path_buf(),
            port: free_port()?,
            bin: find_bin()?,
            keep,
            as_postgres: is_root(),
        };
        c.pg_ctl_start()?;
        Ok(c)
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let data = self.root.join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB",
            self.port,
            self.root.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &opts,
                "-l",
                &self.root.join("server.log").to_string_lossy(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir("/");
        let out = cmd
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        if !out.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                std::fs::read_to_string(self.root.join("server.log"))
                    .map(|l| format!("\nserver log:\n{l}"))
                    .unwrap_or_default()
            );
        }
        Ok(())
    }

    /// `postgresql://postgres@127.0.0.1:PORT/dbname`
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/{dbname}?sslmode=disable",
            self.port
        )
    }

    pub fn stop(&self) {
        let data = self.root.join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.keep {
            self.stop();
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
