//! Aggregation of every built-in attribute type, in memory and without a
//! database: PostgreSQL streams one observation (value, weight, event time,
//! event id) per extracted value, and each (entity, attribute) keeps a small
//! state that `finish` turns into the attribute's values.
//!
//! Every state is order-independent (the stream is unordered), so ties are
//! broken by the data: first/last by event time, then event id, then the
//! lexically smallest value; most/least frequent by total weight, then the
//! lexically smallest value (byte order, like `COLLATE "C"`).
//!
//! `max`/`min` compare numerically while every value of the entity is a
//! number; one value that is not switches the entity to text comparison,
//! which must follow the database's collation (as `max(text)` does), so
//! those entities' distinct values are handed back (`text_extremes`) for
//! the database to compare, and the answer is stored with `resolve_text`.

use std::collections::HashMap;

use super::decimal::Decimal;
use super::definition::Kind;

/// Values of one entity with their summed weights. Small bags stay a vector
/// (most entities have a handful of distinct values).
#[derive(Debug, Clone)]
pub enum Bag {
    Small(Vec<(Box<str>, Decimal)>),
    Large(HashMap<Box<str>, Decimal>),
}

const SMALL_BAG: usize = 24;

impl Bag {
    fn new() -> Bag {
        Bag::Small(Vec::new())
    }

    /// Adds `w` to the weight of `v`; false on overflow.
    fn add(&mut self, v: &str, w: Decimal) -> bool {
        match self {
            Bag::Small(items) => {
                if let Some(slot) = items.iter_mut().find(|(k, _)| &**k == v) {
                    return match slot.1.checked_add(w) {
                        Some(s) => {
                            slot.1 = s;
                            true
                        }
                        None => false,
                    };
                }
                if items.len() < SMALL_BAG {
                    items.push((v.into(), w));
                    return true;
                }
                let map: HashMap<Box<str>, Decimal> = std::mem::take(items).into_iter().collect();
                *self = Bag::Large(map);
                self.add(v, w)
            }
            Bag::Large(map) => {
                if let Some(cur) = map.get_mut(v) {
                    return match cur.checked_add(w) {
                        Some(s) => {
                            *cur = s;
                            true
                        }
                        None => false,
                    };
                }
                map.insert(v.into(), w);
                true
            }
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (&str, &Decimal)> + '_> {
        match self {
            Bag::Small(items) => Box::new(items.iter().map(|(k, w)| (&**k, w))),
            Bag::Large(map) => Box::new(map.iter().map(|(k, w)| (&**k, w))),
        }
    }

    fn len(&self) -> usize {
        match self {
            Bag::Small(items) => items.len(),
            Bag::Large(map) => map.len(),
        }
    }
}

/// The running state of one (entity, attribute).
#[derive(Debug, Clone)]
pub enum State {
    /// first / last: (event time in µs, event id, value)
    Timed(Option<(i64, u128, Box<str>)>),
    /// value: the lexically smallest value seen
    Smallest(Option<Box<str>>),
    /// most/least frequent (weights), list, num_of_unique, custom (sets)
    Bag(Bag),
    /// sum / avg
    Sum(Decimal, u64),
    /// min / max (boxed: rarer than the other types, and larger)
    Extreme(Box<Extreme>),
}

/// The state of a `max`/`min`: the numeric extreme so far, and every
/// distinct value as text, in case a non-numeric value turns up.
#[derive(Debug, Clone)]
pub struct Extreme {
    number: Option<Decimal>,
    all_numeric: bool,
    texts: Bag,
    /// The text extreme, once the database has compared `texts`.
    text: Option<Box<str>>,
}

impl Extreme {
    /// True when the values must be compared as text (in the database).
    fn is_text(&self) -> bool {
        !self.all_numeric
    }
}

/// Why an observation was not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A numeric type got a value that is not a number (or out of range).
    NotANumber,
    /// A weighted type got a weight that is not a number.
    BadWeight,
}

impl State {
    pub fn new(kind: Kind) -> State {
        match kind {
            Kind::First | Kind::Last => State::Timed(None),
            Kind::Value => State::Smallest(None),
            Kind::MostFrequent
            | Kind::LeastFrequent
            | Kind::List
            | Kind::NumOfUnique
            | Kind::Custom => State::Bag(Bag::new()),
            Kind::Sum | Kind::Avg => State::Sum(Decimal::ZERO, 0),
            Kind::Min | Kind::Max => State::Extreme(Box::new(Extreme {
                number: None,
                all_numeric: true,
                texts: Bag::new(),
                text: None,
            })),
        }
    }

