//! The registry: measures by name, registered views and their rows. Everything here runs off the hot path
//! (registration, a thread's first record of a new tag combination, reports) and may lock and allocate.
//!
//! Recording threads never read the registry directly: they keep their own copy of the subscriptions and
//! refresh it when [`GENERATION`] moves, which registration and unregistration bump.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::cell::{Accumulator, Cell, CellKind};
use super::measure::{CONFLICTING_MEASURE, MeasureCore};
use super::tag::{TagKey, sanitize_value};
use super::view::View;
use super::view_data::{MeasureDescriptor, Row, ViewData, ViewDescriptor};
use crate::Error;

/// Bumped (under the registry lock) each time the set of registered views changes.
pub(crate) static GENERATION: AtomicU64 = AtomicU64::new(0);

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| {
    Mutex::new(Registry {
        measures: HashMap::new(),
        views: BTreeMap::new(),
        keysets: Vec::new(),
        subscriptions: Arc::new(Subscriptions::default()),
    })
});

fn registry() -> MutexGuard<'static, Registry> {
    // A panic while holding the lock cannot leave the maps half-updated in a way that matters more than
    // losing stats altogether, so keep going.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Registry {
    /// Measure name -> (id, the descriptor of the first measure of that name).
    measures: HashMap<String, (u32, MeasureDescriptor)>,
    views: BTreeMap<String, Arc<ViewCollector>>,
    /// Distinct tag-key lists of views; a view's `keyset` is an index here.
    keysets: Vec<Box<[TagKey]>>,
    subscriptions: Arc<Subscriptions>,
}

/// Which views each measure feeds, as recording threads copy it.
#[derive(Default)]
pub(crate) struct Subscriptions {
    pub(crate) generation: u64,
    pub(crate) views: Vec<Arc<ViewCollector>>,
    /// Measure id -> indices into `views`.
    by_measure: Vec<Vec<usize>>,
}

impl Subscriptions {
    #[inline]
    pub(crate) fn views_of(&self, measure_id: u32) -> &[usize] {
        self.by_measure.get(measure_id as usize).map_or(&[], Vec::as_slice)
    }

    /// One more than the largest measure id with views.
    pub(crate) fn measures(&self) -> usize {
        self.by_measure.len()
    }
}

impl Registry {
    fn intern(&mut self, descriptor: &MeasureDescriptor) -> Result<u32, MeasureDescriptor> {
        if let Some((id, first)) = self.measures.get(descriptor.name.as_ref()) {
            return if first == descriptor { Ok(*id) } else { Err(first.clone()) };
        }
        // Ids start at 1: 0 means "not interned yet" in a measure's cache.
        let id = u32::try_from(self.measures.len() + 1).unwrap_or(CONFLICTING_MEASURE);
        self.measures.insert(descriptor.name.to_string(), (id, descriptor.clone()));
        Ok(id)
    }

    fn keyset(&mut self, keys: &[TagKey]) -> u32 {
        let found = self
            .keysets
            .iter()
            .position(|k| k.len() == keys.len() && k.iter().zip(keys).all(|(a, b)| a.same(b)));
        let index = found.unwrap_or_else(|| {
            self.keysets.push(keys.into());
            self.keysets.len() - 1
        });
        u32::try_from(index).unwrap_or(u32::MAX)
    }

    fn publish(&mut self) {
        let generation = GENERATION.load(Ordering::Relaxed) + 1;
        let views: Vec<Arc<ViewCollector>> = self.views.values().cloned().collect();
        let mut by_measure: Vec<Vec<usize>> = Vec::new();
        for (i, view) in views.iter().enumerate() {
            let id = view.measure_id as usize;
            if by_measure.len() <= id {
                by_measure.resize_with(id + 1, Vec::new);
            }
            by_measure[id].push(i);
        }
        self.subscriptions = Arc::new(Subscriptions { generation, views, by_measure });
        // Release: a thread that sees the new number finds the new subscriptions under the lock.
        GENERATION.store(generation, Ordering::Release);
    }
}

/// The registry id of `measure`, interning its name on first use. A measure that disagrees with the first
/// one of its name gets [`CONFLICTING_MEASURE`], which no view subscribes to.
pub(crate) fn intern_measure(measure: &MeasureCore) -> u32 {
    let descriptor = measure.descriptor();
    match registry().intern(&descriptor) {
        Ok(id) => id,
        Err(first) => {
            tracing::warn!(
                measure = %descriptor.name,
                "measure declared twice with different definitions ({first:?} first, then {descriptor:?}); \
                 the second one's records are dropped: give it another name or the same description, unit and type"
            );
            CONFLICTING_MEASURE
        }
    }
}

