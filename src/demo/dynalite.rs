//! A throwaway local DynamoDB-protocol server for the demo and the tests:
//! dynalite (in-memory, from npm), installed on first use, with the contact
//! mapping table created and loaded. Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use sha2::Digest;

use crate::config::DynamoConfig;
use crate::dynamo::ContactMapper;

/// The npm project pinning dynalite (the repository's own package files),
/// written into the cache directory when cdpctl runs outside a checkout.
const PACKAGE_JSON: &str = include_str!("../../package.json");
const PACKAGE_LOCK: &str = include_str!("../../package-lock.json");

/// What a machine without node needs, in the words of its package manager.
pub const NODE_INSTALL: &str = "apt-get install nodejs npm";

/// Path of the dynalite CLI script below an npm project directory.
pub fn script_in(dir: &Path) -> PathBuf {
    dir.join("node_modules/dynalite/cli.js")
}

/// A cdpctl checkout: a git work tree holding the npm project that pins
/// dynalite.
fn is_checkout(dir: &Path) -> bool {
    dir.join(".git").exists()
        && dir.join("package-lock.json").exists()
        && std::fs::read_to_string(dir.join("package.json"))
            .map(|s| s.contains("\"cdpctl-test-tools\""))
            .unwrap_or(false)
}

/// Where dynalite is installed: the checkout cdpctl runs from (the current
/// directory, or the source tree it was built from), else
/// `$XDG_CACHE_HOME/cdpctl` (`~/.cache/cdpctl`).
pub fn install_dir() -> Result<PathBuf> {
    let candidates = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    if let Some(dir) = candidates.into_iter().flatten().find(|d| is_checkout(d)) {
        return Ok(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set: no cache directory for dynalite (set CDPCTL_DYNALITE to its cli.js)")?;
    Ok(cache.join("cdpctl"))
}

/// Finds dynalite's CLI script, installing it first when it is missing:
/// `CDPCTL_DYNALITE` when set, else node_modules of `install_dir()`.
pub fn find_or_install(progress: &dyn Fn(String)) -> Result<PathBuf> {
    if let Ok(p) = std::env::var("CDPCTL_DYNALITE") {
        let p = PathBuf::from(p);
        if !p.exists() {
            bail!(
                "CDPCTL_DYNALITE is {}, which does not exist; point it at dynalite's cli.js or unset it",
                p.display()
            );
        }
        return Ok(p);
    }
    install_in(&install_dir()?, progress)
}

/// Makes sure `dir/node_modules/dynalite` is installed: runs `npm ci` there
/// when it is not (once, under a file lock, so that parallel processes wait
/// for one installation instead of racing), writing the pinned package files
/// first when `dir` is not a checkout. Returns the CLI script.
pub fn install_in(dir: &Path, progress: &dyn Fn(String)) -> Result<PathBuf> {
    install_with(dir, "npm", progress)
}

fn install_with(dir: &Path, npm: &str, progress: &dyn Fn(String)) -> Result<PathBuf> {
    let script = script_in(dir);
    if !runs(npm) {
        if script.exists() && runs("node") {
            return Ok(script);
        }
        bail!(
            "dynalite (the local DynamoDB-protocol server) is not installed in {} and `{npm}` was not found: install node and npm (`{NODE_INSTALL}`), then run again",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // A lock outside `dir`: `npm ci` removes node_modules before installing,
    // so no file inside it is stable, and the checkout stays clean.
    let key = hex::encode(&sha2::Sha256::digest(dir.to_string_lossy().as_bytes())[..8]);
    let lock_path = std::env::temp_dir().join(format!("cdpctl-npm-{key}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening the lock file {}", lock_path.display()))?;
    // Always taken, also when the script exists: another process may be in
    // the middle of `npm ci`, with a half-written node_modules.
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if script.exists() {
        return Ok(script);
    }
    if !is_checkout(dir) {
        for (name, text) in [
            ("package.json", PACKAGE_JSON),
            ("package-lock.json", PACKAGE_LOCK),
        ] {
            std::fs::write(dir.join(name), text)
                .with_context(|| format!("writing {}", dir.join(name).display()))?;
        }
    }
    progress(format!(
        "installing dynalite (the local DynamoDB-protocol server) with `npm ci` in {}",
        dir.display()
    ));
    let out = Command::new(npm)
        .args([
            "ci",
            "--include=dev",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running `{npm} ci` in {}", dir.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        bail!(
            "`npm ci` in {} failed ({}): {}; it needs the npm registry (or a proxy in npm's config): run it there by hand to see the whole output",
            dir.display(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    if !script.exists() {
        bail!(
            "`npm ci` in {} succeeded but {} is missing: is its package.json the one of cdpctl?",
            dir.display(),
            script.display()
        );
    }
    Ok(script)
}

/// True when `program --version` runs and succeeds.
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub struct LocalDynamo {
    child: Child,
    pub config: DynamoConfig,
    pub mapper: ContactMapper,
}

impl LocalDynamo {
    /// Starts dynalite (`script`: its cli.js, see `find_or_install`) on a free
    /// loopback port and creates the mapping table.
    pub async fn start(script: &Path) -> Result<LocalDynamo> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = Command::new("node")
            .arg(script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--createTableMs", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting `node {}`", script.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || child.try_wait()?.is_some() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(anyhow!("dynalite did not start on 127.0.0.1:{port}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let config = DynamoConfig {
            region: Some("us-east-1".into()),
            endpoint_url: Some(format!("http://127.0.0.1:{port}")),
            ..DynamoConfig::default()
        };
        let mapper = ContactMapper::new(&config).await?;
        let me = LocalDynamo {
            child,
            config,
            mapper,
        };
        me.mapper
            .client()
            .create_table()
            .table_name(&me.config.table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&me.config.key_attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(&me.config.key_attribute)
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "creating the mapping table in dynalite: {}",
                    crate::dynamo::error_chain(&e)
                )
            })?;
        Ok(me)
    }

    /// Loads (reference, contact id) pairs with BatchWriteItem.
    pub async fn load(&self, pairs: impl IntoIterator<Item = (String, i64)>) -> Result<u64> {
        let mut it = pairs.into_iter().peekable();
        let mut n = 0u64;
        while it.peek().is_some() {
            let part: Vec<WriteRequest> = it
                .by_ref()
                .take(25 * 400)
                .map(|(r, id)| {
                    let item = std::collections::HashMap::from([
                        (self.config.key_attribute.clone(), AttributeValue::S(r)),
                        (
                            self.config.value_attribute.clone(),
                            AttributeValue::N(id.to_string()),
                        ),
                    ]);
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map(|p| WriteRequest::builder().put_request(p).build())
                })
                .collect::<Result<_, _>>()?;
            n += part.len() as u64;
            let client = self.mapper.client();
            let table = &self.config.table;
            stream::iter(part.chunks(25))
                .map(|chunk| async move {
                    let mut pending = chunk.to_vec();
                    while !pending.is_empty() {
                        let out = client
                            .batch_write_item()
                            .request_items(table, pending)
                            .send()
                            .await
                            .map_err(|e| {
                                anyhow!(
                                    "loading mappings into dynalite: {}",
                                    crate::dynamo::error_chain(&e)
                                )
                            })?;
                        pending = out
                            .unprocessed_items()
                            .and_then(|u| u.get(table))
                            .cloned()
                            .unwrap_or_default();
                    }
                    Ok::<(), anyhow::Error>(())
                })
                .buffer_unordered(16)
                .try_collect::<Vec<()>>()
                .await?;
        }
        Ok(n)
    }
}

impl Drop for LocalDynamo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_npm_the_error_names_the_package_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let err = install_with(dir.path(), "npm-not-installed-here", &|_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("`apt-get install nodejs npm`"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }
}
