//! A map for the streams of one HTTP/2 connection: few at a time, and most often one.

use smallvec::SmallVec;

/// Entries sorted by key, found by binary search, the first two inline. A connection whose
/// client sends one request at a time (every HTTP/1.1 client's connection to an HTTP/2
/// server) then keeps its streams without an allocation per request, where a `BTreeMap`
/// allocates a node for its first entry and frees it with its last.
///
/// Keys mostly come rising (stream ids, the keys a codec hands out in order), so an insert is
/// mostly a push; a removal moves the entries after it, a short move for the hundred or so
/// streams a connection has at most by default. Emptied, a map lets go of any room it took
/// on the heap: an idle connection keeps none.
pub(crate) struct SmallMap<K, V> {
    entries: SmallVec<[(K, V); 2]>,
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        Self { entries: SmallVec::new() }
    }
}

impl<K: Ord + Copy, V> SmallMap<K, V> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where `key` is, or would go. The last entry (the newest stream) is looked at first.
    fn find(&self, key: &K) -> Result<usize, usize> {
        match self.entries.last() {
            Some((last, _)) if last == key => Ok(self.entries.len() - 1),
            Some((last, _)) if last < key => Err(self.entries.len()),
            _ => self.entries.binary_search_by(|(k, _)| k.cmp(key)),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_ok()
    }

    /// Insert `value` at `key`, returning the value it replaced.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.find(key).ok()?;
        let (_, value) = self.entries.remove(i);
        if self.entries.is_empty() && self.entries.spilled() {
            self.entries = SmallVec::new();
        }
        Some(value)
    }

    pub(crate) fn clear(&mut self) {
        self.entries = SmallVec::new();
    }

    /// Entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// The entries whose key is `from` or above, in key order.
    pub(crate) fn from(&self, from: &K) -> impl Iterator<Item = (&K, &V)> {
        let start = self.find(from).unwrap_or_else(|i| i);
        self.entries[start..].iter().map(|(k, v)| (k, v))
    }
}

impl<K, V> IntoIterator for SmallMap<K, V> {
    type Item = (K, V);
    type IntoIter = smallvec::IntoIter<[(K, V); 2]>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Every operation, against a `BTreeMap` doing the same: keys rising as stream ids do,
    /// then falling, then scattered.
    #[test]
    fn does_what_a_btree_map_does() {
        let orders: [Vec<u32>; 3] = [(1..40).collect(), (1..40).rev().collect(), (1..40).map(|i| i * 17 % 41).collect()];
        for keys in orders {
            let (mut ours, mut theirs) = (SmallMap::new(), BTreeMap::new());
            for (n, &key) in keys.iter().enumerate() {
                assert_eq!(ours.insert(key, n), theirs.insert(key, n));
                assert_eq!(ours.insert(key, n + 100), theirs.insert(key, n + 100), "replacing {key}");
                if n % 3 == 2 {
                    let gone = keys[n / 2];
                    assert_eq!(ours.remove(&gone), theirs.remove(&gone));
                    assert_eq!(ours.remove(&gone), None);
                }
                assert_eq!(ours.len(), theirs.len());
                assert!(ours.iter().eq(theirs.iter()));
                for probe in 0..42 {
                    assert_eq!(ours.get(&probe), theirs.get(&probe));
                    assert_eq!(ours.contains_key(&probe), theirs.contains_key(&probe));
                    assert!(ours.from(&probe).eq(theirs.range(probe..)), "from {probe}");
                }
            }
            for key in keys {
                assert_eq!(ours.remove(&key), theirs.remove(&key));
            }
            assert!(ours.is_empty());
        }
    }

    #[test]
    fn an_emptied_map_keeps_no_heap_room() {
        let mut map = SmallMap::new();
        for key in 0..10u32 {
            map.insert(key, key);
        }
        assert!(map.entries.spilled());
        for key in 0..10u32 {
            map.remove(&key);
        }
        assert!(!map.entries.spilled());
        map.insert(1, 1);
        map.insert(2, 2);
        assert!(!map.entries.spilled(), "two entries live inline");
    }
}