/// The current subscriptions, for a thread whose copy is older than [`GENERATION`].
pub(crate) fn subscriptions() -> Arc<Subscriptions> {
    Arc::clone(&registry().subscriptions)
}

/// Registers `views`: all of them or, on error, none.
///
/// A view already registered under the same name with the same definition is left as it is (its data and
/// start time continue).
///
/// # Errors
/// [`Error::View`] when a view is invalid (name, duplicate tag keys, bucket bounds), when its name is taken
/// by a different definition, or when its measure's name is taken by a measure with another description,
/// unit or type.
pub fn register(views: &[View]) -> Result<(), Error> {
    let mut reg = registry();
    let mut added: Vec<(&View, CellKind, u32)> = Vec::new();
    for view in views {
        let kind = view.validate()?;
        let name = view.name();
        let conflict = |other: &ViewDescriptor| Error::View {
            name: name.to_owned(),
            message: format!(
                "already registered with a different definition ({other:?}); unregister it first or use \
                 another name"
            ),
        };
        if let Some(existing) = reg.views.get(name) {
            if *existing.descriptor == view.descriptor {
                continue;
            }
            return Err(conflict(&existing.descriptor));
        }
        if let Some((other, _, _)) = added.iter().find(|(v, _, _)| v.name() == name) {
            if other.descriptor == view.descriptor {
                continue;
            }
            return Err(conflict(&other.descriptor));
        }
        let measure_id = reg.intern(&view.descriptor.measure).map_err(|first| Error::View {
            name: name.to_owned(),
            message: format!(
                "its measure `{}` differs from the measure of that name already in use ({first:?}); \
                 use the same definition or another measure name",
                view.descriptor.measure.name
            ),
        })?;
        added.push((view, kind, measure_id));
    }
    if added.is_empty() {
        return Ok(());
    }
    let start = SystemTime::now();
    for (view, kind, measure_id) in added {
        let keyset = reg.keyset(&view.keys);
        let collector = ViewCollector {
            keyset,
            descriptor: Arc::new(view.descriptor.clone()),
            keys: view.keys.clone().into_boxed_slice(),
            measure_id,
            kind,
            start,
            rows: Mutex::new(BTreeMap::new()),
        };
        reg.views.insert(view.name().to_owned(), Arc::new(collector));
    }
    reg.publish();
    Ok(())
}

/// Stops collecting `name` and forgets its data; returns whether it was registered. Registering it again
/// starts from zero with a new start time.
pub fn unregister(name: &str) -> bool {
    let mut reg = registry();
    let removed = reg.views.remove(name).is_some();
    if removed {
        reg.publish();
    }
    removed
}

/// The definitions of every registered view, by name.
pub fn registered_views() -> Vec<Arc<ViewDescriptor>> {
    registry().views.values().map(|v| Arc::clone(&v.descriptor)).collect()
}

/// Every registered view, for a report.
pub(crate) fn collectors() -> Vec<Arc<ViewCollector>> {
    registry().views.values().cloned().collect()
}

/// The collector of `name`, if registered.
pub(crate) fn collector(name: &str) -> Option<Arc<ViewCollector>> {
    registry().views.get(name).cloned()
}

/// One row's tag values, sanitized; ordered so reports list rows in a stable order.
type RowKey = Vec<Option<Arc<str>>>;

/// A row's cells: one per thread that recorded it (one in all for last values), and what cells of finished
/// threads added up to.
#[derive(Default)]
struct RowEntry {
    retired: Option<Accumulator>,
    cells: Vec<Arc<Cell>>,
}

/// A registered view while it collects.
pub(crate) struct ViewCollector {
    pub(crate) descriptor: Arc<ViewDescriptor>,
    pub(crate) keys: Box<[TagKey]>,
    /// Equal for views with equal key lists, so a record gathers and hashes their values once.
    pub(crate) keyset: u32,
    measure_id: u32,
    kind: CellKind,
    start: SystemTime,
    rows: Mutex<BTreeMap<RowKey, RowEntry>>,
}

