//! Compact interning of identifiers `(attribute, value)` to dense `u32`
//! indexes: values live in one byte arena; each slot of the open-addressing
//! table holds a 32-bit hash tag beside the index, so a probe that does not
//! match is decided in the table itself, without touching the arena (at
//! millions of identifiers every such touch is a cache miss).

use super::engine::NONE;

#[derive(Debug, Default)]
pub struct Interner {
    arena: Vec<u8>,
    offs: Vec<usize>,
    pub attr: Vec<u16>,
    /// `(tag << 32) | index`, or `EMPTY`
    slots: Vec<u64>,
}

const EMPTY: u64 = u64::MAX;

fn slot(tag: u32, i: u32) -> u64 {
    ((tag as u64) << 32) | i as u64
}

fn fx(attr: u16, v: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = (attr as u64).wrapping_mul(K);
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(c.try_into().unwrap())).wrapping_mul(K);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ b as u64).wrapping_mul(K);
    }
    (h.rotate_left(5) ^ v.len() as u64).wrapping_mul(K)
}

impl Interner {
    pub fn len(&self) -> usize {
        self.attr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.attr.is_empty()
    }

    pub fn value(&self, i: u32) -> &[u8] {
        &self.arena[self.offs[i as usize]..self.offs[i as usize + 1]]
    }

    /// The index of `(attr, v)`, and whether it was new.
    pub fn intern(&mut self, attr: u16, v: &[u8]) -> (u32, bool) {
        if self.offs.is_empty() {
            self.offs.push(0);
        }
        if self.slots.len() < 2 * (self.attr.len() + 1) {
            self.grow();
        }
        let tag = (fx(attr, v) >> 32) as u32;
        let mask = self.slots.len() - 1;
        let mut s = tag as usize & mask;
        loop {
            let e = self.slots[s];
            if e == EMPTY {
                let new = self.attr.len() as u32;
                debug_assert!(new != NONE);
                self.slots[s] = slot(tag, new);
                self.arena.extend_from_slice(v);
                self.offs.push(self.arena.len());
                self.attr.push(attr);
                return (new, true);
            }
            let i = e as u32;
            if (e >> 32) as u32 == tag && self.attr[i as usize] == attr && self.value(i) == v {
                return (i, false);
            }
            s = (s + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() * 2).max(1024);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; cap]);
        let mask = cap - 1;
        for e in old.into_iter().filter(|e| *e != EMPTY) {
            let mut s = (e >> 32) as usize & mask;
            while self.slots[s] != EMPTY {
                s = (s + 1) & mask;
            }
            self.slots[s] = e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_per_attribute() {
        let mut t = Interner::default();
        let mut ids = Vec::new();
        for i in 0..5000u32 {
            ids.push(t.intern((i % 3) as u16, format!("v{}", i / 3).as_bytes()));
        }
        assert!(ids.iter().all(|(_, new)| *new));
        assert_eq!(t.intern(1, b"v0"), (1, false));
        assert_eq!(t.intern(2, b"v1665"), (4997, false));
        assert_eq!(t.value(4997), b"v1665");
        assert_eq!(t.len(), 5000);
    }
}
