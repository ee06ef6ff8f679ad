//! Identity resolution of one batch, with no database: a union-find over the
//! batch's identifiers and the existing entities they already belong to,
//! hygiene (blocked identifiers, per-attribute value limits) applied edge by
//! edge, and the merge decisions (the larger entity survives, ties: older).

/// "No such index" marker in the dense index vectors.
pub const NONE: u32 = u32::MAX;

/// Disjoint sets with path halving and union by size.
#[derive(Debug, Default, Clone)]
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
        }
    }

    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let gp = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = gp;
            x = gp;
        }
        x
    }

    /// Joins the sets of `a` and `b`; returns `(new_root, other_root)` or
    /// `None` when they were already joined.
    pub fn union(&mut self, a: u32, b: u32) -> Option<(u32, u32)> {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return None;
        }
        Some(self.link(ra, rb))
    }

    /// Links two distinct roots; the bigger set's root stays root.
    fn link(&mut self, ra: u32, rb: u32) -> (u32, u32) {
        let (big, small) = if self.size[ra as usize] >= self.size[rb as usize] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[small as usize] = big;
        self.size[big as usize] += self.size[small as usize];
        (big, small)
    }
}

/// An entity that exists from earlier runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Existing {
    /// Number of events it holds.
    pub events: i64,
    /// Creation order: smaller is older.
    pub seq: i64,
}

impl Existing {
    /// True when `self` keeps its id against `other`: more events, ties the older.
    pub fn beats(&self, other: &Existing) -> bool {
        (self.events, -self.seq) > (other.events, -other.seq)
    }
}

/// Why an event–identifier edge was not used for stitching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The value matches blocklist rule number `rule`.
    Blocked { rule: u32 },
    /// Joining would give an entity more than `max` values of attribute `attr`.
    Limit { attr: u16, max: u32 },
}

/// What the engine needs to know about a batch.
#[derive(Debug, Default, Clone)]
pub struct Input {
    /// Attribute index of each identifier.
    pub ident_attr: Vec<u16>,
    /// Blocklist rule matching each identifier, or [`NONE`].
    pub ident_blocked: Vec<u32>,
    /// Existing entity (index into `entities`) of each identifier, or [`NONE`].
    pub ident_entity: Vec<u32>,
    /// Global identifier id (used to count distinct values under limits).
    pub ident_gid: Vec<u64>,
    pub entities: Vec<Existing>,
    /// Values of limited attributes the existing entities already hold:
    /// `(entity, attr, gid)`.
    pub entity_limited: Vec<(u32, u16, u64)>,
    /// Per attribute: the most values an entity may hold; 0 = no limit.
    pub limits: Vec<u32>,
    /// Events: `ev_offsets[e]..ev_offsets[e+1]` indexes `ev_idents`.
    pub ev_offsets: Vec<u32>,
    pub ev_idents: Vec<u32>,
}

impl Input {
    pub fn events(&self) -> usize {
        self.ev_offsets.len().saturating_sub(1)
    }

    pub fn event_idents(&self, e: usize) -> &[u32] {
        &self.ev_idents[self.ev_offsets[e] as usize..self.ev_offsets[e + 1] as usize]
    }

    /// Appends an event with the given identifiers.
    pub fn push_event(&mut self, idents: &[u32]) {
        if self.ev_offsets.is_empty() {
            self.ev_offsets.push(0);
        }
        self.ev_idents.extend_from_slice(idents);
        self.ev_offsets.push(self.ev_idents.len() as u32);
    }
}

/// One resulting entity that changed in this batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Component {
    /// The surviving existing entity, or [`NONE`] for a new entity.
    pub entity: u32,
    /// Events of this batch that joined it.
    pub new_events: u32,
    /// Existing entities it absorbed.
    pub absorbed: Vec<u32>,
    /// Events the absorbed entities brought along.
    pub absorbed_events: i64,
}

/// An existing entity absorbed into another one, and the edge that bridged them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merge {
    pub absorbed: u32,
    pub survivor: u32,
    pub event: u32,
    pub ident: u32,
}

