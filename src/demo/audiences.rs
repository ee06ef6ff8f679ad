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
