//! Coalescing of one-at-a-time segment requests: the requests of one batch for
//! one (segment, contact) fold, in arrival order, into a single [`Change`] that
//! has exactly the effect of applying them one by one. No database here.
//!
//! The membership rule (what one request does to a contact's row):
//! - `add` (no run id): the contact is a member (row inserted if missing).
//! - `add` with a program run: the contact is a member and the run id is in
//!   its `rti`/`ac` array (set semantics: never twice).
//! - `remove` (no run id): the contact leaves the audience (row deleted).
//! - `remove` with a program run: that run id leaves the array; the contact
//!   stays a member even when both arrays become empty (a plain `add` also
//!   leaves them empty, so an empty array cannot mean "not a member").

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Add,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProgramKind {
    Rti,
    Ac,
}

impl ProgramKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rti" => Some(Self::Rti),
            "ac" => Some(Self::Ac),
            _ => None,
        }
    }
}

/// One queued request, without its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub verb: Verb,
    pub program: Option<(ProgramKind, i64)>,
}

/// The net effect of a sequence of requests on one contact of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// A plain remove happened: the row is deleted first, and whatever
    /// follows starts from "not a member".
    pub reset: bool,
    /// The contact is a member at the end (an add came after the last reset).
    pub ensure: bool,
    pub rti_add: BTreeSet<i64>,
    pub rti_remove: BTreeSet<i64>,
    pub ac_add: BTreeSet<i64>,
    pub ac_remove: BTreeSet<i64>,
    /// How many requests were folded into this change.
    pub requests: u64,
}

/// What a change does to membership, for reporting and for destinations
/// that only know keys (the REST destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The contact is a member afterwards (possibly with run ids changed).
    Added,
    /// The contact is not a member afterwards.
    Removed,
    /// Membership unchanged; only program run ids were withdrawn.
    RunsRemoved,
}

/// A contact's row: `None` = not a member, else its (rti, ac) run ids.
pub type Row = Option<(BTreeSet<i64>, BTreeSet<i64>)>;

impl Change {
    /// Folds the next request (in arrival order) into the change.
    pub fn push(&mut self, r: Request) {
        let requests = self.requests + 1;
        match (r.verb, r.program) {
            (Verb::Remove, None) => {
                *self = Change {
                    reset: true,
                    ..Change::default()
                };
            }
            (Verb::Add, None) => self.ensure = true,
            (Verb::Add, Some((kind, run))) => {
                self.ensure = true;
                let (add, remove) = self.sets(kind);
                add.insert(run);
                remove.remove(&run);
            }
            (Verb::Remove, Some((kind, run))) => {
                let reset = self.reset;
                let (add, remove) = self.sets(kind);
                add.remove(&run);
                // after a reset the arrays start empty: nothing to withdraw
                if !reset {
                    remove.insert(run);
                }
            }
        }
        self.requests = requests;
    }

    fn sets(&mut self, kind: ProgramKind) -> (&mut BTreeSet<i64>, &mut BTreeSet<i64>) {
        match kind {
            ProgramKind::Rti => (&mut self.rti_add, &mut self.rti_remove),
            ProgramKind::Ac => (&mut self.ac_add, &mut self.ac_remove),
        }
    }

    pub fn outcome(&self) -> Outcome {
        if self.ensure {
            Outcome::Added
        } else if self.reset {
            Outcome::Removed
        } else {
            Outcome::RunsRemoved
        }
    }

    /// True when the change touches program run ids (an UPDATE is needed).
    pub fn touches_runs(&self) -> bool {
        !(self.rti_add.is_empty()
            && self.rti_remove.is_empty()
            && self.ac_add.is_empty()
            && self.ac_remove.is_empty())
    }

    /// The row after the change, given the row before it. This is the
    /// specification the SQL apply implements.
    pub fn apply(&self, before: Row) -> Row {
        let before = if self.reset { None } else { before };
        let present = self.ensure || before.is_some();
        if !present {
            return None;
        }
        let (mut rti, mut ac) = before.unwrap_or_default();
        rti.retain(|r| !self.rti_remove.contains(r));
        ac.retain(|r| !self.ac_remove.contains(r));
        rti.extend(&self.rti_add);
        ac.extend(&self.ac_add);
        Some((rti, ac))
    }
}

/// Applies one request to a row: the obviously-correct sequential semantics.
pub fn apply_one(row: Row, r: Request) -> Row {
    match (r.verb, r.program) {
        (Verb::Add, None) => Some(row.unwrap_or_default()),
        (Verb::Add, Some((kind, run))) => {
            let (mut rti, mut ac) = row.unwrap_or_default();
            match kind {
                ProgramKind::Rti => rti.insert(run),
                ProgramKind::Ac => ac.insert(run),
            };
            Some((rti, ac))
        }
        (Verb::Remove, None) => None,
        (Verb::Remove, Some((kind, run))) => row.map(|(mut rti, mut ac)| {
            match kind {
                ProgramKind::Rti => rti.remove(&run),
                ProgramKind::Ac => ac.remove(&run),
            };
            (rti, ac)
        }),
    }
}

