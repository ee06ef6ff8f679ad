//! flush-segment benchmark: N queued changes (default 1,000,000; env
//! CDPCTL_BENCH_FLUSH_CHANGES) flushed into campaign_contact_id_master by
//! cdpctl, against the baseline of applying each request with its own
//! statement (measured on the first CDPCTL_BENCH_FLUSH_BASELINE requests,
//! default 20,000, and extrapolated). Prints throughput and the ratio.
//!
//! Run: cargo bench --bench flush_segment

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use cdpctl::segments::{self, FlushOptions, SegmentsConfig, StaticResolver};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let n = env_usize("CDPCTL_BENCH_FLUSH_CHANGES", 1_000_000) as i64;
    let sample = env_usize("CDPCTL_BENCH_FLUSH_BASELINE", 20_000) as i64;
    let batch = env_usize("CDPCTL_BENCH_FLUSH_BATCH", 50_000) as i64;
    let campaigns = 200i64;
    let contacts = 50_000i64;
    let t = common::TestDb::new().await;
    let c = t.client().await;

    // 70% add / 30% remove; every tenth request carries a program run
    let started = Instant::now();
    c.execute(
        "INSERT INTO audience_data.segment_changes (segment, key, verb, program_kind, run_id)
         SELECT (100 + h1 % $2::bigint)::text, (1 + h2 % $3::bigint)::text,
                CASE WHEN v < 70 THEN 'add' ELSE 'remove' END,
                CASE WHEN v % 10 = 0 THEN CASE WHEN v % 20 = 0 THEN 'rti' ELSE 'ac' END END,
                CASE WHEN v % 10 = 0 THEN 1 + h1 % 5 END
           FROM (SELECT g, abs(hashint8(g)) AS h1, abs(hashint8(-g)) AS h2,
                        abs(hashint8(g * 7919)) % 100 AS v
                   FROM generate_series(1, $1::bigint) g) s
          ORDER BY g",
        &[&n, &campaigns, &contacts],
    )
    .await
    .unwrap();
    c.batch_execute("VACUUM ANALYZE audience_data.segment_changes")
        .await
        .unwrap();
    println!(
        "queued {} changes over {campaigns} campaigns x {contacts} contacts in {:.1}s",
        n,
        started.elapsed().as_secs_f64()
    );

    // baseline: one statement per request, in order, each its own transaction
    let rows = c
        .query(
            "SELECT segment::bigint, key::bigint, verb, program_kind, run_id
               FROM audience_data.segment_changes ORDER BY id LIMIT $1",
            &[&sample],
        )
        .await
        .unwrap();
    let add = c
        .prepare("INSERT INTO audience_data.campaign_contact_id_master (campaign_id, contact_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .await
        .unwrap();
    let add_rti = c
        .prepare("INSERT INTO audience_data.campaign_contact_id_master (campaign_id, contact_id, rti_program_runs) VALUES ($1, $2, ARRAY[$3::bigint])
                  ON CONFLICT (campaign_id, contact_id) DO UPDATE SET rti_program_runs =
                  CASE WHEN $3 = ANY(campaign_contact_id_master.rti_program_runs) THEN campaign_contact_id_master.rti_program_runs
                       ELSE campaign_contact_id_master.rti_program_runs || $3 END")
        .await
        .unwrap();
    let add_ac = c
        .prepare("INSERT INTO audience_data.campaign_contact_id_master (campaign_id, contact_id, ac_program_runs) VALUES ($1, $2, ARRAY[$3::bigint])
                  ON CONFLICT (campaign_id, contact_id) DO UPDATE SET ac_program_runs =
                  CASE WHEN $3 = ANY(campaign_contact_id_master.ac_program_runs) THEN campaign_contact_id_master.ac_program_runs
                       ELSE campaign_contact_id_master.ac_program_runs || $3 END")
        .await
        .unwrap();
    let remove = c
        .prepare("DELETE FROM audience_data.campaign_contact_id_master WHERE campaign_id = $1 AND contact_id = $2")
        .await
        .unwrap();
    let remove_rti = c
        .prepare("UPDATE audience_data.campaign_contact_id_master SET rti_program_runs = array_remove(rti_program_runs, $3) WHERE campaign_id = $1 AND contact_id = $2")
        .await
        .unwrap();
    let remove_ac = c
        .prepare("UPDATE audience_data.campaign_contact_id_master SET ac_program_runs = array_remove(ac_program_runs, $3) WHERE campaign_id = $1 AND contact_id = $2")
        .await
        .unwrap();
    let started = Instant::now();
    for r in &rows {
        let (camp, contact): (i64, i64) = (r.get(0), r.get(1));
        let verb: &str = r.get(2);
        let kind: Option<&str> = r.get(3);
        let run: Option<i64> = r.get(4);
        match (verb, kind) {
            ("add", None) => c.execute(&add, &[&camp, &contact]).await,
            ("add", Some("rti")) => c.execute(&add_rti, &[&camp, &contact, &run]).await,
            ("add", Some(_)) => c.execute(&add_ac, &[&camp, &contact, &run]).await,
            (_, None) => c.execute(&remove, &[&camp, &contact]).await,
            (_, Some("rti")) => c.execute(&remove_rti, &[&camp, &contact, &run]).await,
            (_, Some(_)) => c.execute(&remove_ac, &[&camp, &contact, &run]).await,
        }
        .unwrap();
    }
    let base_s = started.elapsed().as_secs_f64();
    let base_rate = rows.len() as f64 / base_s;
    println!(
        "baseline, one statement per request: {} requests in {:.2}s = {:.0} changes/s (extrapolated to {} changes: {:.0}s)",
        rows.len(),
        base_s,
        base_rate,
        n,
        n as f64 / base_rate
    );
    c.batch_execute("TRUNCATE audience_data.campaign_contact_id_master")
        .await
        .unwrap();

    // cdpctl
    let db = t.db().await;
    let opts = FlushOptions {
        batch_size: batch,
        ..Default::default()
    };
    let started = Instant::now();
    let report = segments::flush(
        &db,
        &SegmentsConfig::default(),
        &opts,
        &StaticResolver::default(),
    )
    .await
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let rate = report.read as f64 / secs;
    let totals = report.totals();
    assert_eq!(report.read, n as u64);
    assert_eq!(report.remaining, 0);
    println!(
        "cdpctl flush-segment (batch {batch}): {} changes in {:.2}s = {:.0} changes/s ({} batches; {} coalesced away, {} added, {} removed)",
        report.read, secs, rate, report.batches, totals.coalesced, totals.added, totals.removed
    );
    println!("cdpctl time per phase (ms): {:?}", report.phase_ms);
    println!(
        "ratio: cdpctl is {:.1}x faster than one statement per request (target >= 50x); throughput target >= 100000 changes/s: {}",
        rate / base_rate,
        if rate >= 100_000.0 { "met" } else { "NOT met" }
    );
}