    /// Adds one observation. `weight` is only used by the weighted types
    /// (`None` there means the weight expression was not a number).
    pub fn add(
        &mut self,
        kind: Kind,
        value: &str,
        weight: Option<Decimal>,
        time: i64,
        id: u128,
    ) -> Result<(), Skip> {
        match self {
            State::Timed(cur) => {
                let replace = match cur {
                    None => true,
                    Some((t, i, v)) => {
                        let key = (time, id);
                        let old = (*t, *i);
                        let ord = if kind == Kind::First {
                            key.cmp(&old)
                        } else {
                            old.cmp(&key)
                        };
                        ord.is_lt() || (ord.is_eq() && value < &**v)
                    }
                };
                if replace {
                    *cur = Some((time, id, value.into()));
                }
            }
            State::Smallest(cur) => {
                if cur.as_deref().is_none_or(|c| value < c) {
                    *cur = Some(value.into());
                }
            }
            State::Bag(bag) => {
                let w = if kind.weighted() {
                    weight.ok_or(Skip::BadWeight)?
                } else {
                    Decimal::ONE
                };
                if !bag.add(value, w) {
                    return Err(Skip::NotANumber);
                }
            }
            State::Sum(sum, n) => {
                let v = Decimal::parse(value).ok_or(Skip::NotANumber)?;
                *sum = sum.checked_add(v).ok_or(Skip::NotANumber)?;
                *n += 1;
            }
            State::Extreme(x) => {
                x.texts.add(value, Decimal::ZERO);
                match Decimal::parse(value) {
                    Some(v) if x.all_numeric => {
                        let better = match x.number {
                            None => true,
                            Some(c) if kind == Kind::Min => v < c,
                            Some(c) => v > c,
                        };
                        if better {
                            x.number = Some(v);
                        }
                    }
                    Some(_) => {}
                    None => {
                        x.all_numeric = false;
                        x.number = None;
                    }
                }
            }
        }
        Ok(())
    }

    /// The attribute's values: sorted, unique, possibly empty (no value).
    pub fn finish(&self, kind: Kind) -> Vec<String> {
        match self {
            State::Timed(cur) => cur.iter().map(|(_, _, v)| v.to_string()).collect(),
            State::Smallest(cur) => cur.iter().map(|v| v.to_string()).collect(),
            State::Bag(bag) => match kind {
                Kind::NumOfUnique => {
                    if bag.len() == 0 {
                        Vec::new()
                    } else {
                        vec![bag.len().to_string()]
                    }
                }
                Kind::MostFrequent | Kind::LeastFrequent => {
                    let mut best: Option<(&str, &Decimal)> = None;
                    for (v, w) in bag.iter() {
                        best = match best {
                            None => Some((v, w)),
                            Some((bv, bw)) => {
                                let ord = if kind == Kind::MostFrequent {
                                    bw.cmp(w)
                                } else {
                                    w.cmp(bw)
                                };
                                if ord.is_lt() || (ord.is_eq() && v < bv) {
                                    Some((v, w))
                                } else {
                                    Some((bv, bw))
                                }
                            }
                        };
                    }
                    best.map(|(v, _)| vec![v.to_string()]).unwrap_or_default()
                }
                _ => {
                    let mut v: Vec<String> = bag.iter().map(|(v, _)| v.to_string()).collect();
                    v.sort();
                    v
                }
            },
            State::Sum(sum, n) => {
                if *n == 0 {
                    Vec::new()
                } else if kind == Kind::Avg {
                    sum.div_count(*n)
                        .map(|d| d.to_string())
                        .into_iter()
                        .collect()
                } else {
                    vec![sum.to_string()]
                }
            }
            State::Extreme(x) if x.is_text() => x.text.iter().map(|v| v.to_string()).collect(),
            State::Extreme(x) => x.number.iter().map(|d| d.to_string()).collect(),
        }
    }
}

/// States of a batch of entities × the run's attributes, allocated when
/// the first value arrives, plus per-attribute skip counters.
pub struct Accumulator {
    kinds: Vec<Kind>,
    states: Vec<Option<State>>,
    pub skipped_not_numeric: Vec<u64>,
    pub skipped_bad_weight: Vec<u64>,
}

impl Accumulator {
    pub fn new(kinds: Vec<Kind>, entities: usize) -> Accumulator {
        let n = kinds.len();
        Accumulator {
            states: vec![None; entities * n],
            skipped_not_numeric: vec![0; n],
            skipped_bad_weight: vec![0; n],
            kinds,
        }
    }

    pub fn attributes(&self) -> usize {
        self.kinds.len()
    }

    /// One observation of attribute `attr` for entity number `entity`.
    pub fn add(
        &mut self,
        entity: usize,
        attr: usize,
        value: &str,
        weight: Option<Decimal>,
        time: i64,
        id: u128,
    ) {
        let kind = self.kinds[attr];
        let slot = &mut self.states[entity * self.kinds.len() + attr];
        let state = slot.get_or_insert_with(|| State::new(kind));
        match state.add(kind, value, weight, time, id) {
            Ok(()) => {}
            Err(Skip::NotANumber) => self.skipped_not_numeric[attr] += 1,
            Err(Skip::BadWeight) => self.skipped_bad_weight[attr] += 1,
        }
    }

