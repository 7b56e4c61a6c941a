//! Recording: the hot path.
//!
//! Each thread keeps, per distinct key list of the subscribed views, a hash table from raw tag values to a
//! row holding this thread's own cell of each of those views. Recording a combination the thread has seen
//! is: one thread-local access, one atomic load (has the set of views changed?), then per key list one
//! gathering of the values, one hash and one probe, and per view a few relaxed stores into a cell no other
//! thread writes. No lock, no allocation, no read-modify-write. A combination new to the thread takes the
//! slow path once per view: it locks the view's row table, allocates the row and the cell, and caches them.
//!
//! The table is keyed by the values as given, before sanitizing, so a value that had to be fixed does not
//! take the slow path again: its cache entry points at the fixed row's cell and remembers to count the fix.
//!
//! When views are registered or unregistered, each thread drops its tables at its next record and starts
//! over: its old cells are then held by the registry alone, which folds them into the rows' totals.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hashbrown::HashTable;
use smallvec::SmallVec;

use super::cell::Cell;
use super::health;
use super::measure::{Measurement, Value};
use super::registry::{self, GENERATION, Subscriptions, ViewCollector};
use super::tag::{self, TagKey, TagMap, same_bytes};

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
    /// Per subscribed view (parallel to `subscriptions.views`): its key list in `keysets` and its place in
    /// that key list's views.
    slots: Vec<(u32, u32)>,
    keysets: Vec<LocalKeyset>,
    /// Per-thread random seed of [`hash_values`], so no one can aim values at one bucket.
    seed: u64,
}

/// The views of one key list, and this thread's rows of them.
struct LocalKeyset {
    keyset: u32,
    keys: Box<[TagKey]>,
    views: Vec<Arc<ViewCollector>>,
    rows: HashTable<LocalRow>,
}

struct LocalRow {
    hash: u64,
    /// The raw values, one per key.
    values: Box<[Option<Box<str>>]>,
    /// One per view of the key list, made on the view's first record of these values.
    cells: Box<[Option<LocalCell>]>,
}

struct LocalCell {
    cell: Arc<Cell>,
    /// A value was invalid and the row is the fixed one: count each record.
    fixed: bool,
}