/// Folds requests (in arrival order) per key; keys keep first-seen order.
pub fn coalesce<K, I>(requests: I) -> Vec<(K, Change)>
where
    K: Eq + Hash + Clone,
    I: IntoIterator<Item = (K, Request)>,
{
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut out: Vec<(K, Change)> = Vec::new();
    for (key, r) in requests {
        let i = *index.entry(key.clone()).or_insert_with(|| {
            out.push((key, Change::default()));
            out.len() - 1
        });
        out[i].1.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn add() -> Request {
        Request {
            verb: Verb::Add,
            program: None,
        }
    }
    fn remove() -> Request {
        Request {
            verb: Verb::Remove,
            program: None,
        }
    }
    fn add_run(kind: ProgramKind, run: i64) -> Request {
        Request {
            verb: Verb::Add,
            program: Some((kind, run)),
        }
    }
    fn remove_run(kind: ProgramKind, run: i64) -> Request {
        Request {
            verb: Verb::Remove,
            program: Some((kind, run)),
        }
    }

    fn set(v: &[i64]) -> BTreeSet<i64> {
        v.iter().copied().collect()
    }

    #[test]
    fn add_then_remove_ends_removed() {
        let c = coalesce([("k", add()), ("k", remove())]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].1.outcome(), Outcome::Removed);
        assert_eq!(c[0].1.requests, 2);
        assert_eq!(c[0].1.apply(Some(Default::default())), None);
    }

    #[test]
    fn remove_then_add_ends_added_with_fresh_arrays() {
        let mut c = Change::default();
        c.push(remove());
        c.push(add_run(ProgramKind::Rti, 7));
        assert_eq!(c.outcome(), Outcome::Added);
        let before = Some((set(&[1, 2]), set(&[3])));
        assert_eq!(c.apply(before), Some((set(&[7]), set(&[]))));
    }

    #[test]
    fn run_removal_keeps_the_contact() {
        let mut c = Change::default();
        c.push(remove_run(ProgramKind::Ac, 3));
        assert_eq!(c.outcome(), Outcome::RunsRemoved);
        assert_eq!(
            c.apply(Some((set(&[]), set(&[3])))),
            Some((set(&[]), set(&[])))
        );
        assert_eq!(c.apply(None), None, "withdrawing a run never adds");
    }

    #[test]
    fn runs_merge_with_set_semantics() {
        let mut c = Change::default();
        for r in [
            add_run(ProgramKind::Rti, 1),
            add_run(ProgramKind::Rti, 1),
            add_run(ProgramKind::Ac, 2),
            remove_run(ProgramKind::Rti, 5),
        ] {
            c.push(r);
        }
        assert_eq!(
            c.apply(Some((set(&[5, 6]), set(&[2])))),
            Some((set(&[1, 6]), set(&[2])))
        );
    }

    #[test]
    fn keys_are_independent_and_keep_first_seen_order() {
        let c = coalesce([("b", add()), ("a", add()), ("b", remove())]);
        let keys: Vec<_> = c.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(c[0].1.outcome(), Outcome::Removed);
        assert_eq!(c[1].1.outcome(), Outcome::Added);
    }

    fn request() -> impl Strategy<Value = Request> {
        (0u8..6, 0i64..4).prop_map(|(v, run)| match v {
            0 | 1 => add(),
            2 => remove(),
            3 => add_run(
                if run % 2 == 0 {
                    ProgramKind::Rti
                } else {
                    ProgramKind::Ac
                },
                run,
            ),
            4 => remove_run(ProgramKind::Rti, run),
            _ => remove_run(ProgramKind::Ac, run),
        })
    }

    fn row() -> impl Strategy<Value = Row> {
        prop_oneof![
            Just(None),
            (
                proptest::collection::btree_set(0i64..4, 0..3),
                proptest::collection::btree_set(0i64..4, 0..3)
            )
                .prop_map(Some),
        ]
    }

    proptest! {
        #[test]
        fn one_change_equals_the_requests_in_order(before in row(), reqs in proptest::collection::vec(request(), 1..30)) {
            let sequential = reqs.iter().fold(before.clone(), |s, r| apply_one(s, *r));
            let mut c = Change::default();
            for r in &reqs {
                c.push(*r);
            }
            prop_assert_eq!(c.apply(before), sequential);
            prop_assert_eq!(c.requests, reqs.len() as u64);
        }

        #[test]
        fn batches_of_any_size_equal_the_requests_in_order(
            reqs in proptest::collection::vec((0u8..5, request()), 1..200),
            batch in 1usize..40,
        ) {
            let mut expected: BTreeMap<u8, Row> = BTreeMap::new();
            for (k, r) in &reqs {
                let s = expected.remove(k).flatten();
                expected.insert(*k, apply_one(s, *r));
            }
            let mut state: BTreeMap<u8, Row> = BTreeMap::new();
            for chunk in reqs.chunks(batch) {
                for (k, c) in coalesce(chunk.iter().copied()) {
                    let s = state.remove(&k).flatten();
                    state.insert(k, c.apply(s));
                }
            }
            prop_assert_eq!(state, expected);
        }
    }
}
