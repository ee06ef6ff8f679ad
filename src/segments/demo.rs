//! The demo's segment step: a realistic burst of single add/remove requests
//! (workers enqueue one key at a time, some added and removed again, some
//! with program runs), then one flush.

use anyhow::Result;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{FlushOptions, FlushReport, SegmentsConfig, StaticResolver};
use crate::db::{Db, PgResultExt};

/// Enqueues `n` single requests for three campaigns over `contacts`
/// contacts and returns how many were queued.
pub async fn enqueue_burst(db: &Db, seed: u64, contacts: u64, n: usize) -> Result<usize> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5e9);
    let contacts = contacts.max(10) as i64;
    type Req = (i64, i64, &'static str, Option<(&'static str, i64)>);
    let mut reqs: Vec<Req> = Vec::with_capacity(n + 1);
    while reqs.len() < n {
        let campaign = [9001i64, 9002, 9003][rng.gen_range(0..3)];
        let contact = rng.gen_range(1..=contacts);
        match rng.gen_range(0..10) {
            0..=4 => reqs.push((campaign, contact, "add", None)),
            5 => {
                // a worker adds a contact and another removes it right after
                reqs.push((campaign, contact, "add", None));
                reqs.push((campaign, contact, "remove", None));
            }
            6 => reqs.push((campaign, contact, "remove", None)),
            7 => reqs.push((campaign, contact, "add", Some(("rti", rng.gen_range(1..4))))),
            8 => reqs.push((campaign, contact, "add", Some(("ac", rng.gen_range(1..4))))),
            _ => reqs.push((
                campaign,
                contact,
                "remove",
                Some(("rti", rng.gen_range(1..4))),
            )),
        }
    }
    let seg: Vec<String> = reqs.iter().map(|r| r.0.to_string()).collect();
    let key: Vec<String> = reqs.iter().map(|r| r.1.to_string()).collect();
    let verb: Vec<&str> = reqs.iter().map(|r| r.2).collect();
    let kind: Vec<Option<&str>> = reqs.iter().map(|r| r.3.map(|p| p.0)).collect();
    let run: Vec<Option<i64>> = reqs.iter().map(|r| r.3.map(|p| p.1)).collect();
    let a = &db.schemas.audience;
    db.client
        .execute(
            &format!(
                "INSERT INTO {a}.segment_changes (segment, key, verb, program_kind, run_id)
                 SELECT s, k, v, p, r FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                        WITH ORDINALITY AS u(s, k, v, p, r, n) ORDER BY n"
            ),
            &[&seg, &key, &verb, &kind, &run],
        )
        .await
        .pg_context(|| format!("enqueueing the demo burst into {a}.segment_changes"))?;
    Ok(reqs.len())
}

/// Enqueues a burst and flushes it; returns the flush report.
pub async fn run(db: &Db, seed: u64, contacts: u64) -> Result<FlushReport> {
    enqueue_burst(db, seed, contacts, 2_000).await?;
    super::flush(
        db,
        &SegmentsConfig::default(),
        &FlushOptions::default(),
        &StaticResolver::default(),
    )
    .await
}
