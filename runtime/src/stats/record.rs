//! Recording: the hot path.
//!
//! Each thread keeps, per distinct key list of the subscribed views, its rows: the raw tag values and this
//! thread's own cell of each view of that key list. Recording a combination the thread has seen is: one
//! thread-local access, one atomic load (has the set of views changed?), then per key list the record
//! touches, finding the row once, and per view a few relaxed stores into a cell no other thread writes. No
//! lock, no allocation, no read-modify-write.
//!
//! Finding the row first compares the values with the row this key list used last on this thread: a
//! handler records the same route, method and status many times in a row, and a few byte comparisons are
//! cheaper than hashing. Otherwise the values are hashed and looked up. A combination new to the thread
//! takes the slow path once per view: it locks the view's row table, allocates the row and the cell, and
//! keeps them.
//!
//! The layers' records go one step shorter ([`record_shaped`]): their measures and tag keys are fixed (a
//! [`Shape`]), so each thread keeps, per shape, the values of its two most recent tag sets and the cells
//! each wrote (two: a pipe's backend calls alternate between two upstreams); a record with the same values as
//! either checks the registry's generation, compares the values and writes those cells.
//! Only records whose every view splits by the shape's own keys get one (a view that also splits by a tag of
//! the current context needs the general path). An annotated call's tags are all `&'static str`s (patterns,
//! method names, status digits), and [`record_shaped_static`] compares those by address and length: a
//! `'static` string's bytes never change and its memory is never reused, so the same address and length is
//! the same value. A hit is then the shape check, the generation, two words per tag and the cell updates
//! (a count is one increment; a distribution's update is inlined).
//!
//! The rows are keyed by the values as given, before sanitizing, so a value that had to be fixed does not
//! take the slow path again: its cell is the fixed row's cell and remembers to count the fix.
//!
//! When views are registered or unregistered, each thread drops its rows at its next record and starts
//! over: its old cells are then held by the registry alone, which folds them into the rows' totals.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hashbrown::HashTable;
use smallvec::SmallVec;

use super::cell::Cell;
use super::health;
use super::measure::{MeasureCore, Measurement, Value};
use super::registry::{self, GENERATION, ViewCollector};
use super::tag::{MAX_TAG_LEN, TagKey, TagMap, same_bytes};

/// Where a record's tag values come from.
pub(crate) trait TagSource {
    /// The value of `key`, the `at`-th key of the key list being gathered: sources listed in the key
    /// list's order (as the layers pass them) answer without a search.
    fn get(&self, key: &TagKey, at: usize) -> Option<&str>;
}

impl TagSource for TagMap {
    #[inline]
    fn get(&self, key: &TagKey, _at: usize) -> Option<&str> {
        TagMap::get(self, key)
    }
}