#[derive(Debug, Default, Clone)]
pub struct Resolution {
    /// Parallel to `Input::ev_idents`: the edge was used.
    pub edge_ok: Vec<bool>,
    /// Refused edges: `(event, identifier, why)`.
    pub refused: Vec<(u32, u32, Refusal)>,
    /// Component of each event.
    pub ev_comp: Vec<u32>,
    /// Component of each identifier with at least one accepted edge, else [`NONE`].
    pub ident_comp: Vec<u32>,
    pub comps: Vec<Component>,
    pub merges: Vec<Merge>,
}

/// Resolves a batch. Events are processed in the given order; within an
/// event, identifiers of unlimited attributes come first, so a limit refuses
/// the extra value rather than the event's ordinary identifiers.
#[allow(clippy::needless_range_loop)]
pub fn resolve(input: &Input) -> Resolution {
    let n_id = input.ident_attr.len();
    let n_ent = input.entities.len();
    let mut uf = UnionFind::new(n_id + n_ent);
    // representative existing entity of each root
    let mut rep = vec![NONE; n_id + n_ent];
    for k in 0..n_ent {
        rep[n_id + k] = k as u32;
    }
    let limited = input.limits.iter().any(|&l| l > 0);
    let limit_of = |attr: u16| input.limits.get(attr as usize).copied().unwrap_or(0);
    let mut lim: Vec<Vec<(u16, u64)>> = if limited {
        vec![Vec::new(); n_id + n_ent]
    } else {
        Vec::new()
    };
    if limited {
        for i in 0..n_id {
            let a = input.ident_attr[i];
            if limit_of(a) > 0 && input.ident_blocked[i] == NONE {
                lim[i].push((a, input.ident_gid[i]));
            }
        }
        for &(k, a, gid) in &input.entity_limited {
            let v = &mut lim[n_id + k as usize];
            if !v.contains(&(a, gid)) {
                v.push((a, gid));
            }
        }
    }
    // existing labels: identifier ∪ its entity
    for i in 0..n_id {
        let k = input.ident_entity[i];
        if k != NONE {
            if let Some((root, other)) = uf.union(i as u32, n_id as u32 + k) {
                rep[root as usize] = k;
                if limited {
                    merge_sets(&mut lim, root, other);
                }
            }
        }
    }

    let mut res = Resolution {
        edge_ok: vec![false; input.ev_idents.len()],
        ..Default::default()
    };
    let mut merges_raw: Vec<Merge> = Vec::new();
    let mut ev_anchor = vec![NONE; input.events()];
    let mut ident_used = vec![false; n_id];
    for e in 0..input.events() {
        let start = input.ev_offsets[e] as usize;
        let idents = input.event_idents(e);
        let mut anchor = NONE;
        // unlimited attributes first, then limited ones
        for pass in 0..2 {
            for (j, &i) in idents.iter().enumerate() {
                let a = input.ident_attr[i as usize];
                let is_limited = limited && limit_of(a) > 0;
                if (pass == 0) == is_limited {
                    continue;
                }
                let rule = input.ident_blocked[i as usize];
                if rule != NONE {
                    res.refused.push((e as u32, i, Refusal::Blocked { rule }));
                    continue;
                }
                if anchor == NONE {
                    anchor = i;
                } else {
                    let (ra, ri) = (uf.find(anchor), uf.find(i));
                    if ra != ri {
                        if limited {
                            if let Some((attr, max)) = violation(&lim, ra, ri, &limit_of) {
                                res.refused
                                    .push((e as u32, i, Refusal::Limit { attr, max }));
                                continue;
                            }
                        }
                        let (root, other) = uf.link(ra, ri);
                        let (r1, r2) = (rep[root as usize], rep[other as usize]);
                        rep[root as usize] = match (r1 != NONE, r2 != NONE) {
                            (true, true) => {
                                let (w, l) = if input.entities[r1 as usize]
                                    .beats(&input.entities[r2 as usize])
                                {
                                    (r1, r2)
                                } else {
                                    (r2, r1)
                                };
                                merges_raw.push(Merge {
                                    absorbed: l,
                                    survivor: w,
                                    event: e as u32,
                                    ident: i,
                                });
                                w
                            }
                            (true, false) => r1,
                            (false, true) => r2,
                            _ => NONE,
                        };
                        if limited {
                            merge_sets(&mut lim, root, other);
                        }
                    }
                }
                res.edge_ok[start + j] = true;
                ident_used[i as usize] = true;
            }
        }
        ev_anchor[e] = anchor;
    }

    // components: one per root that gained events or absorbed entities
    let mut root_comp = vec![NONE; n_id + n_ent];
    let mut comp_of_root = |root: u32, res: &mut Resolution, rep: &[u32]| -> u32 {
        let c = root_comp[root as usize];
        if c != NONE {
            return c;
        }
        let c = res.comps.len() as u32;
        res.comps.push(Component {
            entity: rep[root as usize],
            ..Default::default()
        });
        root_comp[root as usize] = c;
        c
    };
    res.ev_comp = Vec::with_capacity(input.events());
    for &anchor in &ev_anchor {
        let c = if anchor == NONE {
            let c = res.comps.len() as u32;
            res.comps.push(Component {
                entity: NONE,
                ..Default::default()
            });
            c
        } else {
            let root = uf.find(anchor);
            comp_of_root(root, &mut res, &rep)
        };
        res.comps[c as usize].new_events += 1;
        res.ev_comp.push(c);
    }
    for m in &merges_raw {
        let root = uf.find(n_id as u32 + m.absorbed);
        let c = comp_of_root(root, &mut res, &rep);
        let comp = &mut res.comps[c as usize];
        comp.absorbed.push(m.absorbed);
        comp.absorbed_events += input.entities[m.absorbed as usize].events;
        res.merges.push(Merge {
            survivor: comp.entity,
            ..*m
        });
    }
    res.ident_comp = (0..n_id)
        .map(|i| {
            if ident_used[i] {
                root_comp[uf.find(i as u32) as usize]
            } else {
                NONE
            }
        })
        .collect();
    res
}