impl LocalCell {
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

/// (key list, view within it, value): one per view a record feeds. Up to 16 live inline; a record feeding
/// more views than that (many views of the same measures) allocates this list on every call.
type Work = SmallVec<[(u32, u32, Value); 16]>;

impl LocalState {
    fn new() -> LocalState {
        LocalState {
            generation: 0,
            subscriptions: Arc::new(Subscriptions::default()),
            slots: Vec::new(),
            keysets: Vec::new(),
            seed: foldhash::fast::RandomState::default().hash_one(0x006f_636c_6179_6572_u64) | 1,
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
        let mut keysets: Vec<LocalKeyset> = Vec::new();
        let mut slots = Vec::with_capacity(subscriptions.views.len());
        for view in &subscriptions.views {
            let index = match keysets.iter().position(|k| k.keyset == view.keyset) {
                Some(i) => i,
                None => {
                    keysets.push(LocalKeyset {
                        keyset: view.keyset,
                        keys: view.keys.clone(),
                        views: Vec::new(),
                        rows: HashTable::new(),
                    });
                    keysets.len() - 1
                }
            };
            let views = &mut keysets[index].views;
            views.push(Arc::clone(view));
            slots.push((index as u32, (views.len() - 1) as u32));
        }
        self.keysets = keysets;
        self.slots = slots;
        self.generation = subscriptions.generation;
        self.subscriptions = subscriptions;
    }

    fn record<S: TagSource + ?Sized>(&mut self, measurements: &[Measurement<'_>], tags: &S) {
        self.sync();
        let LocalState { subscriptions, slots, keysets, seed, .. } = self;
        let mut work = Work::new();
        for m in measurements {
            let value = match m.value {
                Value::Float(v) if !v.is_finite() => {
                    health::count_invalid_measurement(m.measure.name);
                    continue;
                }
                v => v,
            };
            for &i in subscriptions.views_of(m.measure.id()) {
                let (keyset, view) = slots[i];
                work.push((keyset, view, value));
            }
        }
        // Views sharing a key list (the usual case: a layer's views) share one gathering, hash and probe.
        work.sort_unstable_by_key(|&(keyset, _, _)| keyset);
        let mut values = Values::new();
        for run in work.chunk_by(|a, b| a.0 == b.0) {
            let LocalKeyset { keys, views, rows, .. } = &mut keysets[run[0].0 as usize];
            values.clear();
            for key in keys.iter() {
                values.push(tags.get(key));
            }
            let hash = hash_values(*seed, &values);
            let same = |row: &LocalRow| {
                row.values.iter().zip(values.iter()).all(|(a, b)| match (a, b) {
                    (Some(a), Some(b)) => same_bytes(a.as_bytes(), b.as_bytes()),
                    (None, None) => true,
                    _ => false,
                })
            };
            let row = match rows.find_entry(hash, same) {
                Ok(found) => found.into_mut(),
                Err(absent) => absent
                    .into_table()
                    .insert_unique(hash, new_row(hash, &values, views.len()), |r| r.hash)
                    .into_mut(),
            };
            for &(_, view, value) in run {
                let slot = &mut row.cells[view as usize];
                match slot {
                    Some(cell) => cell.apply(value),
                    None => slot.insert(attach(&views[view as usize], &values)).apply(value),
                }
            }
        }
    }
}

#[cold]
#[inline(never)]
fn new_row(hash: u64, values: &[Option<&str>], views: usize) -> LocalRow {
    LocalRow {
        hash,
        values: values.iter().map(|v| v.map(Box::from)).collect(),
        cells: (0..views).map(|_| None).collect(),
    }
}

#[cold]
#[inline(never)]
fn attach(view: &ViewCollector, values: &[Option<&str>]) -> LocalCell {
    let (cell, fixed) = view.attach(values);
    LocalCell { cell, fixed }
}

/// A hash of one key list's values, built for the short strings tag values are: each value is read as at
/// most two overlapping words (or 16-byte blocks beyond that) and mixed in with a folded multiply, the core
/// of wyhash and foldhash. The length goes in too, so ("ab", "c") and ("a", "bc") differ.
#[inline]
fn hash_values(seed: u64, values: &[Option<&str>]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    // Values are combined with cheap, invertible steps (xor, rotate, add); two folded multiplies at the end
    // spread every input bit over the result, which is all a hash table needs.
    let (mut x, mut y) = (seed, seed ^ K);
    for value in values {
        let (a, b) = match value {
            None => (K, K),
            Some(s) => words(s.as_bytes()),
        };
        let len = value.map_or(u64::MAX, |s| s.len() as u64);
        x = (x ^ a).rotate_left(29).wrapping_add(len);
        y = (y ^ b).rotate_left(37).wrapping_add(x);
    }
    fold_mul(fold_mul(x, y ^ K), seed)
}

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Two words that together depend on every byte of `b`.
#[inline]
fn words(b: &[u8]) -> (u64, u64) {
    fn word(s: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    }
    fn half(s: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&s[at..at + 4]);
        u64::from(u32::from_le_bytes(w))
    }
    let n = b.len();
    match n {
        0 => (0, 0),
        1..4 => (u64::from(b[0]) << 16 | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]), 0),
        4..8 => (half(b, 0), half(b, n - 4)),
        8..=16 => (word(b, 0), word(b, n - 8)),
        _ => {
            // Longer values (paths): 16 bytes at a time, the last block overlapping.
            let (mut x, mut y) = (0u64, 0u64);
            let mut at = 0;
            while at + 16 < n {
                x = fold_mul(x ^ word(b, at), y ^ word(b, at + 8) ^ 0x2d35_8dcc_aa6c_78a5);
                y = y.rotate_left(23) ^ x;
                at += 16;
            }
            (x ^ word(b, n - 16), y ^ word(b, n - 8))
        }
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
    use super::hash_values;

    #[test]
    fn hash_separates_lengths_order_and_absence() {
        let long = "/api/v1/organizations/{org}/projects/{project}/members";
        let longer = "/api/v1/organizations/{org}/projects/{project}/memberz";
        let cases: [&[Option<&str>]; 10] = [
            &[Some("ab"), Some("c")],
            &[Some("a"), Some("bc")],
            &[Some("c"), Some("ab")],
            &[None, Some("abc")],
            &[Some("abc"), None],
            &[Some(""), Some("abc")],
            &[Some(long)],
            &[Some(longer)],
            &[Some("0123456789abcdefg")],
            &[Some("0123456789abcdefh")],
        ];
        let hashes: Vec<u64> = cases.iter().map(|c| hash_values(12345, c)).collect();
        for (i, a) in hashes.iter().enumerate() {
            for (j, b) in hashes.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{:?} and {:?} collide", cases[i], cases[j]);
            }
        }
        assert_eq!(hash_values(1, &[Some("x")]), hash_values(1, &[Some("x")]));
        assert_ne!(hash_values(1, &[Some("x")]), hash_values(2, &[Some("x")]), "the seed matters");
    }
}
