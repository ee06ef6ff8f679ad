//! The one DynamoDB look-up module: contact reference → contact id through the
//! mapping table named in the config (`dynamodb` block). Used by
//! `migrate-audiences`, `membership` and `flush-segment`.
//!
//! DynamoDB only answers batch look-ups by primary key, so everything goes
//! through BatchGetItem: 100 keys a request, `concurrency` requests in flight,
//! UnprocessedKeys and throttling retried with exponential backoff and full
//! jitter until complete (or until `max_attempts` retries without progress).
//! Every attempt is bounded by `dynamodb.attempt_timeout_ms` and every request,
//! with its retries, by `dynamodb.request_deadline_ms` (the clock restarts
//! when a retry makes progress), so a hung endpoint fails in about the
//! deadline instead of attempts × timeout.
//!
//! HTTP: one hyper client with rustls + ring, built here explicitly (the AWS
//! crates are compiled without their default client, so no second TLS stack).
//! Region: `--region`/`dynamodb.region` when set, else the standard chain
//! (`AWS_REGION`, the profile's `region`, instance metadata).
//! Credentials: the standard AWS chain (environment, profile including
//! `credential_process` and SSO, web identity, ECS, instance metadata),
//! resolved once up front so a missing or broken credential fails at once
//! with one sentence. Only when `endpoint_url` is set (a local
//! DynamoDB-protocol server such as dynalite or DynamoDB Local) and the chain
//! finds nothing, static dummy credentials are used: local servers accept any
//! signature, and real AWS endpoints never see them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{Credentials, ProvideCredentials, Region};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use rand::Rng;

use crate::config::DynamoConfig;

/// DynamoDB's limit of keys in one BatchGetItem request.
pub const BATCH_KEYS: usize = 100;
/// DynamoDB's limit on a partition key value (bytes); longer references cannot
/// exist in the table and are reported as unmapped without asking.
pub const MAX_KEY_BYTES: usize = 2048;
/// Requests in flight by default.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Counters of what the look-ups cost, shared by clones of a mapper.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    keys: AtomicU64,
    found: AtomicU64,
    unprocessed_retries: AtomicU64,
    throttle_retries: AtomicU64,
    error_retries: AtomicU64,
}

/// A snapshot of [`ContactMapper::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LookupStats {
    /// BatchGetItem requests sent (including retries).
    pub requests: u64,
    /// Distinct keys asked for.
    pub keys: u64,
    /// Keys that had a mapping.
    pub found: u64,
    /// Requests re-sent for UnprocessedKeys.
    pub unprocessed_retries: u64,
    /// Requests re-sent after a throttling error.
    pub throttle_retries: u64,
    /// Requests re-sent after a transient error (connection, timeout, 5xx).
    pub error_retries: u64,
}

/// Resolves contact references to contact ids. Cheap to clone (clones share
/// the HTTP connection pool and the counters).
#[derive(Clone, Debug)]
pub struct ContactMapper {
    client: Client,
    table: String,
    key_attribute: String,
    value_attribute: String,
    /// Where requests go, for error messages.
    endpoint: String,
    /// BatchGetItem requests in flight (across every look-up running on this
    /// mapper and its clones; change it with `set_concurrency`).
    concurrency: usize,
    permits: Arc<tokio::sync::Semaphore>,
    /// Retries without progress (throttling, transient errors, UnprocessedKeys
    /// that stay unprocessed) before a look-up fails.
    pub max_attempts: u32,
    /// First backoff; doubles per retry, with full jitter.
    pub base_backoff: Duration,
    /// Longest single backoff.
    pub max_backoff: Duration,
    /// Longest wait for one attempt (`dynamodb.attempt_timeout_ms`).
    pub attempt_timeout: Duration,
    /// Longest time one request may go without progress, retries and
    /// backoff included (`dynamodb.request_deadline_ms`).
    pub request_deadline: Duration,
    /// Ask only for the key and value attributes (ProjectionExpression).
    pub projection: bool,
    counters: Arc<Counters>,
}