impl TagSource for [(&TagKey, &str)] {
    #[inline]
    fn get(&self, key: &TagKey, at: usize) -> Option<&str> {
        if let Some((k, v)) = <[_]>::get(self, at)
            && k.same(key)
        {
            return Some(v);
        }
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
    fn get(&self, key: &TagKey, at: usize) -> Option<&str> {
        self.own.get(key, at).or_else(|| self.context.get(key))
    }
}

/// What the stats keep per thread, in one thread-local so a record reaches both with one access.
pub(super) struct ThreadStats {
    /// The tags of whatever runs on this thread now: swapped in and out by [`super::WithTags`] around each
    /// poll.
    pub(super) tags: RefCell<TagMap>,
    local: RefCell<LocalState>,
}

thread_local! {
    pub(super) static THREAD: ThreadStats = const {
        ThreadStats { tags: RefCell::new(TagMap::new()), local: RefCell::new(LocalState::new()) }
    };
}

/// The current tags while they are being swapped, which no record sees in practice.
static NO_TAGS: TagMap = TagMap::new();

struct LocalState {
    /// The registry's [`GENERATION`] this state was built from; 0, which no registration publishes, until
    /// the first record after a registration.
    generation: u64,
    /// Per measure id: the range of `targets` it feeds.
    by_measure: Vec<(u32, u32)>,
    /// (key list in `keysets`, view within it), grouped by measure.
    targets: Vec<(u32, u32)>,
    keysets: Vec<LocalKeyset>,
    /// Numbers records, so a key list knows whether it found its row for the current one already.
    epoch: u64,
    /// Per-thread random seed of [`hash_values`], so no one can aim values at one bucket.
    seed: u64,
    /// Per [`Shape`] slot: the cells its recent records landed in.
    shortcuts: [ShapeShortcuts; SHAPE_SLOTS],
}

/// How many [`Shape`]s a thread remembers a shortcut for: one per layer.
pub(crate) const SHAPE_SLOTS: usize = 3;

/// A record whose measures and tag keys never change from one call to the next: a layer's. Each thread
/// remembers, per shape, the tag values of its recent records and the cells they landed in, so a record
/// with the same values (a handler records the same route, method and status many times in a row) compares
/// the values and writes the cells, skipping the walk from measure to views to key lists to rows.
pub(crate) struct Shape<const M: usize, const K: usize> {
    /// The shortcut slot, below [`SHAPE_SLOTS`]; each shape has its own.
    slot: usize,
    measures: [&'static MeasureCore; M],
    keys: &'static [TagKey; K],
}

impl<const M: usize, const K: usize> Shape<M, K> {
    /// A shape with its own `slot` (below [`SHAPE_SLOTS`]; others take the general path), recording values
    /// of `measures` tagged with values of `keys`.
    pub(crate) const fn new(
        slot: usize,
        measures: [&'static MeasureCore; M],
        keys: &'static [TagKey; K],
    ) -> Self {
        Shape { slot, measures, keys }
    }

    /// What identifies this shape in a [`Shortcut`]: shapes are statics, so their addresses stay theirs.
    fn address(&'static self) -> usize {
        std::ptr::from_ref(self).addr()
    }
}

/// What a thread remembers of a shape's last record.
struct Shortcut {
    /// The address of the shape it was made for: a slot given to two shapes (a mistake) must never write
    /// one shape's values into the other's cells, only miss.
    shape: usize,
    /// The [`LocalState::generation`] the cells belong to; 0 when there is no shortcut.
    generation: u64,
    /// The tag values, one per key of the shape. Kept as strings that are cleared and refilled, so switching
    /// between values seen before does not allocate.
    values: Vec<String>,
    /// Per value (for shapes of at most [`STATIC_KEYS`] keys), the address and length of a `&'static str`
    /// holding the same bytes, or `(0, 0)` (no `str` starts at address 0). A `'static` string's bytes never
    /// change and its memory is never reused, so a value at the same address with the same length holds the
    /// same bytes: [`record_shaped_static`] compares two words per value instead of the bytes. Only ever
    /// set from `&'static str`s, and reset whenever `values` changes.
    statics: [(usize, usize); STATIC_KEYS],
    /// Every cell the record wrote, with the index of the measurement written into it.
    cells: Vec<(usize, Arc<Cell>)>,
    /// How many of those cells are a fixed row's (a tag value was invalid): each record counts each fix, as
    /// the general path does.
    fixed: u32,
}

/// How many tag sets a thread remembers per shape: two, so that a pipe whose two backend calls run on one
/// thread, one after the other in every request (the demo gateway's users and orders), finds both.
const WAYS: usize = 2;

/// A shape's shortcuts on one thread.
struct ShapeShortcuts {
    ways: [Shortcut; WAYS],
    /// The way the last hit or remake used: a remake replaces another one.
    recent: usize,
    /// Records of the shape that missed every way since a way was last made.
    misses: u32,
}

impl ShapeShortcuts {
    const fn new() -> ShapeShortcuts {
        ShapeShortcuts { ways: [const { Shortcut::new() }; WAYS], recent: 0, misses: 0 }
    }

    /// A way that holds nothing for the shape at `shape`: an unused one (never made, or cleared) first, so
    /// that two shapes given one slot (a mistake) keep a way each rather than take turns at one; else
    /// another shape's.
    fn empty(&self, shape: usize) -> Option<usize> {
        let unused = self.ways.iter().position(|way| way.generation == 0);
        unused.or_else(|| self.ways.iter().position(|way| way.shape != shape))
    }

    /// The way to remake for the shape at `shape`: an empty one, else the one after the way used last.
    fn empty_or_other(&self, shape: usize) -> usize {
        self.empty(shape).unwrap_or((self.recent + 1) % WAYS)
    }
}

/// The most keys of a shape whose values [`record_shaped_static`] recognises by address: the layers have
/// at most four. Longer shapes compare bytes.
const STATIC_KEYS: usize = 4;

/// No `&'static str` known for a value.
const NO_STATIC: (usize, usize) = (0, 0);

/// The address and length of `value`, which identify its bytes if it is `'static`.
#[inline]
fn identity(value: &str) -> (usize, usize) {
    (value.as_ptr().addr(), value.len())
}

/// A shape's shortcuts that miss are remade from every this many misses, not from each: when a thread's
/// records rotate between more combinations than the shortcuts hold (many endpoints served by one thread),
/// remaking one each time (copying values, taking and releasing cells) would cost more than it saves.
const REMAKE_EVERY: u32 = 8;

impl Shortcut {
    const fn new() -> Shortcut {
        Shortcut {
            shape: 0,
            generation: 0,
            values: Vec::new(),
            statics: [NO_STATIC; STATIC_KEYS],
            cells: Vec::new(),
            fixed: 0,
        }
    }

