//! Recording: the hot path.
//!
//! Each thread keeps, per subscribed view, a hash table from raw tag values to its own cell of that row.
//! Recording a combination the thread has seen is: one thread-local access, one atomic load (has the set of
//! views changed?), and per view a hash, a probe and a few relaxed stores into a cell no other thread writes.
//! No lock, no allocation, no read-modify-write. A combination new to the thread takes the slow path once:
//! it locks the view's row table, allocates the row and the cell, and caches them.
//!
//! The table is keyed by the values as given, before sanitizing, so a value that had to be fixed does not
//! take the slow path again: its cache entry points at the fixed row's cell and remembers to count the fix.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hashbrown::HashTable;
use smallvec::SmallVec;

use super::cell::Cell;
use super::health;
use super::measure::{Measurement, Value};
use super::registry::{self, GENERATION, Subscriptions, ViewCollector};
use super::tag::{self, TagKey, TagMap};

/// Where a record's tag values come from.
pub(crate) trait TagSource {
    fn get(&self, key: &TagKey) -> Option<&str>;
}

impl TagSource for TagMap {
    #[inline]
    fn get(&self, key: &TagKey) -> Option<&str> {
        TagMap::get(self, key)
    }
}

impl TagSource for [(&TagKey, &str)] {
    #[inline]
    fn get(&self, key: &TagKey) -> Option<&str> {
        self.iter().find(|(k, _)| k.same(key)).map(|(_, v)| *v)
    }
}

/// The record's own tags, then the current context's.
struct Layered<'a, S: ?Sized> {
    own: &'a S,
    context: &'a TagMap,
}

impl<S: TagSource + ?Sized> TagSource for Layered<'_, S> {
    #[inline]
    fn get(&self, key: &TagKey) -> Option<&str> {
        self.own.get(key).or_else(|| self.context.get(key))
    }
}

thread_local! {
    static LOCAL: RefCell<LocalState> = RefCell::new(LocalState::new());
}

struct LocalState {
    generation: u64,
    subscriptions: Arc<Subscriptions>,
    /// Parallel to `subscriptions.views`.
    views: Vec<LocalView>,
    hasher: foldhash::fast::RandomState,
}

struct LocalView {
    collector: Arc<ViewCollector>,
    rows: HashTable<LocalRow>,
}

struct LocalRow {
    hash: u64,
    /// The raw values, one per view key.
    values: Box<[Option<Box<str>>]>,
    cell: Arc<Cell>,
    /// A value was invalid and the row is the fixed one: count each record.
    fixed: bool,
}

impl LocalRow {
    #[inline]
    fn apply(&self, value: Value) {
        self.cell.record(value);
        if self.fixed {
            health::count_invalid_tag_value();
        }
    }
}

/// Most views have a handful of keys; more spill to the heap on every record of that view.
type Values<'a> = SmallVec<[Option<&'a str>; 8]>;

