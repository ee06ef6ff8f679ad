//! migrate-audiences against dynalite on loopback: throughput of the whole
//! migration versus the raw BatchGetItem throughput of the same endpoint
//! (measured in the same run, before and after), and the peak memory of the
//! migration process for each audience size.
//!
//! Sizes: MIGRATE_BENCH_SIZES (comma-separated, default 100000,1000000);
//! BatchGetItem concurrency: MIGRATE_BENCH_CONCURRENCY (default 8).
//! The migration runs as a child `cdpctl migrate-audiences` process so its
//! peak RSS (wait4 ru_maxrss) is its own.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use cdpctl::demo::audiences::{contact_reference, seed_legacy, AudienceSpec};
use common::dynamo::Dynalite;
use common::TestDb;
use futures_util::stream::{self, StreamExt};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Raw BatchGetItem: `refs` in requests of 100 keys, `conc` in flight,
/// nothing else. Returns keys per second.
async fn raw_lookup(d: &Dynalite, refs: &[String], conc: usize) -> f64 {
    let client = d.mapper.client().clone();
    let table = d.table.clone();
    let t = Instant::now();
    let found: usize = stream::iter(refs.chunks(100).map(|c| c.to_vec()))
        .map(|chunk| {
            let client = client.clone();
            let table = table.clone();
            async move {
                let mut pending: Vec<HashMap<String, AttributeValue>> = chunk
                    .into_iter()
                    .map(|r| {
                        HashMap::from([("contact_reference".to_string(), AttributeValue::S(r))])
                    })
                    .collect();
                let mut n = 0;
                while !pending.is_empty() {
                    let ka = KeysAndAttributes::builder()
                        .set_keys(Some(pending.clone()))
                        .projection_expression("#k, #v")
                        .expression_attribute_names("#k", "contact_reference")
                        .expression_attribute_names("#v", "contact_id")
                        .build()
                        .unwrap();
                    // a pooled connection the server closed while idle is
                    // retried, as any client would
                    let mut tries = 0;
                    let out = loop {
                        match client
                            .batch_get_item()
                            .request_items(&table, ka.clone())
                            .send()
                            .await
                        {
                            Ok(out) => break out,
                            Err(e) if tries < 5 => {
                                tries += 1;
                                let _ = e;
                            }
                            Err(e) => panic!("raw BatchGetItem: {e:?}"),
                        }
                    };
                    n += out
                        .responses()
                        .and_then(|r| r.get(&table))
                        .map_or(0, |v| v.len());
                    pending = out
                        .unprocessed_keys()
                        .and_then(|u| u.get(&table))
                        .map(|k| k.keys().to_vec())
                        .unwrap_or_default();
                }
                n
            }
        })
        .buffer_unordered(conc)
        .fold(0, |a, n| async move { a + n })
        .await;
    assert!(found > 0);
    refs.len() as f64 / t.elapsed().as_secs_f64()
}

/// Runs `cdpctl migrate-audiences` for one campaign in a child process.
/// Returns (references per second from its own report, peak RSS in MB).
fn migrate_child(
    t: &TestDb,
    cfg: &std::path::Path,
    campaign: i64,
    conc: usize,
) -> (f64, f64, serde_json::Value) {
    let child = common::cli()
        .env("DATABASE_URL", &t.url)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--format",
            "json",
            "-q",
            "migrate-audiences",
            "--campaign",
            &campaign.to_string(),
            "--concurrency",
            &conc.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting cdpctl");
    let pid = child.id() as libc::pid_t;
    // read the pipes on threads, then reap the child with wait4 for its rusage
    let mut child = child;
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut so, &mut s).unwrap();
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut se, &mut s).unwrap();
        s
    });
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    std::mem::forget(child); // already reaped
    let stdout = out_t.join().unwrap();
    let stderr = err_t.join().unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "migrate-audiences failed: {stderr}"
    );
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    let c = &j["campaigns"][0];
    let refs = c["references"].as_f64().unwrap();
    let secs = c["duration_ms"].as_f64().unwrap() / 1000.0;
    let rss_mb = usage.ru_maxrss as f64 / 1024.0;
    (refs / secs, rss_mb, j)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("MIGRATE_BENCH_SIZES")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("MIGRATE_BENCH_SIZES: comma-separated counts")
        })
        .collect();
    let conc: usize = env_or("MIGRATE_BENCH_CONCURRENCY", 8);
    let max = *sizes.iter().max().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = TestDb::new().await;
        let d = Dynalite::start().await;
        // one contact universe; campaign k holds sizes[k] contacts; 1% unmapped
        let spec = AudienceSpec {
            campaigns: sizes.iter().enumerate().map(|(k, &n)| (k as i64 + 1, n)).collect(),
            contacts: max,
            unmapped_every: 100,
            seed: 42,
        };
        let t0 = Instant::now();
        let mut db = t.db().await;
        let schemas = db.schemas.clone();
        let rows = seed_legacy(&mut db.client, &schemas, &spec).await.unwrap();
        println!("seeded {rows} legacy rows in {:.1}s", t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        d.load(spec.mappings()).await;
        println!("loaded {} mappings into dynalite in {:.1}s", spec.contacts - spec.contacts / 100, t0.elapsed().as_secs_f64());
        let dir = tempfile::tempdir().unwrap();
        let cfg = common::write_config(&dir, &serde_json::json!({"dynamodb": d.config_json()}));

        println!();
        println!("| references | raw BatchGetItem keys/s | migrate-audiences refs/s | ratio | peak RSS (MB) |");
        println!("|---:|---:|---:|---:|---:|");
        let mut rss_seen = Vec::new();
        for (k, &n) in sizes.iter().enumerate() {
            let campaign = k as i64 + 1;
            let refs: Vec<String> = spec.members(campaign, n).map(contact_reference).collect();
            let raw1 = raw_lookup(&d, &refs, conc).await;
            drop(refs);
            let (mig, rss, j) = migrate_child(&t, &cfg, campaign, conc);
            let refs: Vec<String> = spec.members(campaign, n).map(contact_reference).collect();
            let raw2 = raw_lookup(&d, &refs, conc).await;
            let raw = (raw1 + raw2) / 2.0;
            let c = &j["campaigns"][0];
            assert_eq!(c["state"], "migrated");
            assert_eq!(c["references"].as_u64().unwrap() as usize, n);
            println!(
                "| {n} | {raw:.0} (before {raw1:.0}, after {raw2:.0}) | {mig:.0} | {:.2} | {rss:.1} |",
                mig / raw
            );
            rss_seen.push((n, rss));
        }
        if let (Some(small), Some(big)) = (rss_seen.first(), rss_seen.last()) {
            println!();
            println!(
                "peak RSS {} refs / {} refs: {:.2}",
                big.0,
                small.0,
                big.1 / small.1
            );
        }
    });
}