/// Builds the one HTTP client the AWS SDK uses: hyper + rustls with ring.
fn http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        // below the 5 s keep-alive of common servers (node, nginx): a pooled
        // connection is dropped before the server closes it under a request
        .pool_idle_timeout(Duration::from_secs(4))
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

impl ContactMapper {
    /// A mapper for the configured table. Does no network I/O except, with
    /// an `endpoint_url`, probing the credential chain; use [`check`] to
    /// verify the table up front.
    ///
    /// [`check`]: ContactMapper::check
    pub async fn new(cfg: &DynamoConfig) -> Result<ContactMapper> {
        if cfg.table.is_empty() {
            bail!("config: key \"dynamodb.table\": the mapping table name is empty");
        }
        if cfg.key_attribute.is_empty() || cfg.value_attribute.is_empty() {
            bail!("config: keys \"dynamodb.key_attribute\"/\"dynamodb.value_attribute\" must not be empty");
        }
        if cfg.attempt_timeout_ms == 0 || cfg.request_deadline_ms == 0 {
            bail!("config: keys \"dynamodb.attempt_timeout_ms\"/\"dynamodb.request_deadline_ms\" must be at least 1 (milliseconds), got {}/{}", cfg.attempt_timeout_ms, cfg.request_deadline_ms);
        }
        let attempt_timeout = Duration::from_millis(cfg.attempt_timeout_ms);
        let request_deadline = Duration::from_millis(cfg.request_deadline_ms);
        let timeouts = sdk_timeouts(attempt_timeout, request_deadline);
        let region = fixed_region(cfg).await;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client())
            // retries are ours: they know about UnprocessedKeys and progress
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(timeouts);
        if let Some(url) = &cfg.endpoint_url {
            url::Url::parse(url).map_err(|e| {
                anyhow!("config: key \"dynamodb.endpoint_url\": {url:?} is not a URL ({e}); use e.g. \"http://127.0.0.1:8000\"")
            })?;
            loader = loader.endpoint_url(url);
        }
        if let Some(r) = region {
            loader = loader.region(r);
        }
        let sdk = loader.load().await;
        let Some(region) = sdk.region().cloned() else {
            bail!(
                "no AWS region for DynamoDB: set AWS_REGION, a region in your AWS profile (~/.aws/config), \"dynamodb.region\" in the config or --region"
            );
        };
        let mut builder = aws_sdk_dynamodb::config::Builder::from(&sdk);
        if cfg.endpoint_url.is_none() {
            check_credentials(&sdk).await?;
        } else if !chain_has_credentials(&sdk).await {
            // Local DynamoDB-protocol servers accept any signature; documented
            // in the module docs and the README.
            builder = builder.credentials_provider(Credentials::new(
                "cdpctl-local",
                "cdpctl-local",
                None,
                None,
                "cdpctl-static-for-endpoint-url",
            ));
        }
        let endpoint = match &cfg.endpoint_url {
            Some(u) => u.clone(),
            None => format!("AWS region {region}"),
        };
        Ok(ContactMapper {
            client: Client::from_conf(builder.build()),
            table: cfg.table.clone(),
            key_attribute: cfg.key_attribute.clone(),
            value_attribute: cfg.value_attribute.clone(),
            endpoint,
            concurrency: DEFAULT_CONCURRENCY,
            permits: Arc::new(tokio::sync::Semaphore::new(DEFAULT_CONCURRENCY)),
            max_attempts: 8,
            base_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_secs(2),
            attempt_timeout,
            request_deadline,
            projection: true,
            counters: Arc::default(),
        })
    }

    /// Sets the number of BatchGetItem requests in flight (at least 1).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.set_concurrency(n);
        self
    }

    /// Sets the number of BatchGetItem requests in flight (at least 1),
    /// shared by the clones made afterwards.
    pub fn set_concurrency(&mut self, n: usize) {
        self.concurrency = n.max(1);
        self.permits = Arc::new(tokio::sync::Semaphore::new(self.concurrency));
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The endpoint URL, or the AWS region when none is configured.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The raw SDK client, for tools (benchmarks, test harnesses).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn stats(&self) -> LookupStats {
        let c = &self.counters;
        LookupStats {
            requests: c.requests.load(Ordering::Relaxed),
            keys: c.keys.load(Ordering::Relaxed),
            found: c.found.load(Ordering::Relaxed),
            unprocessed_retries: c.unprocessed_retries.load(Ordering::Relaxed),
            throttle_retries: c.throttle_retries.load(Ordering::Relaxed),
            error_retries: c.error_retries.load(Ordering::Relaxed),
        }
    }

    /// Verifies that the endpoint answers and the table exists with the
    /// configured key attribute. A role that may not DescribeTable passes
    /// (the first look-up will tell).
    pub async fn check(&self) -> Result<()> {
        let res = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match res {
            Ok(out) => {
                let keys: Vec<&str> = out
                    .table()
                    .map(|t| t.key_schema().iter().map(|k| k.attribute_name()).collect())
                    .unwrap_or_default();
                if !keys.is_empty() && !keys.contains(&self.key_attribute.as_str()) {
                    bail!(
                        "DynamoDB table {:?} at {} has key attribute(s) {} but the config says \"dynamodb.key_attribute\": {:?}; fix the config",
                        self.table,
                        self.endpoint,
                        keys.join(", "),
                        self.key_attribute
                    );
                }
                Ok(())
            }
            Err(e) => {
                if let Some(se) = e.as_service_error() {
                    if se.is_resource_not_found_exception() {
                        return Err(self.table_missing());
                    }
                }
                let code = aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&e);
                if matches!(code, Some("AccessDeniedException")) {
                    return Ok(());
                }
                Err(self.describe_error("DescribeTable", &e))
            }
        }
    }

    fn table_missing(&self) -> anyhow::Error {
        anyhow!(
            "DynamoDB table {:?} does not exist at {}; create it (key attribute {:?}) or fix \"dynamodb.table\"/\"dynamodb.endpoint_url\"/\"dynamodb.region\" in the config",
            self.table,
            self.endpoint,
            self.key_attribute
        )
    }

    fn describe_error<E, R>(&self, op: &str, e: &SdkError<E, R>) -> anyhow::Error
    where
        E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
        R: std::fmt::Debug + 'static,
    {
        match e {
            SdkError::ServiceError(se) => {
                let err = se.err();
                anyhow!(
                    "DynamoDB {op} on table {:?} at {} failed: {}: {}",
                    self.table,
                    self.endpoint,
                    err.code().unwrap_or("service error"),
                    err.message().unwrap_or("(no message)")
                )
            }
            SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => anyhow!(
                "cannot reach DynamoDB at {} ({op} on table {:?}): {}; check that the server runs and \"dynamodb.endpoint_url\"/\"dynamodb.region\" in the config",
                self.endpoint,
                self.table,
                error_chain(e)
            ),
            SdkError::TimeoutError(_) => anyhow!(
                "DynamoDB at {} did not answer within {} ms ({op} on table {:?}); check the endpoint and the network, or raise \"dynamodb.attempt_timeout_ms\" (one attempt) / \"dynamodb.request_deadline_ms\" (a request with its retries) in the config",
                self.endpoint,
                self.attempt_timeout.min(self.request_deadline).as_millis(),
                self.table
            ),
            SdkError::ConstructionFailure(_) => anyhow!(
                "cannot build a DynamoDB request ({op} on table {:?} at {}): {}; configure AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role)",
                self.table,
                self.endpoint,
                error_chain(e)
            ),
            _ => anyhow!(
                "DynamoDB {op} on table {:?} at {} failed: {}",
                self.table,
                self.endpoint,
                error_chain(e)
            ),
        }
    }

    /// Looks up every reference; the result holds the ones that have a
    /// contact id. Duplicates are asked once; empty or over-long references
    /// (which DynamoDB cannot store as keys) are never found.
    pub async fn lookup(&self, refs: &[String]) -> Result<HashMap<String, i64>> {
        let mut seen = HashSet::with_capacity(refs.len());
        let unique: Vec<&str> = refs
            .iter()
            .map(String::as_str)
            .filter(|r| !r.is_empty() && r.len() <= MAX_KEY_BYTES && seen.insert(*r))
            .collect();
        drop(seen);
        self.counters
            .keys
            .fetch_add(unique.len() as u64, Ordering::Relaxed);
        let mut out = HashMap::with_capacity(unique.len());
        // chunk by index: closures over borrowed slices trip the compiler's
        // Send inference when callers spawn the look-up
        let unique = &unique;
        let mut results = stream::iter((0..unique.len()).step_by(BATCH_KEYS))
            .map(|start| self.get_batch(&unique[start..(start + BATCH_KEYS).min(unique.len())]))
            .buffer_unordered(self.concurrency.max(1));
        while let Some(pairs) = results.try_next().await? {
            out.extend(pairs);
        }
        self.counters
            .found
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out)
    }

    /// One batch of at most 100 distinct keys, retried until every key was
    /// processed, or until `request_deadline` passes without progress.
    async fn get_batch(&self, chunk: &[&str]) -> Result<Vec<(String, i64)>> {
        let mut pending: Vec<HashMap<String, AttributeValue>> = chunk
            .iter()
            .map(|r| {
                HashMap::from([(
                    self.key_attribute.clone(),
                    AttributeValue::S((*r).to_string()),
                )])
            })
            .collect();
        let mut found = Vec::with_capacity(chunk.len());
        let mut attempt: u32 = 0;
        // time spent sending and backing off since the last progress (waits
        // for a permit of the shared concurrency limit do not count)
        let mut stalled = Duration::ZERO;
        let mut attempts_stalled: u32 = 0;
        let mut last_problem = String::new();
        while !pending.is_empty() {
            let remaining = self.request_deadline.saturating_sub(stalled);
            if remaining.is_zero() {
                return Err(self.deadline_passed("BatchGetItem", attempts_stalled, &last_problem));
            }
            let mut ka = KeysAndAttributes::builder().set_keys(Some(pending.clone()));
            if self.projection {
                ka = ka
                    .projection_expression("#k, #v")
                    .expression_attribute_names("#k", &self.key_attribute)
                    .expression_attribute_names("#v", &self.value_attribute);
            }
            let ka = ka
                .build()
                .map_err(|e| anyhow!("building a BatchGetItem request: {e}"))?;
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let permit = self.permits.acquire().await?;
            let sent = Instant::now();
            let res = self
                .client
                .batch_get_item()
                .request_items(&self.table, ka)
                .customize()
                .config_override(
                    aws_sdk_dynamodb::config::Builder::default()
                        .timeout_config(sdk_timeouts(self.attempt_timeout, remaining)),
                )
                .send()
                .await;
            stalled += sent.elapsed();
            attempts_stalled += 1;
            drop(permit);
            match res {
                Ok(out) => {
                    let before = found.len();
                    if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                        for item in items {
                            found.push(self.parse_item(item)?);
                        }
                    }
                    let unprocessed: Vec<HashMap<String, AttributeValue>> = out
                        .unprocessed_keys()
                        .and_then(|u| u.get(&self.table))
                        .map(|k| k.keys().to_vec())
                        .unwrap_or_default();
                    let processed = pending.len() - unprocessed.len();
                    pending = unprocessed;
                    if pending.is_empty() {
                        break;
                    }
                    self.counters
                        .unprocessed_retries
                        .fetch_add(1, Ordering::Relaxed);
                    if found.len() > before || processed > 0 {
                        // progress: back off gently again, the clock restarts
                        attempt = 0;
                        stalled = Duration::ZERO;
                        attempts_stalled = 0;
                    } else {
                        attempt += 1;
                        if attempt > self.max_attempts {
                            bail!(
                                "DynamoDB kept {} keys of table {:?} at {} unprocessed after {} retries; the table is throttled: lower --concurrency or raise its read capacity",
                                pending.len(),
                                self.table,
                                self.endpoint,
                                self.max_attempts
                            );
                        }
                    }
                    last_problem = format!("{} keys left unprocessed", pending.len());
                    stalled += self.backoff(attempt, stalled).await;
                }
                Err(e) => {
                    let kind = classify(&e);
                    match kind {
                        Failure::TableMissing => return Err(self.table_missing()),
                        Failure::Fatal => return Err(self.describe_error("BatchGetItem", &e)),
                        Failure::Throttled | Failure::Transient => {
                            attempt += 1;
                            if attempt > self.max_attempts {
                                let err = self.describe_error("BatchGetItem", &e);
                                return Err(err.context(format!(
                                    "gave up after {} retries",
                                    self.max_attempts
                                )));
                            }
                            let counter = if kind == Failure::Throttled {
                                &self.counters.throttle_retries
                            } else {
                                &self.counters.error_retries
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                            last_problem = problem(&e);
                            stalled += self.backoff(attempt, stalled).await;
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    /// The error of a request that went `request_deadline` without progress.
    fn deadline_passed(&self, op: &str, attempts: u32, last: &str) -> anyhow::Error {
        anyhow!(
            "DynamoDB at {} did not complete {op} on table {:?} within the request deadline of {} ms ({attempts} attempt(s) of at most {} ms each; last: {last}); check that the endpoint answers, or raise \"dynamodb.request_deadline_ms\"/\"dynamodb.attempt_timeout_ms\" in the config",
            self.endpoint,
            self.table,
            self.request_deadline.as_millis(),
            self.attempt_timeout.as_millis(),
        )
    }

    fn parse_item(&self, item: &HashMap<String, AttributeValue>) -> Result<(String, i64)> {
        let key = match item.get(&self.key_attribute) {
            Some(AttributeValue::S(s)) => s.clone(),
            other => bail!(
                "DynamoDB table {:?}: an item has {:?} = {other:?}, expected a string",
                self.table,
                self.key_attribute
            ),
        };
        let id = match item.get(&self.value_attribute) {
            Some(AttributeValue::N(n)) | Some(AttributeValue::S(n)) => n.trim().parse::<i64>().ok(),
            _ => None,
        };
        match id {
            Some(id) => Ok((key, id)),
            None => bail!(
                "DynamoDB table {:?}: item {key:?} has {:?} = {:?}, expected an integer contact id; fix the item or \"dynamodb.value_attribute\" in the config",
                self.table,
                self.value_attribute,
                item.get(&self.value_attribute)
            ),
        }
    }

    /// Sleeps a random time in `[0, min(max, base * 2^attempt)]` (full
    /// jitter), never past the request deadline; returns the time slept.
    async fn backoff(&self, attempt: u32, stalled: Duration) -> Duration {
        let ceiling = backoff_ceiling(self.base_backoff, self.max_backoff, attempt);
        let ms = rand::thread_rng().gen_range(0..=ceiling.as_millis() as u64);
        let wait =
            Duration::from_millis(ms.max(1)).min(self.request_deadline.saturating_sub(stalled));
        tokio::time::sleep(wait).await;
        wait
    }
}

/// The SDK's timeouts: connecting and one attempt within `attempt`, the
/// whole operation within `deadline` (the SDK's own retries are off).
fn sdk_timeouts(attempt: Duration, deadline: Duration) -> TimeoutConfig {
    let attempt = attempt.min(deadline);
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3).min(attempt))
        .operation_attempt_timeout(attempt)
        .operation_timeout(deadline)
        .build()
}

/// The upper bound of the jittered backoff after `attempt` retries.
pub fn backoff_ceiling(base: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    TableMissing,
    Throttled,
    Transient,
    Fatal,
}

fn classify<R>(e: &SdkError<BatchGetItemError, R>) -> Failure {
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            if err.is_resource_not_found_exception() {
                Failure::TableMissing
            } else if err.is_provisioned_throughput_exceeded_exception()
                || err.is_request_limit_exceeded()
                || err.is_throttling_exception()
            {
                Failure::Throttled
            } else if err.is_internal_server_error() {
                Failure::Transient
            } else {
                let code = aws_sdk_dynamodb::error::ProvideErrorMetadata::code(err);
                match code {
                    Some(
                        "ThrottlingException"
                        | "Throttling"
                        | "TooManyRequestsException"
                        | "LimitExceededException",
                    ) => Failure::Throttled,
                    Some("ServiceUnavailable" | "InternalFailure" | "InternalServerError") => {
                        Failure::Transient
                    }
                    _ => Failure::Fatal,
                }
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Failure::Transient,
        SdkError::ResponseError(_) => Failure::Transient,
        _ => Failure::Fatal,
    }
}

/// What went wrong with one attempt, in a few words (for the deadline error).
fn problem<R>(e: &SdkError<BatchGetItemError, R>) -> String {
    match e {
        SdkError::TimeoutError(_) => "no answer in time".into(),
        SdkError::DispatchFailure(d) if d.is_timeout() => "connecting timed out".into(),
        SdkError::DispatchFailure(d) if d.is_io() => "connection failed".into(),
        SdkError::ServiceError(se) => aws_sdk_dynamodb::error::ProvideErrorMetadata::code(se.err())
            .unwrap_or("service error")
            .to_string(),
        SdkError::ResponseError(_) => "an unreadable response".into(),
        _ => "the request failed".into(),
    }
}

/// An error and its sources, each once, as text (never Debug output).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// `--region`/`dynamodb.region`; with an endpoint URL (a local server)
/// `AWS_REGION`/`AWS_DEFAULT_REGION`, the profile's region, else
/// `us-east-1`. `None`: the SDK's standard chain decides (environment,
/// profile, instance metadata).
async fn fixed_region(cfg: &DynamoConfig) -> Option<Region> {
    if let Some(r) = cfg.region.as_ref().filter(|r| !r.is_empty()) {
        return Some(Region::new(r.clone()));
    }
    cfg.endpoint_url.as_ref()?;
    use aws_config::environment::region::EnvironmentVariableRegionProvider;
    use aws_config::meta::region::ProvideRegion;
    use aws_config::profile::ProfileFileRegionProvider;
    let found = match EnvironmentVariableRegionProvider::new().region().await {
        Some(r) => Some(r),
        None => ProfileFileRegionProvider::new().region().await,
    };
    Some(found.unwrap_or_else(|| Region::new("us-east-1")))
}

/// Resolves the credentials once: a missing or broken credential source is
/// one sentence now rather than a failing look-up later.
async fn check_credentials(sdk: &aws_config::SdkConfig) -> Result<()> {
    let Some(provider) = sdk.credentials_provider() else {
        bail!("no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, choose a profile with AWS_PROFILE (keys, credential_process or SSO after `aws sso login`), or run with an instance or task role");
    };
    match tokio::time::timeout(Duration::from_secs(30), provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => bail!(
            "cannot get AWS credentials: {}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, choose a profile with AWS_PROFILE (keys, credential_process or SSO after `aws sso login`), or run with an instance or task role",
            error_chain(&e)
        ),
        Err(_) => bail!("getting AWS credentials took over 30 s (the credential source does not answer); check AWS_PROFILE and its credential_process/SSO settings"),
    }
}

/// True when the standard chain yields credentials (bounded in time: the
/// instance-metadata probe must not stall a local run).
async fn chain_has_credentials(sdk: &aws_config::SdkConfig) -> bool {
    let Some(provider) = sdk.credentials_provider() else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), provider.provide_credentials()).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Duration::from_millis(25);
        let m = Duration::from_secs(2);
        assert_eq!(backoff_ceiling(b, m, 0), Duration::from_millis(25));
        assert_eq!(backoff_ceiling(b, m, 1), Duration::from_millis(50));
        assert_eq!(backoff_ceiling(b, m, 3), Duration::from_millis(200));
        assert_eq!(backoff_ceiling(b, m, 7), Duration::from_secs(2));
        assert_eq!(backoff_ceiling(b, m, 400), Duration::from_secs(2));
    }
}
