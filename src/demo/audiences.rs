//! Sample legacy audiences (contact-reference campaign tables) and the
//! matching reference → contact-id mapping, deterministic from a seed. Shared
//! by the demo, the tests and the benchmark.
//!
//! Contacts are numbered; contact `i` has reference [`contact_reference`]`(i)`
//! and id [`contact_id`]`(i)`, except that every `unmapped_every`-th contact
//! has no mapping (a contact that never logged in). A campaign of size `n`
//! takes `n` consecutive contacts starting at an offset derived from its id,
//! so campaigns overlap like real audiences do.

use anyhow::Result;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::db::{PgResultExt, Schemas};

#[derive(Debug, Clone)]
pub struct AudienceSpec {
    /// (campaign id, number of contacts)
    pub campaigns: Vec<(i64, usize)>,
    /// Size of the contact universe the campaigns draw from.
    pub contacts: usize,
    /// Every n-th contact has no contact id (0 = every contact is mapped).
    pub unmapped_every: usize,
    pub seed: u64,
}

impl Default for AudienceSpec {
    fn default() -> Self {
        Self {
            campaigns: vec![(101, 40), (102, 250), (103, 900), (104, 12_000)],
            contacts: 15_000,
            unmapped_every: 50,
            seed: 42,
        }
    }
}

/// The reference of contact `i` (what the legacy tables store).
pub fn contact_reference(i: usize) -> String {
    // spread like real opaque references, so key order differs from i
    let h = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17);
    format!("cr-{h:016x}-{i}")
}

/// The contact id of contact `i`.
pub fn contact_id(i: usize) -> i64 {
    10_000_000 + i as i64
}

impl AudienceSpec {
    pub fn is_mapped(&self, i: usize) -> bool {
        self.unmapped_every == 0 || i % self.unmapped_every != self.unmapped_every - 1
    }

    /// The contacts of a campaign.
    pub fn members(&self, campaign: i64, n: usize) -> impl Iterator<Item = usize> + '_ {
        let offset = (campaign.unsigned_abs() as usize).wrapping_mul(7_919) % self.contacts.max(1);
        let n = n.min(self.contacts);
        (0..n).map(move |k| (offset + k) % self.contacts)
    }

    /// Every (reference, contact id) pair DynamoDB should hold.
    pub fn mappings(&self) -> impl Iterator<Item = (String, i64)> + '_ {
        (0..self.contacts)
            .filter(|&i| self.is_mapped(i))
            .map(|i| (contact_reference(i), contact_id(i)))
    }

    /// Total legacy rows.
    pub fn rows(&self) -> usize {
        self.campaigns
            .iter()
            .map(|&(_, n)| n.min(self.contacts))
            .sum()
    }

    /// Program runs of a contact in a campaign (deterministic).
    pub fn program_runs(&self, campaign: i64, i: usize) -> (Vec<i64>, Vec<i64>) {
        let mut rng = SmallRng::seed_from_u64(
            self.seed ^ (campaign as u64).wrapping_mul(0x100_0000_01B3) ^ (i as u64) << 1,
        );
        let rti: Vec<i64> = (0..rng.gen_range(0..3))
            .map(|k| campaign * 1000 + k as i64 + 1)
            .collect();
        let ac: Vec<i64> = (0..rng.gen_range(0..2))
            .map(|k| campaign * 1000 + 500 + k as i64)
            .collect();
        (rti, ac)
    }
}

/// COPYs the legacy audience rows in (one transaction). Returns the rows.
pub async fn seed_legacy(client: &mut Client, s: &Schemas, spec: &AudienceSpec) -> Result<u64> {
    let tx = client.transaction().await?;
    let sink = tx
        .copy_in(&s.substitute(
            "COPY {{audience}}.campaign_contact_reference_master
               (campaign_id, contact_reference, rti_program_runs, ac_program_runs)
             FROM STDIN (FORMAT binary)",
        ))
        .await
        .pg_context(|| "COPY into campaign_contact_reference_master".into())?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[Type::INT8, Type::TEXT, Type::INT8_ARRAY, Type::INT8_ARRAY],
    );
    let mut writer = std::pin::pin!(writer);
    for &(campaign, n) in &spec.campaigns {
        for i in spec.members(campaign, n) {
            let (rti, ac) = spec.program_runs(campaign, i);
            writer
                .as_mut()
                .write(&[&campaign, &contact_reference(i), &rti, &ac])
                .await
                .pg_context(|| "COPY into campaign_contact_reference_master".into())?;
        }
    }
    let n = writer
        .finish()
        .await
        .pg_context(|| "finishing COPY into campaign_contact_reference_master".into())?;
    tx.commit().await?;
    Ok(n)
}

