//! A map kept as a list sorted by key, for the supervisor's maps of a few
//! entries: processes, jobs and instances by name or index, a job's runs,
//! running hooks and hook counters, heartbeats (configurations, counts,
//! due times), the plan's dependency lists and stop times.
//!
//! Each key/value type pair of a `BTreeMap` compiles its own insert,
//! remove and rebalancing code, 3–8 KiB of the static binary a pair
//! (docs/performance.md); a binary search over a `Vec` is a few hundred
//! bytes. The maps hold an entry per process, job or instance: a lookup
//! is a binary search, as in a B-tree, and an insert moves the entries
//! after it (instances come in index order, so at the end).
//!
//! Invariants:
//! - Entries are sorted by key, keys unique: iteration is in key order, as
//!   a `BTreeMap`'s, and two maps with the same entries are equal.

use std::borrow::Borrow;
use std::ops::{Bound, RangeBounds};

#[derive(Debug, Clone, PartialEq, Eq)]
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

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.0.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.0.iter_mut().map(|(_, v)| v)
    }

    /// The entries whose keys are in `keys`, in key order.
    pub fn range(&self, keys: impl RangeBounds<K>) -> impl Iterator<Item = (&K, &V)> {
        let (from, to) = self.bounds(&keys);
        self.0[from..to].iter().map(|(k, v)| (k, v))
    }

    pub fn range_mut(&mut self, keys: impl RangeBounds<K>) -> impl Iterator<Item = (&K, &mut V)> {
        let (from, to) = self.bounds(&keys);
        self.0[from..to].iter_mut().map(|(k, v)| (&*k, v))
    }

    /// The positions `keys` spans, as a slice's bounds.
    fn bounds(&self, keys: &impl RangeBounds<K>) -> (usize, usize) {
        let below = |bound: Bound<&K>, past_equal: bool| match bound {
            Bound::Unbounded => None,
            Bound::Included(k) | Bound::Excluded(k) => Some(
                self.0
                    .partition_point(|(x, _)| x < k || (past_equal && x == k)),
            ),
        };
        let from = match keys.start_bound() {
            b @ Bound::Excluded(_) => below(b, true),
            b => below(b, false),
        }
        .unwrap_or(0);
        let to = match keys.end_bound() {
            b @ Bound::Included(_) => below(b, true),
            b => below(b, false),
        }
        .unwrap_or(self.0.len());
        (from, to.max(from))
    }
}

impl<'a, K, V> IntoIterator for &'a SortedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// As a JSON object (a map's keys are strings there), in key order.
impl<K: serde::Serialize, V: serde::Serialize> serde::Serialize for SortedMap<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
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

    #[test]
    fn ranges_take_the_keys_a_btree_map_would() {
        let m: SortedMap<u32, u32> = (1..=5).map(|i| (i * 2, i)).collect(); // 2, 4, …, 10
        let b: std::collections::BTreeMap<u32, u32> = m.iter().map(|(k, v)| (*k, *v)).collect();
        let keys = |it: &mut dyn Iterator<Item = u32>| it.collect::<Vec<u32>>();
        for (lo, hi) in [
            (0, 11),
            (2, 10),
            (3, 9),
            (4, 4),
            (5, 5),
            (10, 10),
            (11, 20),
            (7, 3),
        ] {
            if lo > hi {
                // A BTreeMap panics on a reversed range; this one is empty.
                assert_eq!(m.range(lo..hi).count(), 0);
                continue;
            }
            assert_eq!(
                keys(&mut m.range(lo..hi).map(|(k, _)| *k)),
                keys(&mut b.range(lo..hi).map(|(k, _)| *k)),
                "{lo}..{hi}"
            );
            assert_eq!(
                keys(&mut m.range(lo..=hi).map(|(k, _)| *k)),
                keys(&mut b.range(lo..=hi).map(|(k, _)| *k)),
                "{lo}..={hi}"
            );
            assert_eq!(
                keys(&mut m.range(lo..).map(|(k, _)| *k)),
                keys(&mut b.range(lo..).map(|(k, _)| *k)),
                "{lo}.."
            );
            assert_eq!(
                keys(&mut m.range(..=hi).map(|(k, _)| *k)),
                keys(&mut b.range(..=hi).map(|(k, _)| *k)),
                "..={hi}"
            );
        }
        let mut m = m;
        for (_, v) in m.range_mut(5..) {
            *v = 0;
        }
        for v in m.values_mut().take(1) {
            *v += 100;
        }
        let all: Vec<(u32, u32)> = m.iter_mut().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(all, [(2, 101), (4, 2), (6, 0), (8, 0), (10, 0)]);
    }
}