fn merge_sets(lim: &mut [Vec<(u16, u64)>], root: u32, other: u32) {
    let moved = std::mem::take(&mut lim[other as usize]);
    let dst = &mut lim[root as usize];
    for v in moved {
        if !dst.contains(&v) {
            dst.push(v);
        }
    }
}

/// The first limited attribute whose distinct values would exceed its limit
/// if the sets of roots `a` and `b` were joined.
fn violation(
    lim: &[Vec<(u16, u64)>],
    a: u32,
    b: u32,
    limit_of: &impl Fn(u16) -> u32,
) -> Option<(u16, u32)> {
    let (sa, sb) = (&lim[a as usize], &lim[b as usize]);
    if sa.is_empty() || sb.is_empty() {
        return None;
    }
    for &(attr, _) in sa.iter().chain(sb.iter()) {
        let max = limit_of(attr);
        let mut n = sa.iter().filter(|(x, _)| *x == attr).count();
        n += sb
            .iter()
            .filter(|(x, g)| *x == attr && !sa.contains(&(*x, *g)))
            .count();
        if n > max as usize {
            return Some((attr, max));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(n_idents: usize, events: &[&[u32]]) -> Input {
        let mut inp = Input {
            ident_attr: vec![0; n_idents],
            ident_blocked: vec![NONE; n_idents],
            ident_entity: vec![NONE; n_idents],
            ident_gid: (0..n_idents as u64).collect(),
            ..Default::default()
        };
        for e in events {
            inp.push_event(e);
        }
        inp
    }

    #[test]
    fn union_find_joins_and_compresses() {
        let mut uf = UnionFind::new(6);
        assert!(uf.union(0, 1).is_some());
        assert!(uf.union(2, 3).is_some());
        assert!(uf.union(1, 3).is_some());
        assert!(uf.union(0, 2).is_none());
        assert_eq!(uf.find(0), uf.find(3));
        assert_ne!(uf.find(0), uf.find(4));
        assert_eq!(uf.len(), 6);
    }

    #[test]
    fn long_chain_is_one_component() {
        let n = 10_000u32;
        let evs: Vec<Vec<u32>> = (0..n - 1).map(|i| vec![i, i + 1]).collect();
        let refs: Vec<&[u32]> = evs.iter().map(|v| v.as_slice()).collect();
        let r = resolve(&input(n as usize, &refs));
        assert!(r.ev_comp.iter().all(|&c| c == r.ev_comp[0]));
        assert_eq!(r.comps.len(), 1);
        assert_eq!(r.comps[0].new_events, n - 1);
    }

    #[test]
    fn events_without_identifiers_are_singletons() {
        let r = resolve(&input(1, &[&[], &[0], &[], &[0]]));
        assert_eq!(r.comps.len(), 3);
        assert_eq!(r.ev_comp[1], r.ev_comp[3]);
        assert_ne!(r.ev_comp[0], r.ev_comp[2]);
    }

    #[test]
    fn blocked_identifier_never_joins() {
        let mut inp = input(3, &[&[0, 2], &[1, 2]]);
        inp.ident_blocked[2] = 7;
        let r = resolve(&inp);
        assert_ne!(r.ev_comp[0], r.ev_comp[1]);
        assert_eq!(r.refused.len(), 2);
        assert_eq!(r.refused[0], (0, 2, Refusal::Blocked { rule: 7 }));
        assert_eq!(r.ident_comp[2], NONE);
        assert_eq!(r.edge_ok, vec![true, false, true, false]);
    }

    #[test]
    fn larger_entity_survives_and_ties_go_to_the_older() {
        // idents 0 and 1 belong to existing entities 0 (3 events) and 1 (5 events)
        let mut inp = input(2, &[&[0, 1]]);
        inp.entities = vec![
            Existing { events: 3, seq: 1 },
            Existing { events: 5, seq: 2 },
        ];
        inp.ident_entity = vec![0, 1];
        let r = resolve(&inp);
        assert_eq!(r.comps.len(), 1);
        assert_eq!(r.comps[0].entity, 1);
        assert_eq!(r.comps[0].absorbed, vec![0]);
        assert_eq!(r.comps[0].absorbed_events, 3);
        assert_eq!(
            r.merges,
            vec![Merge {
                absorbed: 0,
                survivor: 1,
                event: 0,
                ident: 1
            }]
        );
        inp.entities[1].events = 3;
        let r = resolve(&inp);
        assert_eq!(r.comps[0].entity, 0, "tie: the older (smaller seq) wins");
    }

    #[test]
    fn chained_merges_point_to_the_final_survivor() {
        // entities 0 (1 ev), 1 (2 ev), 2 (9 ev) joined by two events
        let mut inp = input(3, &[&[0, 1], &[1, 2]]);
        inp.entities = vec![
            Existing { events: 1, seq: 1 },
            Existing { events: 2, seq: 2 },
            Existing { events: 9, seq: 3 },
        ];
        inp.ident_entity = vec![0, 1, 2];
        let r = resolve(&inp);
        assert_eq!(r.comps.len(), 1);
        assert_eq!(r.comps[0].entity, 2);
        let mut abs = r.comps[0].absorbed.clone();
        abs.sort();
        assert_eq!(abs, vec![0, 1]);
        assert!(r.merges.iter().all(|m| m.survivor == 2));
    }

    #[test]
    fn limit_refuses_second_login_id() {
        // attr 1 is limited to one value; event 0: cookie 0 + login 1,
        // event 1: cookie 0 + login 2 -> the login-2 edge is refused.
        let mut inp = input(3, &[&[0, 1], &[2, 0]]);
        inp.ident_attr = vec![0, 1, 1];
        inp.limits = vec![0, 1];
        let r = resolve(&inp);
        assert_eq!(r.ev_comp[0], r.ev_comp[1]);
        assert_eq!(r.refused, vec![(1, 2, Refusal::Limit { attr: 1, max: 1 })]);
        assert_eq!(r.ident_comp[2], NONE);
        // the same login again is fine
        let mut inp2 = input(2, &[&[0, 1], &[1, 0]]);
        inp2.ident_attr = vec![0, 1];
        inp2.limits = vec![0, 1];
        assert!(resolve(&inp2).refused.is_empty());
    }

    #[test]
    fn limit_blocks_merge_of_two_logged_in_entities() {
        // existing entity 0 holds login 100, entity 1 holds login 101 (not in
        // the batch); a new event with both entities' cookies must not merge them.
        let mut inp = input(2, &[&[0, 1]]);
        inp.ident_attr = vec![0, 0];
        inp.limits = vec![0, 1];
        inp.entities = vec![
            Existing { events: 1, seq: 1 },
            Existing { events: 1, seq: 2 },
        ];
        inp.ident_entity = vec![0, 1];
        inp.entity_limited = vec![(0, 1, 100), (1, 1, 101)];
        let r = resolve(&inp);
        assert!(r.merges.is_empty());
        assert_eq!(r.refused, vec![(0, 1, Refusal::Limit { attr: 1, max: 1 })]);
        assert_eq!(r.comps[r.ev_comp[0] as usize].entity, 0);
    }

    /// The persisted state between runs, as the database keeps it.
    #[derive(Default)]
    struct MemStore {
        // identifier value -> entity id
        labels: std::collections::HashMap<u64, u64>,
        // entity id -> (events, seq)
        entities: std::collections::HashMap<u64, Existing>,
        event_entity: std::collections::HashMap<usize, u64>,
        next_id: u64,
    }

    impl MemStore {
        /// One incremental run over `events` (indexes into `graph`).
        fn run(&mut self, graph: &[Vec<u64>], events: &[usize], blocked: &dyn Fn(u64) -> bool) {
            let mut local: std::collections::HashMap<u64, u32> = Default::default();
            let mut inp = Input::default();
            let mut ent_idx: std::collections::HashMap<u64, u32> = Default::default();
            let mut ent_ids: Vec<u64> = Vec::new();
            for &e in events {
                let mut ids = Vec::new();
                for &v in &graph[e] {
                    let i = *local.entry(v).or_insert_with(|| {
                        let i = inp.ident_attr.len() as u32;
                        inp.ident_attr.push(0);
                        inp.ident_gid.push(v);
                        inp.ident_blocked.push(if blocked(v) { 3 } else { NONE });
                        let ent = match self.labels.get(&v) {
                            Some(id) => *ent_idx.entry(*id).or_insert_with(|| {
                                ent_ids.push(*id);
                                inp.entities.push(self.entities[id]);
                                (ent_ids.len() - 1) as u32
                            }),
                            None => NONE,
                        };
                        inp.ident_entity.push(ent);
                        i
                    });
                    ids.push(i);
                }
                inp.push_event(&ids);
            }
            let r = resolve(&inp);
            // apply, as the database layer does
            let comp_ids: Vec<u64> = r
                .comps
                .iter()
                .map(|c| {
                    if c.entity == NONE {
                        self.next_id += 1;
                        self.entities.insert(
                            self.next_id,
                            Existing {
                                events: 0,
                                seq: self.next_id as i64,
                            },
                        );
                        self.next_id
                    } else {
                        ent_ids[c.entity as usize]
                    }
                })
                .collect();
            for m in &r.merges {
                let (a, s) = (ent_ids[m.absorbed as usize], ent_ids[m.survivor as usize]);
                for l in self.labels.values_mut() {
                    if *l == a {
                        *l = s;
                    }
                }
                for l in self.event_entity.values_mut() {
                    if *l == a {
                        *l = s;
                    }
                }
                self.entities.remove(&a);
            }
            for (c, comp) in r.comps.iter().enumerate() {
                let ent = self.entities.get_mut(&comp_ids[c]).unwrap();
                ent.events += comp.new_events as i64 + comp.absorbed_events;
            }
            for (i, &c) in r.ident_comp.iter().enumerate() {
                if c != NONE && inp.ident_entity[i] == NONE {
                    self.labels.insert(inp.ident_gid[i], comp_ids[c as usize]);
                }
            }
            for (k, &e) in events.iter().enumerate() {
                self.event_entity.insert(e, comp_ids[r.ev_comp[k] as usize]);
            }
            // sizes stay exact
            let mut counts: std::collections::HashMap<u64, i64> = Default::default();
            for v in self.event_entity.values() {
                *counts.entry(*v).or_default() += 1;
            }
            for (id, e) in &self.entities {
                assert_eq!(
                    counts.get(id).copied().unwrap_or(0),
                    e.events,
                    "size of entity {id}"
                );
            }
        }

        fn partition(&self, n: usize) -> Vec<usize> {
            canonical(&(0..n).map(|e| self.event_entity[&e]).collect::<Vec<_>>())
        }
    }

    /// Relabels a labelling as "index of the first event with the same label".
    fn canonical<T: std::hash::Hash + Eq + Copy>(labels: &[T]) -> Vec<usize> {
        let mut first: std::collections::HashMap<T, usize> = Default::default();
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| *first.entry(*l).or_insert(i))
            .collect()
    }

    /// Connected components by breadth-first search over the bipartite
    /// event–identifier graph, ignoring blocked identifiers.
    fn bfs_oracle(graph: &[Vec<u64>], blocked: &dyn Fn(u64) -> bool) -> Vec<usize> {
        let mut by_ident: std::collections::HashMap<u64, Vec<usize>> = Default::default();
        for (e, ids) in graph.iter().enumerate() {
            for &v in ids {
                if !blocked(v) {
                    by_ident.entry(v).or_default().push(e);
                }
            }
        }
        let mut comp = vec![usize::MAX; graph.len()];
        for s in 0..graph.len() {
            if comp[s] != usize::MAX {
                continue;
            }
            comp[s] = s;
            let mut queue = std::collections::VecDeque::from([s]);
            while let Some(e) = queue.pop_front() {
                for &v in &graph[e] {
                    if blocked(v) {
                        continue;
                    }
                    for &f in &by_ident[&v] {
                        if comp[f] == usize::MAX {
                            comp[f] = s;
                            queue.push_back(f);
                        }
                    }
                }
            }
        }
        canonical(&comp)
    }

    /// Adversarial graphs: long chains, stars, a giant component, junk
    /// identifiers, duplicates, events without identifiers and late events
    /// bridging big entities.
    fn graph(seed: u64, n: usize) -> Vec<Vec<u64>> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let mut g: Vec<Vec<u64>> = Vec::new();
        let chain = rng.gen_range(100..3000u64);
        for i in 0..chain {
            g.push(vec![1_000_000 + i, 1_000_000 + i + 1]);
        }
        let star = rng.gen_range(1..500);
        for _ in 0..star {
            g.push(vec![2_000_000, 3_000_000 + rng.gen_range(0..10_000u64)]);
        }
        while g.len() < n {
            match rng.gen_range(0..10) {
                0 => g.push(vec![]),
                1 => g.push(vec![rng.gen_range(0..5u64)]), // junk 0..5
                2 if !g.is_empty() => {
                    let d = g[rng.gen_range(0..g.len())].clone();
                    g.push(d)
                }
                _ => {
                    let k = rng.gen_range(1..4);
                    g.push(
                        (0..k)
                            .map(|_| 10 + rng.gen_range(0..(n as u64 * 2)))
                            .collect(),
                    )
                }
            }
        }
        // late events bridging the chain, the star and random identifiers
        g.push(vec![1_000_000 + chain, 2_000_000]);
        g.push(vec![
            3_000_000 + rng.gen_range(0..10_000u64),
            10 + rng.gen_range(0..(n as u64 * 2)),
            2,
        ]);
        g
    }

    fn junk(v: u64) -> bool {
        v < 5
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]
        #[test]
        fn incremental_runs_equal_bfs_and_from_scratch(
            seed in 0u64..1_000_000,
            n in 200usize..3000,
            cuts in proptest::collection::vec(0.0f64..1.0, 0..12),
            shuffle in proptest::bool::ANY,
        ) {
            let g = graph(seed, n);
            let oracle = bfs_oracle(&g, &junk);
            let mut order: Vec<usize> = (0..g.len()).collect();
            if shuffle {
                use rand::{seq::SliceRandom, SeedableRng};
                order.shuffle(&mut rand::rngs::SmallRng::seed_from_u64(seed ^ 0x5eed));
            }
            let mut full = MemStore::default();
            full.run(&g, &order, &junk);
            proptest::prop_assert_eq!(&full.partition(g.len()), &oracle);
            let mut points: Vec<usize> = cuts.iter().map(|c| (c * order.len() as f64) as usize).collect();
            points.push(order.len());
            points.sort();
            let mut inc = MemStore::default();
            let mut last = 0;
            for p in points {
                inc.run(&g, &order[last..p], &junk);
                last = p;
            }
            proptest::prop_assert_eq!(&inc.partition(g.len()), &oracle);
        }
    }

    #[test]
    fn many_single_event_runs_equal_bfs() {
        let g = graph(7, 600);
        let oracle = bfs_oracle(&g, &junk);
        let mut inc = MemStore::default();
        for e in 0..g.len() {
            inc.run(&g, &[e], &junk);
        }
        assert_eq!(inc.partition(g.len()), oracle);
    }
}