    /// Forgets the cells: no record takes the shortcut until it is made again.
    fn clear(&mut self) {
        self.generation = 0;
        self.statics = [NO_STATIC; STATIC_KEYS];
        self.cells.clear();
        self.fixed = 0;
    }

    /// Whether `tags` hold the bytes of the kept values.
    #[inline(always)]
    fn same_values<const K: usize>(&self, tags: &[&str; K]) -> bool {
        let Some(kept) = self.values.get(..K) else { return false };
        // A loop rather than `all` over a zip, which was left out of line as a closure.
        for (kept, tag) in kept.iter().zip(tags) {
            if !same_bytes(kept.as_bytes(), tag.as_bytes()) {
                return false;
            }
        }
        true
    }

    /// Whether `tags`, all `&'static str` in a static record, are the kept values: by address where the
    /// shortcut knows one, else by bytes, then remembering their addresses for the next record.
    #[inline(always)]
    fn same_statics<const K: usize, const STATIC: bool>(&mut self, tags: &[&str; K]) -> bool {
        if !STATIC || K > STATIC_KEYS {
            return self.same_values(tags);
        }
        if tags.iter().zip(&self.statics).all(|(tag, kept)| identity(tag) == *kept) {
            return true;
        }
        self.learn_statics(tags)
    }

    /// [`same_statics`](Self::same_statics) when an address differs.
    #[inline(never)]
    fn learn_statics<const K: usize>(&mut self, tags: &[&str; K]) -> bool {
        if !self.same_values(tags) {
            return false;
        }
        // Same bytes elsewhere: the shortcut was made from borrowed values, or from another static with the
        // same text.
        for (kept, tag) in self.statics.iter_mut().zip(tags) {
            *kept = identity(tag);
        }
        true
    }
}

/// The views of one key list, and this thread's rows of them.
struct LocalKeyset {
    keys: Box<[TagKey]>,
    views: Vec<Arc<ViewCollector>>,
    rows: Vec<LocalRow>,
    /// `rows` by hash of their values.
    index: HashTable<u32>,
    /// The row the last record through this key list used (`rows` is empty until the first), and that
    /// record's epoch.
    row: u32,
    epoch: u64,
}

struct LocalRow {
    hash: u64,
    /// The raw values, one per key.
    values: Box<[Option<Box<str>>]>,
    /// One per view of the key list, made on the view's first record of these values.
    cells: Box<[Option<LocalCell>]>,
}

impl LocalRow {
    #[inline]
    fn holds(&self, values: &[Option<&str>]) -> bool {
        self.values.iter().zip(values).all(|(a, b)| same_value(a.as_deref(), *b))
    }
}

#[inline]
fn same_value(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_bytes(a.as_bytes(), b.as_bytes()),
        (None, None) => true,
        _ => false,
    }
}

#[derive(Clone)]
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

/// Most views have a handful of keys; more are gathered on the heap when a combination is looked up by hash.
const INLINE_KEYS: usize = 8;

impl LocalState {
    const fn new() -> LocalState {
        LocalState {
            generation: 0,
            by_measure: Vec::new(),
            targets: Vec::new(),
            keysets: Vec::new(),
            epoch: 0,
            seed: 0,
            shortcuts: [const { ShapeShortcuts::new() }; SHAPE_SLOTS],
        }
    }