/// Writes the mapping as `reference<TAB>contact id` lines (the demo's
/// mapping file, loadable into any DynamoDB-protocol server).
pub fn write_mapping_file(spec: &AudienceSpec, path: &std::path::Path) -> Result<u64> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut n = 0;
    for (r, id) in spec.mappings() {
        writeln!(f, "{r}\t{id}")?;
        n += 1;
    }
    f.flush()?;
    Ok(n)
}

/// The demo's audience step: seeds the sample legacy audiences and a mapping
/// file; when dynalite is available, loads the mapping into it, migrates
/// every sample campaign and answers a membership query.
pub async fn demo_step(
    db: &mut crate::db::Db,
    out: &crate::output::Output,
) -> Result<serde_json::Value> {
    use serde_json::json;
    let spec = AudienceSpec::default();
    let ids: Vec<i64> = spec.campaigns.iter().map(|c| c.0).collect();
    let present: i64 = db
        .client
        .query_one(
            &db.schemas.substitute(
                "SELECT count(*) FROM {{audience}}.campaign_contact_reference_master WHERE campaign_id = ANY($1)",
            ),
            &[&ids],
        )
        .await
        .pg_context(|| "checking for sample audiences".into())?
        .get(0);
    let seeded = if present == 0 {
        let schemas = db.schemas.clone();
        seed_legacy(&mut db.client, &schemas, &spec).await?
    } else {
        0
    };
    let mapping_file = std::env::temp_dir().join("cdpctl-demo-contact-mapping.tsv");
    let mappings = write_mapping_file(&spec, &mapping_file)?;
    out.info(format!(
        "audiences: {} legacy contact-reference rows in {} campaigns; {} reference → contact id mappings in {}",
        crate::output::num(spec.rows() as i64),
        spec.campaigns.len(),
        crate::output::num(mappings as i64),
        mapping_file.display()
    ));
    let base = json!({
        "legacy_rows_seeded": seeded,
        "mapping_file": mapping_file.display().to_string(),
        "mappings": mappings,
    });
    let script = match super::dynalite::find_or_install(&|msg| out.info(msg)) {
        Ok(script) => script,
        Err(e) => {
            let why = format!("no local DynamoDB: {e:#}");
            out.info(format!("migrate-audiences: skipped, {why}"));
            let mut v = base;
            v["skipped"] = json!(why);
            return Ok(v);
        }
    };
    let local = super::dynalite::LocalDynamo::start(&script).await?;
    local.load(spec.mappings()).await?;
    let opts = crate::audiences::MigrateOptions {
        selection: crate::audiences::Selection {
            campaigns: ids.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    let summary = crate::audiences::migrate(db, &local.mapper, &opts, out).await?;
    let (migrated, unmapped) = summary
        .campaigns
        .iter()
        .fold((0, 0), |(m, u), c| (m + c.migrated, u + c.unmapped));
    out.info(format!(
        "migrate-audiences: {} campaigns, {} references → {} migrated, {} unmapped (kept) in {:.1}s via dynalite at {}",
        summary.campaigns.len(),
        crate::output::num(migrated + unmapped),
        crate::output::num(migrated),
        crate::output::num(unmapped),
        summary.duration_ms as f64 / 1000.0,
        local.config.endpoint_url.as_deref().unwrap_or_default()
    ));
    // a contact in two campaigns, asked for by reference only
    let (cid, n) = spec.campaigns[2];
    let contact = spec
        .members(cid, n)
        .find(|&i| spec.is_mapped(i))
        .expect("a mapped member");
    let answer = crate::audiences::membership(
        db,
        Some(&local.mapper),
        &crate::audiences::MembershipQuery {
            contact_id: None,
            contact_reference: Some(contact_reference(contact)),
            campaigns: ids,
        },
    )
    .await?;
    out.info(format!(
        "membership: reference {} → contact {} is in campaign(s) {}",
        contact_reference(contact),
        answer.contact_id.unwrap_or_default(),
        answer
            .campaigns
            .iter()
            .map(|c| format!(
                "{} (rti runs {:?}, ac runs {:?})",
                c.campaign_id, c.rti_program_runs, c.ac_program_runs
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut v = base;
    v["migrated_campaigns"] = json!(summary.campaigns.len());
    v["migrated"] = json!(migrated);
    v["unmapped"] = json!(unmapped);
    v["membership"] = json!({
        "contact_reference": contact_reference(contact),
        "contact_id": answer.contact_id,
        "campaigns": answer.campaigns.iter().map(|c| c.campaign_id).collect::<Vec<_>>(),
    });
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_distinct_and_deterministic() {
        let spec = AudienceSpec::default();
        let a: Vec<usize> = spec.members(104, 12_000).collect();
        let mut b = a.clone();
        b.sort_unstable();
        b.dedup();
        assert_eq!(b.len(), 12_000);
        assert_eq!(spec.program_runs(104, 7), spec.program_runs(104, 7));
        assert_ne!(contact_reference(1), contact_reference(2));
        assert!(!spec.is_mapped(49) && spec.is_mapped(50));
    }
}
