//! A throwaway local DynamoDB-protocol server for the demo: dynalite
//! (in-memory, installed by `npm ci` into node_modules), with the contact
//! mapping table created and loaded. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::config::DynamoConfig;
use crate::dynamo::ContactMapper;

/// Where dynalite's CLI script is: `CDPCTL_DYNALITE`, else node_modules in
/// the current directory, else in the source tree this binary was built from.
pub fn script() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CDPCTL_DYNALITE") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    [
        PathBuf::from("node_modules/dynalite/cli.js"),
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/node_modules/dynalite/cli.js"
        )),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// Why the local server cannot run, or `None` when it can.
pub fn unavailable() -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !node {
        return Some("node is not installed (apt-get install nodejs npm), then run `npm ci` in the cdpctl repository".into());
    }
    if script().is_none() {
        return Some("dynalite is not installed: run `npm ci` in the cdpctl repository (or set CDPCTL_DYNALITE to its cli.js)".into());
    }
    None
}

pub struct LocalDynamo {
    child: Child,
    pub config: DynamoConfig,
    pub mapper: ContactMapper,
}

impl LocalDynamo {
    /// Starts dynalite on a free loopback port and creates the mapping table.
    pub async fn start() -> Result<LocalDynamo> {
        if let Some(why) = unavailable() {
            bail!("{why}");
        }
        let script = script().expect("checked");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = Command::new("node")
            .arg(&script)
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
            region: "us-east-1".into(),
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
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
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
                                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
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
