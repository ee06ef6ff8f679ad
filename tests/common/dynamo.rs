//! A real DynamoDB-protocol server for tests and benchmarks: dynalite
//! (in-memory, from node_modules, installed on first use) on a free loopback
//! port, with the contact mapping table created and helpers to bulk-load
//! mappings. The server is killed on drop, or earlier with `kill()`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use cdpctl::config::DynamoConfig;
use cdpctl::dynamo::ContactMapper;
use futures_util::stream::{self, StreamExt, TryStreamExt};

/// The dynalite CLI script in the repository's node_modules, installed with
/// `npm ci` on first use (once, under a file lock shared by all test
/// processes). Panics with the package to install when npm is missing.
pub fn dynalite_script() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    cdpctl::demo::dynalite::install_in(root, &|msg| eprintln!("{msg}"))
        .unwrap_or_else(|e| panic!("{e:#}"))
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
    /// default key/value attribute names), installing dynalite on first use.
    pub async fn start() -> Dynalite {
        Self::start_with(&[]).await
    }

    /// Like `start`, with extra dynalite flags (e.g. `--maxItemSizeKb`).
    pub async fn start_with(extra: &[&str]) -> Dynalite {
        let script = dynalite_script();
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
                region: Some("us-east-1".into()),
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
            region: Some("us-east-1".into()),
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
    pub async fn load<S: AsRef<str>, I>(&self, mappings: I)
    where
        I: IntoIterator<Item = (S, i64)>,
    {
        self.load_padded(mappings, 0).await
    }

    /// Like `load`, each item carrying an extra attribute of `pad` bytes
    /// (large items make BatchGetItem answer with UnprocessedKeys).
    pub async fn load_padded<S: AsRef<str>, I>(&self, mappings: I, pad: usize)
    where
        I: IntoIterator<Item = (S, i64)>,
    {
        let mut it = mappings.into_iter().peekable();
        while it.peek().is_some() {
            // a slice at a time: a million mappings need not sit in memory
            let part: Vec<(S, i64)> = it.by_ref().take(25 * 400).collect();
            self.load_part(part, pad).await;
        }
    }

    async fn load_part<S: AsRef<str>>(&self, mappings: Vec<(S, i64)>, pad: usize) {
        let cfg = DynamoConfig::default();
        let padding = "x".repeat(pad);
        let items: Vec<WriteRequest> = mappings
            .into_iter()
            .map(|(r, id)| {
                let r = r.as_ref();
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

    /// The server's process id (to kill it from a hook).
    pub fn child_id(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
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
