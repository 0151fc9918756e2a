//! Lock chains (lockdep's `lock_chain`) over the engine's classes. The programs report a chain
//! of their own classes once; several of theirs can be one of the engine's (locks classed by
//! acquisition site are merged per function here), so the engine keeps its own cache: a chain
//! already validated added all the dependencies it can, and when it comes back the engine only
//! bumps the counters of those dependencies.
//!
//! Like lockdep, the cache trusts the 64-bit hash: two different chains with the same key would
//! make the second skip validation. With a good mixer that takes billions of distinct chains.

use petgraph::graph::EdgeIndex;
use rustc_hash::FxHashMap;

/// Hash of the held-lock chain of one context, including the lock being acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChainKey(pub u64);

impl ChainKey {
    /// The key of an empty chain.
    pub const EMPTY: ChainKey = ChainKey(0);

    /// The key after acquiring a lock with identity `hlock_id` (class, read mode, trylock):
    /// the same iteration as the programs' (`tracer_common::chain`), over engine classes.
    #[inline]
    pub fn extend(self, hlock_id: u64) -> ChainKey {
        ChainKey(tracer_common::chain::extend(self.0, hlock_id))
    }
}

/// Validated chains, each with the dependencies its last acquisition exercises.
#[derive(Debug, Default)]
pub struct ChainCache {
    chains: FxHashMap<ChainKey, (u32, u32)>,
    edges: Vec<EdgeIndex>,
}

impl ChainCache {
    /// The dependencies of a validated chain, or `None` for a chain not seen yet.
    #[inline]
    pub fn get(&self, key: ChainKey) -> Option<&[EdgeIndex]> {
        self.chains
            .get(&key)
            .map(|&(start, len)| &self.edges[start as usize..(start + len) as usize])
    }

    /// Records a validated chain and its dependencies.
    pub fn insert(&mut self, key: ChainKey, edges: &[EdgeIndex]) {
        let start = self.edges.len() as u32;
        self.edges.extend_from_slice(edges);
        self.chains.insert(key, (start, edges.len() as u32));
    }

    /// Number of chains validated.
    pub fn len(&self) -> usize {
        self.chains.len()
    }

    /// True when no chain was validated yet.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_order_and_content() {
        let ab = ChainKey::EMPTY.extend(1).extend(2);
        let ba = ChainKey::EMPTY.extend(2).extend(1);
        assert_ne!(ab, ba);
        assert_eq!(ab, ChainKey::EMPTY.extend(1).extend(2));
        assert_ne!(ChainKey::EMPTY.extend(1), ChainKey::EMPTY);
    }

    #[test]
    fn cache_returns_recorded_edges() {
        let mut cache = ChainCache::default();
        let key = ChainKey::EMPTY.extend(5);
        assert!(cache.get(key).is_none());
        cache.insert(key, &[EdgeIndex::new(3), EdgeIndex::new(4)]);
        cache.insert(ChainKey::EMPTY.extend(6), &[]);
        assert_eq!(
            cache.get(key).unwrap(),
            &[EdgeIndex::new(3), EdgeIndex::new(4)]
        );
        assert_eq!(cache.len(), 2);
    }
}