    /// Records through one of `shape`'s shortcuts if one of this thread's recent records of the shape had
    /// the same values and the views have not changed since; `false`, having recorded nothing, otherwise.
    /// `STATIC`: every tag is a `&'static str` (see [`Shortcut::statics`]).
    #[inline(always)]
    fn record_shortcut<const M: usize, const K: usize, const STATIC: bool>(
        &mut self,
        shape: &'static Shape<M, K>,
        values: &[Value; M],
        tags: &[&str; K],
    ) -> bool {
        let Some(slot) = self.shortcuts.get_mut(shape.slot) else { return false };
        // The shortcut holds its cells, so it stays right while the views do: a registration publishes a
        // new generation (and the refresh it causes empties every shortcut). Non-finite values are counted
        // and dropped by the general path.
        //
        // The values as distributions take them are read field by field up front: copying a `Value` whole
        // (as passing it by value did) read its two fields, just stored apart, as one 16-byte load, which
        // the CPU cannot forward from two stores: it waits for them to reach the cache (20 ns against 12.5
        // for the same record through the byte-comparing path, with 60 fewer instructions). An integer is
        // finite as a float.
        let floats: [f64; M] = std::array::from_fn(|i| values[i].as_f64());
        if !floats.iter().all(|v| v.is_finite()) {
            return false;
        }
        let generation = GENERATION.load(Ordering::Acquire);
        for (way, shortcut) in slot.ways.iter_mut().enumerate() {
            if shortcut.shape != shape.address()
                || shortcut.generation != generation
                || !shortcut.same_statics::<K, STATIC>(tags)
            {
                continue;
            }
            for (m, cell) in &shortcut.cells {
                if let (Some(value), Some(&float)) = (values.get(*m), floats.get(*m)) {
                    cell.record_inline(value, float);
                }
            }
            if shortcut.fixed > 0 {
                count_fixes(shortcut.fixed);
            }
            slot.recent = way;
            return true;
        }
        false
    }

    /// Remembers the cells the record just made through the general path wrote, as one of `shape`'s
    /// shortcuts: an empty way, else not the one used last. A shape whose views also split by keys it does
    /// not pass (keys the current tags supply) gets none: its rows depend on more than its values.
    fn remember<const M: usize, const K: usize, const STATIC: bool>(
        &mut self,
        shape: &'static Shape<M, K>,
        tags: &[&str; K],
    ) {
        let LocalState { by_measure, targets, keysets, epoch, shortcuts, generation, .. } = self;
        let Some(slot) = shortcuts.get_mut(shape.slot) else { return };
        let way = slot.empty_or_other(shape.address());
        slot.recent = way;
        slot.misses = 0;
        let shortcut = &mut slot.ways[way];
        shortcut.shape = shape.address();
        shortcut.clear();
        for (at, measure) in shape.measures.iter().enumerate() {
            let Some(&(start, end)) = by_measure.get(measure.id() as usize) else { continue };
            for &(k, view) in targets.get(start as usize..end as usize).unwrap_or_default() {
                let Some(keyset) = keysets.get(k as usize) else { return };
                let covered = keyset.keys.iter().all(|key| shape.keys.iter().any(|k| k.same(key)));
                // A key list the record did not reach (its value was dropped as non-finite) has no row for
                // these values yet.
                if !covered || keyset.epoch != *epoch {
                    return;
                }
                let cell = keyset.rows.get(keyset.row as usize).and_then(|row| row.cells.get(view as usize));
                let Some(Some(LocalCell { cell, fixed })) = cell else {
                    shortcut.clear();
                    return;
                };
                shortcut.cells.push((at, Arc::clone(cell)));
                shortcut.fixed += u32::from(*fixed);
            }
        }
        // Room for any valid value from the start, so that remaking the shortcut never allocates: its first
        // record (which makes rows and cells) is the only one of a shape that may. A longer value (to be
        // fixed) gets no shortcut.
        shortcut.values.resize_with(K, || String::with_capacity(MAX_TAG_LEN));
        if tags.iter().any(|tag| tag.len() > MAX_TAG_LEN) {
            shortcut.clear();
            return;
        }
        for (kept, tag) in shortcut.values.iter_mut().zip(tags) {
            kept.clear();
            kept.push_str(tag);
        }
        if STATIC && K <= STATIC_KEYS {
            for (kept, tag) in shortcut.statics.iter_mut().zip(tags) {
                *kept = identity(tag);
            }
        }
        shortcut.generation = *generation;
    }

