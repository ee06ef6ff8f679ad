//! Contact reference → contact id for queued requests whose `key_kind` is
//! `contact_reference`. The production resolver is the shared DynamoDB
//! look-up; tests and tools can plug in a fixed map.

use std::collections::HashMap;

use anyhow::Result;
use futures_util::future::BoxFuture;

/// Resolves a batch of references; references missing from the answer have
/// no contact id (they are kept aside, never dropped).
pub trait Resolver: Send + Sync {
    fn resolve<'a>(&'a self, refs: &'a [String]) -> BoxFuture<'a, Result<HashMap<String, i64>>>;
}

/// A fixed mapping (tests, demo).
#[derive(Debug, Default, Clone)]
pub struct StaticResolver(pub HashMap<String, i64>);

impl Resolver for StaticResolver {
    fn resolve<'a>(&'a self, refs: &'a [String]) -> BoxFuture<'a, Result<HashMap<String, i64>>> {
        Box::pin(async move {
            Ok(refs
                .iter()
                .filter_map(|r| self.0.get(r).map(|id| (r.clone(), *id)))
                .collect())
        })
    }
}

/// The shared DynamoDB look-up answers directly.
impl Resolver for crate::dynamo::ContactMapper {
    fn resolve<'a>(&'a self, refs: &'a [String]) -> BoxFuture<'a, Result<HashMap<String, i64>>> {
        Box::pin(self.lookup(refs))
    }
}

/// The DynamoDB mapping table of the config (`dynamodb` block), connected
/// on first use: a queue without contact references never touches DynamoDB.
pub struct DynamoResolver {
    cfg: crate::config::DynamoConfig,
    mapper: tokio::sync::OnceCell<crate::dynamo::ContactMapper>,
}

impl DynamoResolver {
    pub fn new(cfg: &crate::config::Config) -> Self {
        Self {
            cfg: cfg.dynamodb.clone(),
            mapper: tokio::sync::OnceCell::new(),
        }
    }
}

impl Resolver for DynamoResolver {
    fn resolve<'a>(&'a self, refs: &'a [String]) -> BoxFuture<'a, Result<HashMap<String, i64>>> {
        Box::pin(async move {
            let mapper = self
                .mapper
                .get_or_try_init(|| crate::dynamo::ContactMapper::new(&self.cfg))
                .await?;
            mapper.lookup(refs).await
        })
    }
}