impl ViewCollector {
    fn rows(&self) -> MutexGuard<'_, BTreeMap<RowKey, RowEntry>> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A cell for a thread's first record of `values` (raw, one per key). Returns the cell and whether a
    /// value had to be fixed. The cell is kept here too, so the reporter reads it.
    pub(crate) fn attach(&self, values: &[Option<&str>]) -> (Arc<Cell>, bool) {
        let mut fixed = false;
        let key: RowKey = values
            .iter()
            .map(|v| {
                v.map(|v| {
                    let clean = sanitize_value(v);
                    fixed |= matches!(clean, std::borrow::Cow::Owned(_));
                    Arc::from(&*clean)
                })
            })
            .collect();
        let mut rows = self.rows();
        let entry = rows.entry(key).or_default();
        if self.kind.shared_per_row()
            && let Some(cell) = entry.cells.first()
        {
            return (Arc::clone(cell), fixed);
        }
        let cell = Arc::new(self.kind.new_cell());
        entry.cells.push(Arc::clone(&cell));
        (cell, fixed)
    }

    /// The view's data now. Cells whose thread is gone are folded into their row's total and released.
    pub(crate) fn view_data(&self, end: SystemTime) -> ViewData {
        let mut rows = self.rows();
        let mut out = Vec::with_capacity(rows.len());
        for (key, entry) in rows.iter_mut() {
            let mut total = entry.retired.clone();
            let kind = &self.kind;
            let mut retired = entry.retired.take();
            entry.cells.retain(|cell| {
                // Only the registry holds it: its thread ended (or dropped the view), so it never changes
                // again. Decided *before* reading, or records made between the read and the check would be
                // lost with the cell. Last-value cells are shared and kept: they are one per row anyway.
                let finished = !kind.shared_per_row() && Arc::strong_count(cell) == 1;
                if finished {
                    // Pairs with the Release of the owner's drop of its `Arc`: its last writes are visible.
                    fence(Ordering::Acquire);
                }
                let Some(acc) = cell.read(kind) else { return true };
                fold(&mut total, acc.clone());
                if finished {
                    fold(&mut retired, acc);
                }
                !finished
            });
            entry.retired = retired;
            // `None`: a last value not set yet.
            if let Some(acc) = total {
                out.push(Row { tags: key.clone(), data: acc.into_data() });
            }
        }
        ViewData { view: Arc::clone(&self.descriptor), start: self.start, end, rows: out }
    }
}

fn fold(total: &mut Option<Accumulator>, acc: Accumulator) {
    match total {
        Some(t) => t.merge(acc),
        None => *total = Some(acc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Aggregation, AggregationData, Int64Measure, record_with_tags};

    /// A panic while the registry or a view's rows are locked (a bug, an allocation failure) must not stop
    /// stats: later records, registrations and reports take the locks through the poison, and the counts
    /// stay exact.
    #[test]
    fn poisoned_locks_keep_counting_exactly() {
        static M: Int64Measure = Int64Measure::new("test/poisoned", "requests", "1");
        let count = |name: &'static str| View::new(name, "test view", &M, &[], Aggregation::Count);
        register(&[count("test/poisoned/count")]).expect("a valid view");
        record_with_tags(&[M.m(1)], &[]);
        let collector = collector("test/poisoned/count").expect("registered");
        let held = Arc::clone(&collector);
        let poisoner = std::thread::spawn(move || {
            let _registry = registry();
            let _rows = held.rows();
            panic!("a bug while holding the stats locks");
        });
        assert!(poisoner.join().is_err());
        assert!(REGISTRY.is_poisoned() && collector.rows.is_poisoned());

        // This thread's cell exists; a new thread must attach one under the poisoned rows lock.
        record_with_tags(&[M.m(1)], &[]);
        std::thread::spawn(|| record_with_tags(&[M.m(1)], &[])).join().expect("recording does not panic");
        register(&[count("test/poisoned/later")]).expect("registering still works");
        record_with_tags(&[M.m(1)], &[]);

        assert_eq!(counts("test/poisoned/count"), vec![AggregationData::Count(4)]);
        assert_eq!(counts("test/poisoned/later"), vec![AggregationData::Count(1)]);
    }

    fn counts(name: &str) -> Vec<AggregationData> {
        let data = collector(name).expect("registered").view_data(SystemTime::now());
        data.rows.into_iter().map(|row| row.data).collect()
    }
}
