//! Contact-id audiences: the DynamoDB look-up module, `migrate-audiences` and
//! `membership`, against a real PostgreSQL and a real DynamoDB-protocol
//! server (dynalite) on loopback.

mod common;

use common::dynamo::Dynalite;

fn refs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("ref-{i:06}")).collect()
}

#[tokio::test]
async fn lookup_resolves_mapped_references_only() {
    let d = Dynalite::start().await;
    let all = refs(1_050);
    // every third reference has no mapping
    let mapped: Vec<(&str, i64)> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(i, r)| (r.as_str(), 1_000_000 + i as i64))
        .collect();
    d.load(mapped.iter().copied()).await;
    let mapper = d.mapper.clone().with_concurrency(4);
    let mut query = all.clone();
    query.push(all[1].clone()); // duplicates are asked once
    query.push(String::new()); // never a valid key
    let got = mapper.lookup(&query).await.unwrap();
    assert_eq!(got.len(), mapped.len());
    for (r, id) in &mapped {
        assert_eq!(got.get(*r), Some(id), "{r}");
    }
    let s = mapper.stats();
    assert_eq!(s.keys, 1_050);
    assert_eq!(s.found, mapped.len() as u64);
    assert_eq!(s.requests, 11, "1050 keys = 11 requests of at most 100");
}

#[tokio::test]
async fn lookup_retries_unprocessed_keys_until_complete() {
    let d = Dynalite::start().await;
    let all = refs(300);
    let mapped: Vec<(&str, i64)> = all
        .iter()
        .enumerate()
        .map(|(i, r)| (r.as_str(), i as i64 + 1))
        .collect();
    // 100 items of ~30 KB exceed dynalite's 1 MB response limit
    d.load_padded(mapped.iter().copied(), 30_000).await;
    let mut mapper = d.mapper.clone();
    mapper.projection = false;
    let got = mapper.lookup(&all).await.unwrap();
    assert_eq!(got.len(), 300);
    assert_eq!(got["ref-000299"], 300);
    let s = mapper.stats();
    assert!(
        s.unprocessed_retries >= 3,
        "expected UnprocessedKeys retries, got {s:?}"
    );
}

#[tokio::test]
async fn lookup_errors_name_the_missing_table_and_the_dead_endpoint() {
    let mut d = Dynalite::start().await;
    let mut cfg = d.config();
    cfg.table = "no_such_table".into();
    let m = cdpctl::dynamo::ContactMapper::new(&cfg).await.unwrap();
    let err = format!("{:#}", m.lookup(&refs(3)).await.unwrap_err());
    assert!(err.contains("\"no_such_table\" does not exist"), "{err}");
    assert!(err.contains(&d.endpoint_url()), "{err}");
    let err = format!("{:#}", m.check().await.unwrap_err());
    assert!(err.contains("does not exist"), "{err}");

    let mut m = d.mapper.clone();
    m.max_attempts = 2;
    d.kill();
    let err = format!("{:#}", m.lookup(&refs(3)).await.unwrap_err());
    assert!(
        err.contains("cannot reach DynamoDB at http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("dynamodb.endpoint_url"), "{err}");
}
