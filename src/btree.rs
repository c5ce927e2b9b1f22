//! Filling the B-tree collections (`BTreeMap`, `BTreeSet`, serde_json's
//! `Map`) from an iterator.
//!
//! Their `FromIterator` gathers the items into a `Vec` and sorts it before
//! building the tree, and that stable sort is compiled anew for every call
//! site (4–5 KiB of code each; the 18 sites we had cost 84 KiB of the
//! static binary). [`collect`] inserts the items one by one instead,
//! through the collection's own `insert`, which every map already has.
//! The result is the same: items in key order, and of equal keys the last
//! one's value.

/// `items.collect()` into a B-tree collection, by inserting each item.
pub fn collect<C: Default + Extend<T>, T>(items: impl IntoIterator<Item = T>) -> C {
    let mut out = C::default();
    out.extend(items);
    out
}
