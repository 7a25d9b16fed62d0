//! A hash index from keys to `u32` ids whose keys live elsewhere.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};

/// Slot id of a free slot. Real ids are below `u32::MAX` because the
/// vocabulary builder rejects more than `u32::MAX` tokens.
const EMPTY: u32 = u32::MAX;

/// An open-addressing hash table (linear probing) of ids whose keys stay
/// in the caller's storage, such as the vocabulary's token texts. Building
/// it allocates one table, where a `HashMap<String, u32>` allocates a key
/// per token. Every call passes the key's hash from [`TextIndex::hash`]
/// and a closure telling whether a stored id has that key.
#[derive(Clone, Debug)]
pub struct TextIndex {
    /// `(tag, id)` per slot, where `tag` is the high 32 bits of the key's
    /// hash, so most probes skip a slot without comparing keys.
    slots: Vec<(u32, u32)>,
    /// Ids stored so far, at most half the slots.
    len: usize,
    /// Seeded SipHash, so a crafted vocabulary cannot force collisions and
    /// make building quadratic.
    hasher: RandomState,
}

impl TextIndex {
    /// Creates an empty index with room for `capacity` ids.
    pub fn with_capacity(capacity: usize) -> TextIndex {
        let n_slots = (capacity.max(4) * 2).next_power_of_two();
        TextIndex { slots: vec![(0, EMPTY); n_slots], len: 0, hasher: RandomState::new() }
    }

    pub fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Stores `id` under `hash` and returns `None`, or returns the id
    /// already stored for an equal key (`same(id)` true) and stores nothing.
    ///
    /// Panics when more ids than the capacity would be stored.
    pub fn insert(&mut self, hash: u64, id: u32, same: impl Fn(u32) -> bool) -> Option<u32> {
        debug_assert!(id != EMPTY);
        let empty = match self.probe(hash, same) {
            Ok(existing) => return Some(existing),
            Err(empty) => empty,
        };

        assert!(self.len * 2 < self.slots.len(), "TextIndex is full: more ids than its capacity");
        self.slots[empty] = (tag(hash), id);
        self.len += 1;
        None
    }

    /// Inserts ids `0..hashes.len()`, where `hashes[id]` is the hash of the
    /// key of `id` and `same(a, b)` returns whether ids `a` and `b` have equal
    /// keys. For an id whose key an earlier id already has, nothing is
    /// stored and `on_duplicate(id, earlier)` is called.
    ///
    /// The ids go in by home slot, so the table is written front to back
    /// instead of at random, which saves about a cache miss per id on a
    /// large vocabulary. Equal keys have equal hashes and so still go in by
    /// ascending id.
    pub fn insert_all(&mut self, hashes: &[u64], same: impl Fn(u32, u32) -> bool, mut on_duplicate: impl FnMut(u32, u32)) {
        for id in ids_by_home_slot(hashes, self.slots.len()) {
            let hash = hashes[id as usize];
            if let Some(earlier) = self.insert(hash, id, |other| same(other, id)) {
                on_duplicate(id, earlier);
            }
        }
    }

    /// Finds the id stored under `hash` for which `same(id)` is true.
    pub fn find(&self, hash: u64, same: impl Fn(u32) -> bool) -> Option<u32> {
        self.probe(hash, same).ok()
    }

    /// Walks the slots from `hash`'s home slot and returns the first stored
    /// id with `same(id)` true, or the index of the first empty slot.
    fn probe(&self, hash: u64, same: impl Fn(u32) -> bool) -> Result<u32, usize> {
        let tag = tag(hash);
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let (slot_tag, slot_id) = self.slots[i];
            if slot_id == EMPTY {
                return Err(i);
            }
            if slot_tag == tag && same(slot_id) {
                return Ok(slot_id);
            }
            i = (i + 1) & mask;
        }
    }
}

/// Returns the high bits of `hash`, which a slot keeps to skip most key
/// comparisons. The low bits choose the home slot.
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// Sorts ids `0..hashes.len()` by the top bits of their home slot in a
/// table of `n_slots` slots, keeping ascending ids within a bucket.
fn ids_by_home_slot(hashes: &[u64], n_slots: usize) -> Vec<u32> {
    const BUCKET_BITS: u32 = 10;
    let slot_bits = n_slots.trailing_zeros();
    let shift = slot_bits.saturating_sub(BUCKET_BITS);
    let n_buckets = 1usize << slot_bits.min(BUCKET_BITS);
    let bucket_of = |hash: u64| (hash as usize & (n_slots - 1)) >> shift;

    let mut starts = vec![0usize; n_buckets + 1];
    for &hash in hashes {
        starts[bucket_of(hash) + 1] += 1;
    }
    for b in 0..n_buckets {
        starts[b + 1] += starts[b];
    }

    let mut ids = vec![0u32; hashes.len()];
    for (id, &hash) in hashes.iter().enumerate() {
        let next = &mut starts[bucket_of(hash)];
        ids[*next] = id as u32;
        *next += 1;
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_finds_inserted_keys() {
        let keys = ["a", "b", "ab", "", "ü", "a b"];
        let mut index = TextIndex::with_capacity(keys.len());
        for (id, key) in keys.iter().enumerate() {
            let hash = index.hash(*key);
            assert_eq!(index.insert(hash, id as u32, |other| keys[other as usize] == *key), None);
        }

        for (id, key) in keys.iter().enumerate() {
            let found = index.find(index.hash(*key), |other| keys[other as usize] == *key);
            assert_eq!(found, Some(id as u32), "key {key:?}");
        }
        let missing = "ba";
        assert_eq!(index.find(index.hash(missing), |other| keys[other as usize] == missing), None);
    }

    #[test]
    fn index_insert_reports_duplicate() {
        let keys = ["x", "y", "x"];
        let mut index = TextIndex::with_capacity(keys.len());
        let mut results = Vec::new();
        for (id, key) in keys.iter().enumerate() {
            let hash = index.hash(*key);
            results.push(index.insert(hash, id as u32, |other| keys[other as usize] == *key));
        }
        assert_eq!(results, [None, None, Some(0)]);
    }

    #[test]
    fn insert_all_keeps_lowest_id() {
        let keys: Vec<String> = (0..5000).map(|i| format!("k{}", i % 3000)).collect();
        let mut index = TextIndex::with_capacity(keys.len());
        let hashes: Vec<u64> = keys.iter().map(|k| index.hash(k.as_str())).collect();
        let mut duplicates = Vec::new();
        index.insert_all(&hashes, |a, b| keys[a as usize] == keys[b as usize], |id, earlier| duplicates.push((id, earlier)));

        duplicates.sort_unstable();
        let expected: Vec<(u32, u32)> = (3000..5000).map(|id| (id, id - 3000)).collect();
        assert_eq!(duplicates, expected);
        for id in 0..3000u32 {
            let key = &keys[id as usize];
            let found = index.find(index.hash(key.as_str()), |other| keys[other as usize] == *key);
            assert_eq!(found, Some(id), "key {key}");
        }
    }

    #[test]
    fn index_survives_full_collisions() {
        // Every key under one hash: probing must still find each one.
        let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        let mut index = TextIndex::with_capacity(keys.len());
        for (id, key) in keys.iter().enumerate() {
            assert_eq!(index.insert(7, id as u32, |other| keys[other as usize] == *key), None);
        }
        for (id, key) in keys.iter().enumerate() {
            assert_eq!(index.find(7, |other| keys[other as usize] == *key), Some(id as u32));
        }
    }
}