    /// The `max`/`min` states that compare as text: (slot, kind, distinct
    /// values) for the database to compare in its collation; the answer goes
    /// back with `resolve_text(slot, value)`.
    pub fn text_extremes(&self) -> impl Iterator<Item = (usize, Kind, Vec<&str>)> + '_ {
        let n = self.kinds.len();
        self.states
            .iter()
            .enumerate()
            .filter_map(move |(slot, st)| match st {
                Some(State::Extreme(x)) if x.is_text() => Some((
                    slot,
                    self.kinds[slot % n],
                    x.texts.iter().map(|(v, _)| v).collect(),
                )),
                _ => None,
            })
    }

    /// Stores the text extreme of a slot listed by `text_extremes`.
    pub fn resolve_text(&mut self, slot: usize, value: &str) {
        if let Some(State::Extreme(x)) = &mut self.states[slot] {
            x.text = Some(value.into());
        }
    }

    /// The values of (entity, attr): sorted, unique, empty = no value.
    pub fn values(&self, entity: usize, attr: usize) -> Vec<String> {
        match &self.states[entity * self.kinds.len() + attr] {
            Some(s) => s.finish(self.kinds[attr]),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: Kind, obs: &[(&str, &str, i64, u128)]) -> Vec<String> {
        let mut s = State::new(kind);
        for (v, w, t, id) in obs {
            let _ = s.add(kind, v, Decimal::parse(w), *t, *id);
        }
        s.finish(kind)
    }

    fn vals(kind: Kind, values: &[&str]) -> Vec<String> {
        let obs: Vec<(&str, &str, i64, u128)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (*v, "1", i as i64, i as u128))
            .collect();
        run(kind, &obs)
    }

    #[test]
    fn first_and_last_by_time_then_id_then_value() {
        let obs = [
            ("b", "1", 10, 5),
            ("a", "1", 10, 7),
            ("c", "1", 20, 1),
            ("z", "1", 5, 9),
        ];
        assert_eq!(run(Kind::First, &obs), ["z"]);
        assert_eq!(run(Kind::Last, &obs), ["c"]);
        // equal time: the event id decides
        let tie = [("b", "1", 10, 5), ("a", "1", 10, 7)];
        assert_eq!(run(Kind::First, &tie), ["b"]);
        assert_eq!(run(Kind::Last, &tie), ["a"]);
        // several values of one event: the smallest, for both
        let same = [("y", "1", 10, 5), ("x", "1", 10, 5)];
        assert_eq!(run(Kind::First, &same), ["x"]);
        assert_eq!(run(Kind::Last, &same), ["x"]);
        // the order of arrival never matters
        let rev: Vec<_> = obs.iter().rev().cloned().collect();
        assert_eq!(run(Kind::Last, &rev), ["c"]);
    }

    #[test]
    fn frequency_by_weight_then_smallest_value() {
        let obs = [
            ("b", "1", 0, 0),
            ("a", "1", 0, 0),
            ("b", "1", 0, 0),
            ("c", "5", 0, 0),
        ];
        assert_eq!(run(Kind::MostFrequent, &obs), ["c"]);
        assert_eq!(run(Kind::LeastFrequent, &obs), ["a"]);
        let tie = [("b", "2", 0, 0), ("a", "1", 0, 0), ("a", "1", 0, 0)];
        assert_eq!(run(Kind::MostFrequent, &tie), ["a"]);
        assert_eq!(run(Kind::LeastFrequent, &tie), ["a"]);
        // byte order: upper case sorts before lower case
        assert_eq!(vals(Kind::MostFrequent, &["b", "B"]), ["B"]);
        // fractional weights are exact
        let frac = [("x", "0.1", 0, 0), ("x", "0.2", 0, 0), ("y", "0.3", 0, 0)];
        assert_eq!(run(Kind::MostFrequent, &frac), ["x"]);
    }

    #[test]
    fn bad_weights_are_skipped_and_counted() {
        let mut acc = Accumulator::new(vec![Kind::MostFrequent], 1);
        acc.add(0, 0, "a", None, 0, 0);
        acc.add(0, 0, "b", Some(Decimal::ONE), 0, 0);
        assert_eq!(acc.values(0, 0), ["b"]);
        assert_eq!(acc.skipped_bad_weight, [1]);
    }

    #[test]
    fn sets() {
        assert_eq!(vals(Kind::List, &["b", "a", "b", ""]), ["", "a", "b"]);
        assert_eq!(vals(Kind::NumOfUnique, &["b", "a", "b"]), ["2"]);
        assert_eq!(vals(Kind::Value, &["b", "a", "c"]), ["a"]);
        assert!(vals(Kind::NumOfUnique, &[]).is_empty());
        let many: Vec<String> = (0..100).map(|i| format!("v{i:03}")).collect();
        let refs: Vec<&str> = many.iter().map(|s| s.as_str()).chain(["v000"]).collect();
        assert_eq!(vals(Kind::List, &refs).len(), 100);
        assert_eq!(vals(Kind::NumOfUnique, &refs), ["100"]);
        let mut more = refs.clone();
        more.extend(["v050", "v050"]);
        assert_eq!(vals(Kind::MostFrequent, &more), ["v050"]);
    }

    /// Resolves the text extremes in byte order, which is what the "C"
    /// collation does (the database does it for real).
    fn resolve_bytewise(acc: &mut Accumulator) {
        let answers: Vec<(usize, String)> = acc
            .text_extremes()
            .map(|(slot, kind, texts)| {
                let v = if kind == Kind::Min {
                    texts.iter().min()
                } else {
                    texts.iter().max()
                };
                (slot, v.unwrap().to_string())
            })
            .collect();
        for (slot, v) in answers {
            acc.resolve_text(slot, &v);
        }
    }

    #[test]
    fn sum_and_avg_skip_non_numeric_values() {
        let mut acc = Accumulator::new(vec![Kind::Sum, Kind::Avg], 2);
        for v in ["10.50", "n/a", "2", "-0.5", ""] {
            for a in 0..2 {
                acc.add(0, a, v, None, 0, 0);
            }
        }
        assert_eq!(acc.values(0, 0), ["12"]);
        assert_eq!(acc.values(0, 1), ["4"]);
        assert_eq!(acc.skipped_not_numeric, [2, 2]);
        // an entity with only junk has no value
        acc.add(1, 0, "abc", None, 0, 0);
        assert!(acc.values(1, 0).is_empty());
        assert!(acc.values(1, 1).is_empty());
    }

    #[test]
    fn max_and_min_are_numeric_while_every_value_is_a_number() {
        let mut acc = Accumulator::new(vec![Kind::Min, Kind::Max], 3);
        // all numbers: compared as numbers, written in canonical form
        for v in ["9.99", "10.00", " 2 ", "-0.5e1"] {
            acc.add(0, 0, v, None, 0, 0);
            acc.add(0, 1, v, None, 0, 0);
        }
        // one value that is not a number: every value compares as text
        for v in ["9.99", "10.00", "2024-03-01"] {
            acc.add(1, 0, v, None, 0, 0);
            acc.add(1, 1, v, None, 0, 0);
        }
        // text only: ISO dates and codes
        for v in ["2023-12-31", "2024-03-01", "2024-02-29"] {
            acc.add(2, 0, v, None, 0, 0);
            acc.add(2, 1, v, None, 0, 0);
        }
        let pending: Vec<usize> = acc.text_extremes().map(|(slot, _, _)| slot).collect();
        assert_eq!(pending, [2, 3, 4, 5], "entities 1 and 2, both attributes");
        resolve_bytewise(&mut acc);
        assert_eq!(acc.values(0, 0), ["-5"]);
        assert_eq!(acc.values(0, 1), ["10"]);
        // the original texts: "10.00" < "2024-03-01" < "9.99"
        assert_eq!(acc.values(1, 0), ["10.00"]);
        assert_eq!(acc.values(1, 1), ["9.99"]);
        assert_eq!(acc.values(2, 0), ["2023-12-31"]);
        assert_eq!(acc.values(2, 1), ["2024-03-01"]);
        // nothing is skipped: every value takes part
        assert_eq!(acc.skipped_not_numeric, [0, 0]);
    }

    #[test]
    fn the_order_of_values_never_changes_max_and_min() {
        let values = ["10.00", "9.99", "abc", "9.99"];
        let mut seen = std::collections::HashSet::new();
        for rot in 0..values.len() {
            let mut acc = Accumulator::new(vec![Kind::Min, Kind::Max], 1);
            for v in values.iter().cycle().skip(rot).take(values.len()) {
                acc.add(0, 0, v, None, 0, 0);
                acc.add(0, 1, v, None, 0, 0);
            }
            let texts: Vec<usize> = acc.text_extremes().map(|(_, _, t)| t.len()).collect();
            assert_eq!(texts, [3, 3], "distinct values only");
            resolve_bytewise(&mut acc);
            seen.insert((acc.values(0, 0), acc.values(0, 1)));
        }
        assert_eq!(seen.len(), 1);
        assert!(seen.contains(&(vec!["10.00".to_string()], vec!["abc".to_string()])));
    }
}