    #[cold]
    fn refresh(&mut self) {
        if self.seed == 0 {
            self.seed = foldhash::fast::RandomState::default().hash_one(0x006f_636c_6179_6572_u64) | 1;
        }
        let subscriptions = registry::subscriptions();
        let mut keysets: Vec<(u32, LocalKeyset)> = Vec::new();
        // Per subscribed view: its key list in `keysets` and its place in that key list's views.
        let mut slots = Vec::with_capacity(subscriptions.views.len());
        for view in &subscriptions.views {
            let index = match keysets.iter().position(|(id, _)| *id == view.keyset) {
                Some(i) => i,
                None => {
                    keysets.push((
                        view.keyset,
                        LocalKeyset {
                            keys: view.keys.clone(),
                            views: Vec::new(),
                            rows: Vec::new(),
                            index: HashTable::new(),
                            row: 0,
                            epoch: 0,
                        },
                    ));
                    keysets.len() - 1
                }
            };
            let views = &mut keysets[index].1.views;
            views.push(Arc::clone(view));
            slots.push((index as u32, (views.len() - 1) as u32));
        }
        let mut by_measure = Vec::with_capacity(subscriptions.measures());
        let mut targets = Vec::with_capacity(slots.len());
        for id in 0..subscriptions.measures() {
            let start = targets.len() as u32;
            targets.extend(subscriptions.views_of(id as u32).iter().map(|&i| slots[i]));
            by_measure.push((start, targets.len() as u32));
        }
        // The shortcuts point at the old cells, which the registry folds into its totals once it holds them
        // alone.
        for shortcut in self.shortcuts.iter_mut().flat_map(|slot| &mut slot.ways) {
            shortcut.clear();
        }
        self.keysets = keysets.into_iter().map(|(_, k)| k).collect();
        self.by_measure = by_measure;
        self.targets = targets;
        self.generation = subscriptions.generation;
    }

    // Always inlined: with two callers (the general path and a shape's first record) it was left out of line,
    // which cost the general path ~30 instructions of calls and spills per record.
    #[inline(always)]
    fn record<S: TagSource + ?Sized>(&mut self, measurements: &[Measurement<'_>], tags: &S) {
        if GENERATION.load(Ordering::Acquire) != self.generation {
            self.refresh();
        }
        self.epoch += 1;
        let LocalState { by_measure, targets, keysets, epoch, seed, .. } = self;
        for m in measurements {
            let value = match m.value {
                Value::Float(v) if !v.is_finite() => {
                    health::count_invalid_measurement(m.measure.name);
                    continue;
                }
                v => v,
            };
            let Some(&(start, end)) = by_measure.get(m.measure.id() as usize) else { continue };
            for &(keyset, view) in targets.get(start as usize..end as usize).unwrap_or_default() {
                let Some(keyset) = keysets.get_mut(keyset as usize) else { continue };
                // Views sharing a key list (the usual case: a layer's views) share one finding of the row.
                if keyset.epoch != *epoch {
                    keyset.find_row(tags, *seed);
                    keyset.epoch = *epoch;
                }
                keyset.apply(view as usize, value);
            }
        }
    }
}

impl LocalKeyset {
    /// Points `row` at the row of the record's values, making it if new.
    #[inline]
    fn find_row<S: TagSource + ?Sized>(&mut self, tags: &S, seed: u64) {
        // Compared value by value, stopping at the first difference. (Gathering the values into an array
        // while comparing, to spare a miss asking the sources again, made the hit slower.)
        if let Some(last) = self.rows.get(self.row as usize)
            && self
                .keys
                .iter()
                .zip(last.values.iter())
                .enumerate()
                .all(|(at, (key, value))| same_value(tags.get(key, at), value.as_deref()))
        {
            return;
        }
        self.look_up(tags, seed);
    }

    /// [`find_row`](Self::find_row) when the values differ from the last record's.
    #[inline(never)]
    fn look_up<S: TagSource + ?Sized>(&mut self, tags: &S, seed: u64) {
        let mut inline = [None; INLINE_KEYS];
        let spilled: Vec<Option<&str>>;
        let values: &[Option<&str>] = match inline.get_mut(..self.keys.len()) {
            Some(values) => {
                for (at, (value, key)) in values.iter_mut().zip(self.keys.iter()).enumerate() {
                    *value = tags.get(key, at);
                }
                values
            }
            None => {
                spilled = self.keys.iter().enumerate().map(|(at, key)| tags.get(key, at)).collect();
                &spilled
            }
        };
        let hash = hash_values(seed, values);
        let LocalKeyset { rows, index, views, .. } = self;
        let found = index.find(hash, |&i| rows.get(i as usize).is_some_and(|row| row.holds(values)));
        self.row = match found {
            Some(&i) => i,
            None => {
                let i = u32::try_from(rows.len()).unwrap_or(u32::MAX);
                rows.push(new_row(hash, values, views.len()));
                index.insert_unique(hash, i, |&i| rows.get(i as usize).map_or(0, |row| row.hash));
                i
            }
        };
    }

