//! Pure translation of a batch of legacy audience rows through the mapping:
//! rows whose references map to the same contact id become one row with the
//! union of their program runs; references without a contact id are kept
//! aside. No database here.

use std::collections::{BTreeMap, HashMap};

/// A row of `campaign_contact_reference_master` (within one campaign).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefRow {
    pub contact_reference: String,
    pub rti_program_runs: Vec<i64>,
    pub ac_program_runs: Vec<i64>,
}

/// A row for `campaign_contact_id_master` (within one campaign).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRow {
    pub contact_id: i64,
    pub rti_program_runs: Vec<i64>,
    pub ac_program_runs: Vec<i64>,
}

/// The union of program runs, sorted and without duplicates — the one
/// normal form both the migration and the membership answer use.
pub fn union(a: &[i64], b: &[i64]) -> Vec<i64> {
    let mut v: Vec<i64> = a.iter().chain(b).copied().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Splits a batch into contact-id rows (sorted by contact id, one per id)
/// and the rows whose reference has no contact id (input order).
pub fn translate(rows: Vec<RefRow>, mapping: &HashMap<String, i64>) -> (Vec<IdRow>, Vec<RefRow>) {
    let mut by_id: BTreeMap<i64, (Vec<i64>, Vec<i64>)> = BTreeMap::new();
    let mut unmapped = Vec::new();
    for row in rows {
        match mapping.get(&row.contact_reference) {
            Some(&id) => {
                let e = by_id.entry(id).or_default();
                e.0.extend_from_slice(&row.rti_program_runs);
                e.1.extend_from_slice(&row.ac_program_runs);
            }
            None => unmapped.push(row),
        }
    }
    let mapped = by_id
        .into_iter()
        .map(|(contact_id, (rti, ac))| IdRow {
            contact_id,
            rti_program_runs: union(&rti, &[]),
            ac_program_runs: union(&ac, &[]),
        })
        .collect();
    (mapped, unmapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(reference: &str, rti: &[i64], ac: &[i64]) -> RefRow {
        RefRow {
            contact_reference: reference.into(),
            rti_program_runs: rti.to_vec(),
            ac_program_runs: ac.to_vec(),
        }
    }

    #[test]
    fn union_sorts_and_dedups() {
        assert_eq!(union(&[3, 1, 3], &[2, 1]), vec![1, 2, 3]);
        assert_eq!(union(&[], &[]), Vec::<i64>::new());
    }

    #[test]
    fn references_of_one_contact_merge_and_unmapped_are_kept() {
        let mapping = HashMap::from([
            ("a".to_string(), 7),
            ("b".to_string(), 7),
            ("c".to_string(), 2),
        ]);
        let (mapped, unmapped) = translate(
            vec![
                r("a", &[5, 1], &[]),
                r("x", &[9], &[8]),
                r("b", &[1, 4], &[3]),
                r("c", &[], &[]),
            ],
            &mapping,
        );
        assert_eq!(
            mapped,
            vec![
                IdRow {
                    contact_id: 2,
                    rti_program_runs: vec![],
                    ac_program_runs: vec![]
                },
                IdRow {
                    contact_id: 7,
                    rti_program_runs: vec![1, 4, 5],
                    ac_program_runs: vec![3]
                },
            ]
        );
        assert_eq!(unmapped, vec![r("x", &[9], &[8])]);
    }
}