impl LocalState {
    fn new() -> LocalState {
        LocalState {
            generation: 0,
            subscriptions: Arc::new(Subscriptions::default()),
            views: Vec::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    #[inline]
    fn sync(&mut self) {
        if GENERATION.load(Ordering::Acquire) != self.generation {
            self.refresh();
        }
    }

    #[cold]
    fn refresh(&mut self) {
        let subscriptions = registry::subscriptions();
        let mut old = std::mem::take(&mut self.views);
        self.views = subscriptions
            .views
            .iter()
            .map(|collector| match old.iter().position(|v| v.collector.id == collector.id) {
                // Same registration: keep the cached rows.
                Some(i) => old.swap_remove(i),
                None => LocalView { collector: Arc::clone(collector), rows: HashTable::new() },
            })
            .collect();
        self.generation = subscriptions.generation;
        self.subscriptions = subscriptions;
    }

    fn record<S: TagSource + ?Sized>(&mut self, measurements: &[Measurement<'_>], tags: &S) {
        self.sync();
        let LocalState { subscriptions, views, hasher, .. } = self;
        // Views sharing a key list (the usual case: a layer's views) share one gathering and hash.
        let mut gathered = Gathered { keyset: None, values: SmallVec::new(), hash: 0 };
        for m in measurements {
            let value = match m.value {
                Value::Float(v) if !v.is_finite() => {
                    health::count_invalid_measurement(m.measure.name);
                    continue;
                }
                v => v,
            };
            for &i in subscriptions.views_of(m.measure.id()) {
                let view = &mut views[i];
                let keyset = view.collector.keyset;
                if gathered.keyset != Some(keyset) {
                    gathered.values.clear();
                    for key in view.collector.keys.iter() {
                        gathered.values.push(tags.get(key));
                    }
                    gathered.hash = hash_values(hasher, &gathered.values);
                    gathered.keyset = Some(keyset);
                }
                view.record(value, &gathered.values, gathered.hash);
            }
        }
    }
}

/// Byte equality, inline for the short strings tag values usually are (a call to `memcmp` per value costs
/// more than the comparison): two overlapping word loads compare up to 16 bytes.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn word(s: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    }
    fn half(s: &[u8], at: usize) -> u32 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&s[at..at + 4]);
        u32::from_ne_bytes(w)
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..4 => a == b,
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// One key list's values in a record, and their hash.
struct Gathered<'t> {
    keyset: Option<u32>,
    values: Values<'t>,
    hash: u64,
}

#[inline]
fn hash_values(hasher: &foldhash::fast::RandomState, values: &[Option<&str>]) -> u64 {
    let mut h = hasher.build_hasher();
    for value in values {
        match value {
            // The length first, so ("ab", "c") and ("a", "bc") differ.
            Some(s) => {
                h.write_usize(s.len());
                h.write(s.as_bytes());
            }
            None => h.write_usize(usize::MAX),
        }
    }
    h.finish()
}

impl LocalView {
    #[inline]
    fn record(&mut self, value: Value, values: &[Option<&str>], hash: u64) {
        let same = |row: &LocalRow| {
            row.values.iter().zip(values).all(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => same_bytes(a.as_bytes(), b.as_bytes()),
                (None, None) => true,
                _ => false,
            })
        };
        if let Some(row) = self.rows.find(hash, same) {
            row.apply(value);
            return;
        }
        self.insert(hash, values).apply(value);
    }

    #[cold]
    #[inline(never)]
    fn insert(&mut self, hash: u64, values: &[Option<&str>]) -> &LocalRow {
        let (cell, fixed) = self.collector.attach(values);
        let row = LocalRow { hash, values: values.iter().map(|v| v.map(Box::from)).collect(), cell, fixed };
        self.rows.insert_unique(hash, row, |r| r.hash).into_mut()
    }
}

fn record_from<S: TagSource + ?Sized>(measurements: &[Measurement<'_>], own: &S) {
    tag::with_current(|context| {
        let tags = Layered { own, context };
        let recorded = LOCAL.try_with(|local| match local.try_borrow_mut() {
            Ok(mut local) => {
                local.record(measurements, &tags);
                true
            }
            // Re-entered from inside a record (a log subscriber that records, say).
            Err(_) => false,
        });
        if !matches!(recorded, Ok(true)) {
            health::count_dropped_records(measurements.len());
        }
    });
}

/// Records `measurements` into every registered view of their measures, tagged with `tags` and, for keys
/// `tags` lacks, the current tags (see [`with_tags`](super::with_tags)).
///
/// Never blocks and, once this thread has recorded the same tag values before, never allocates. NaN and
/// infinite values are dropped and counted ([`health::invalid_measurements`]). Stats are not sampled: record
/// whether or not the request is traced.
pub fn record(measurements: &[Measurement<'_>], tags: &TagMap) {
    record_from(measurements, tags);
}

/// Like [`record`], with tag values borrowed from the caller: nothing is copied unless the combination is
/// new to this thread. This is what the layers use.
///
/// ```
/// use oclayer_runtime::stats::{self, Int64Measure, TagKey};
///
/// static BYTES: Int64Measure = Int64Measure::new("example.com/bytes", "Bytes sent", "By");
/// const PEER: TagKey = TagKey::from_static("peer");
///
/// stats::record_with_tags(&[BYTES.m(512)], &[(&PEER, "users-api")]);
/// ```
pub fn record_with_tags(measurements: &[Measurement<'_>], tags: &[(&TagKey, &str)]) {
    record_from(measurements, tags);
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn short_string_equality_matches_slice_equality() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abce",
            "abcdefg",
            "abcdefh",
            "abcdefgh",
            "/users/{id}",
            "/users/{ix}",
            "/users/{id}/x",
            "0123456789abcdef",
            "0123456789abcdeF",
            "0123456789abcdefg",
            "0123456789abcdefh",
        ];
        for a in words {
            for b in words {
                assert_eq!(same_bytes(a.as_bytes(), b.as_bytes()), a == b, "{a:?} vs {b:?}");
            }
        }
    }
}
