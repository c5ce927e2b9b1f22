//! A map kept as a list sorted by key, for the few entries keyed by
//! process name that heartbeats keep (configurations, counts, due times).
//!
//! Each key/value type pair of a `BTreeMap` compiles its own insert,
//! remove and rebalancing code, 3–5 KiB of the static binary a pair
//! (docs/performance.md); a binary search over a `Vec` is a few hundred
//! bytes. A map holds one entry per process with a heartbeat, so a lookup
//! is a handful of comparisons and an insert moves a handful of entries.
//!
//! Invariants:
//! - Entries are sorted by key, keys unique: iteration is in key order, as
//!   a `BTreeMap`'s, and two maps with the same entries are equal.

use std::borrow::Borrow;

#[derive(Debug, Clone, PartialEq)]
pub struct SortedMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap(Vec::new())
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }

    pub fn get_key_value<Q: Ord + ?Sized>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| (&self.0[i].0, &self.0[i].1))
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Set `key` to `value`; the value it had, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// The value of `key`, inserted from `make` when there is none.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (key, make()));
                i
            }
        };
        &mut self.0[i].1
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

/// Inserts each item: of equal keys the last one's value stays, as with
/// a `BTreeMap`.
impl<K: Ord, V> Extend<(K, V)> for SortedMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, items: I) {
        for (k, v) in items {
            self.insert(k, v);
        }
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SortedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(items: I) -> Self {
        let mut m = SortedMap::default();
        m.extend(items);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_btree_map() {
        let mut m: SortedMap<String, u32> = ["b", "a", "c", "a"]
            .into_iter()
            .zip(1..)
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        // Key order; of the two "a", the last value.
        assert_eq!(
            m.keys().map(String::as_str).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(m.get("a"), Some(&4));
        assert_eq!(m.insert("b".into(), 9), Some(1));
        assert_eq!(m.insert("d".into(), 5), None);
        *m.get_or_insert_with("e".into(), || 0) += 1;
        *m.get_or_insert_with("e".into(), || 0) += 1;
        assert_eq!(m.get("e"), Some(&2));
        assert_eq!(m.remove("c"), Some(3));
        assert_eq!(m.remove("c"), None);
        m.retain(|k, _| k != "d");
        let all: Vec<(&str, u32)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(all, [("a", 4), ("b", 9), ("e", 2)]);
        assert!(m.contains_key("e") && !m.contains_key("d"));
        assert_eq!((m.len(), m.values().sum::<u32>()), (3, 15));
        let same: SortedMap<String, u32> = all.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(m, same);
        m.clear();
        assert!(m.is_empty());
    }
}