    /// Adds `value` to `view`'s cell of the current row.
    #[inline]
    fn apply(&mut self, view: usize, value: Value) {
        let LocalKeyset { rows, views, row, .. } = self;
        let Some(row) = rows.get_mut(*row as usize) else { return };
        let Some(slot) = row.cells.get_mut(view) else { return };
        match slot {
            Some(cell) => cell.apply(value),
            None => {
                if let Some(collector) = views.get(view) {
                    slot.insert(attach(collector, &row.values)).apply(value);
                }
            }
        }
    }
}

/// Counts `n` records into fixed rows (see [`LocalCell::fixed`]).
#[cold]
#[inline(never)]
fn count_fixes(n: u32) {
    for _ in 0..n {
        health::count_invalid_tag_value();
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
fn attach(view: &ViewCollector, values: &[Option<Box<str>>]) -> LocalCell {
    let values: SmallVec<[Option<&str>; INLINE_KEYS]> = values.iter().map(|v| v.as_deref()).collect();
    let (cell, fixed) = view.attach(&values);
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
    let recorded = THREAD.try_with(|thread| {
        let context = thread.tags.try_borrow();
        let context = context.as_deref().unwrap_or(&NO_TAGS);
        match thread.local.try_borrow_mut() {
            Ok(mut local) => {
                local.record(measurements, &Layered { own, context });
                true
            }
            // Re-entered from inside a record (a log subscriber that records, say).
            Err(_) => false,
        }
    });
    // `Err`: the thread is exiting and its state is gone.
    if !matches!(recorded, Ok(true)) {
        health::count_dropped_records(measurements.len());
    }
}

/// Records `values` of a layer's measures (one per measure of `shape`, in order), tagged with `tags` (one
/// per key of `shape`, in order) and the current tags for keys the shape lacks: [`record_with_tags`] with a
/// per-thread shortcut for tags repeated from the shape's last record.
pub(crate) fn record_shaped<const M: usize, const K: usize>(
    shape: &'static Shape<M, K>,
    values: [Value; M],
    tags: [&str; K],
) {
    record_shaped_as::<M, K, false>(shape, &values, &tags);
}

/// [`record_shaped`] for tag values that live as long as the program (a layer's pattern, method and status
/// strings): a repeat is recognised by the values' addresses, without comparing their bytes.
#[inline]
pub(crate) fn record_shaped_static<const M: usize, const K: usize>(
    shape: &'static Shape<M, K>,
    values: [Value; M],
    tags: [&'static str; K],
) {
    record_shaped_as::<M, K, true>(shape, &values, &tags);
}

#[inline(always)]
fn record_shaped_as<const M: usize, const K: usize, const STATIC: bool>(
    shape: &'static Shape<M, K>,
    values: &[Value; M],
    tags: &[&str; K],
) {
    let recorded = THREAD.try_with(|thread| match thread.local.try_borrow_mut() {
        Ok(mut local) => {
            if !local.record_shortcut::<M, K, STATIC>(shape, values, tags) {
                record_shape_slowly::<M, K, STATIC>(thread, &mut local, shape, values, tags);
            }
            true
        }
        // Re-entered from inside a record (a log subscriber that records, say).
        Err(_) => false,
    });
    // `Err`: the thread is exiting and its state is gone.
    if !matches!(recorded, Ok(true)) {
        health::count_dropped_records(M);
    }
}

/// [`record_shaped`] without the shortcut, which it then makes.
#[inline(never)]
fn record_shape_slowly<const M: usize, const K: usize, const STATIC: bool>(
    thread: &ThreadStats,
    local: &mut LocalState,
    shape: &'static Shape<M, K>,
    values: &[Value; M],
    tags: &[&str; K],
) {
    let context = thread.tags.try_borrow();
    let context = context.as_deref().unwrap_or(&NO_TAGS);
    let own: [(&TagKey, &str); K] = std::array::from_fn(|i| (&shape.keys[i], tags[i]));
    let measurements: [Measurement<'_>; M] =
        std::array::from_fn(|i| Measurement { measure: shape.measures[i], value: values[i] });
    local.record(&measurements, &Layered { own: &own[..], context });
    let remake = match local.shortcuts.get_mut(shape.slot) {
        Some(slot) => {
            slot.misses += 1;
            slot.empty(shape.address()).is_some() || slot.misses >= REMAKE_EVERY
        }
        None => false,
    };
    if remake {
        local.remember::<M, K, STATIC>(shape, tags);
    }
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
