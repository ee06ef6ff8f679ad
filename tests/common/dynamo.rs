//! A real DynamoDB-protocol server for tests and benchmarks: dynalite
//! (in-memory, from node_modules; `npm ci` installs it) on a free loopback
//! port, with the contact mapping table created and helpers to bulk-load
//! mappings. The server is killed on drop, or earlier with `kill()`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use cdpctl::config::DynamoConfig;
use cdpctl::dynamo::ContactMapper;
use futures_util::stream::{self, StreamExt, TryStreamExt};

/// Path of the dynalite CLI script in the repository's node_modules.
pub fn dynalite_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node_modules/dynalite/cli.js")
}

/// True when node and node_modules/dynalite are both present.
pub fn dynalite_available() -> bool {
    dynalite_script().exists()
        && Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
}

pub struct Dynalite {
    child: Option<Child>,
    pub port: u16,
    pub table: String,
    pub mapper: ContactMapper,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Dynalite {
    /// Starts dynalite and creates the mapping table (`contact_mapping`,
    /// default key/value attribute names). Panics with the fix when
    /// node_modules/dynalite is missing.
    pub async fn start() -> Dynalite {
        Self::start_with(&[]).await
    }

    /// Like `start`, with extra dynalite flags (e.g. `--maxItemSizeKb`).
    pub async fn start_with(extra: &[&str]) -> Dynalite {
        let script = dynalite_script();
        if !script.exists() {
            panic!(
                "{} is missing: run `npm ci` in the repository root (needs node and npm) to install dynalite, the DynamoDB-protocol server the tests use",
                script.display()
            );
        }
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("node")
                .arg(&script)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--createTableMs", "0", "--deleteTableMs", "0"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "starting `node {}`: {e}; is node installed?",
                        script.display()
                    )
                });
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut up = false;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    last_err = format!("dynalite exited with {status}: {err}");
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    up = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !up {
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            let table = "contact_mapping".to_string();
            let cfg = DynamoConfig {
                table: table.clone(),
                region: "us-east-1".into(),
                endpoint_url: Some(format!("http://127.0.0.1:{port}")),
                ..DynamoConfig::default()
            };
            let mapper = ContactMapper::new(&cfg).await.expect("mapper for dynalite");
            let d = Dynalite {
                child: Some(child),
                port,
                table,
                mapper,
            };
            d.create_table(&d.table.clone()).await;
            return d;
        }
        panic!("could not start dynalite: {last_err}");
    }

    /// The `dynamodb` config block pointing at this server.
    pub fn config(&self) -> DynamoConfig {
        DynamoConfig {
            table: self.table.clone(),
            region: "us-east-1".into(),
            endpoint_url: Some(self.endpoint_url()),
            ..DynamoConfig::default()
        }
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `dynamodb` block as JSON, for config files given to the CLI.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(self.config()).unwrap()
    }

    /// Creates a table keyed by the default key attribute (string).
    pub async fn create_table(&self, name: &str) {
        let key = DynamoConfig::default().key_attribute;
        self.mapper
            .client()
            .create_table()
            .table_name(name)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(&key)
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("creating the mapping table in dynalite");
    }

    /// Loads reference → contact id mappings (BatchWriteItem, 25 items a
    /// request, several in flight).
    pub async fn load<'a, I>(&self, mappings: I)
    where
        I: IntoIterator<Item = (&'a str, i64)>,
    {
        self.load_padded(mappings, 0).await
    }

    /// Like `load`, each item carrying an extra attribute of `pad` bytes
    /// (large items make BatchGetItem answer with UnprocessedKeys).
    pub async fn load_padded<'a, I>(&self, mappings: I, pad: usize)
    where
        I: IntoIterator<Item = (&'a str, i64)>,
    {
        let cfg = DynamoConfig::default();
        let padding = "x".repeat(pad);
        let items: Vec<WriteRequest> = mappings
            .into_iter()
            .map(|(r, id)| {
                let mut item = HashMap::from([
                    (cfg.key_attribute.clone(), AttributeValue::S(r.to_string())),
                    (
                        cfg.value_attribute.clone(),
                        AttributeValue::N(id.to_string()),
                    ),
                ]);
                if pad > 0 {
                    item.insert("pad".into(), AttributeValue::S(padding.clone()));
                }
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                    .build()
            })
            .collect();
        let client = self.mapper.client().clone();
        let table = self.table.clone();
        stream::iter(items.chunks(25).map(|c| c.to_vec()))
            .map(|chunk| {
                let client = client.clone();
                let table = table.clone();
                async move {
                    let mut pending = chunk;
                    while !pending.is_empty() {
                        let out = client
                            .batch_write_item()
                            .request_items(&table, pending.clone())
                            .send()
                            .await
                            .map_err(|e| {
                                format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(e))
                            })?;
                        pending = out
                            .unprocessed_items()
                            .and_then(|u| u.get(&table))
                            .cloned()
                            .unwrap_or_default();
                    }
                    Ok::<(), String>(())
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .expect("loading mappings into dynalite");
    }

    /// Kills the server now (to test what happens mid-run).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        self.kill();
    }
}
