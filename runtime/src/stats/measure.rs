//! Measures: what is measured (name, meaning, unit), declared once as a `static` and recorded many times.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

use super::view_data::{MeasureDescriptor, MeasureKind};

mod sealed {
    pub trait Sealed {}
    impl Sealed for i64 {}
    impl Sealed for f64 {}
}

/// The value types a [`Measure`] can record: `i64` and `f64`.
pub trait MeasureValue: Copy + sealed::Sealed + 'static {
    /// The kind views and exporters see.
    const KIND: MeasureKind;

    #[doc(hidden)]
    fn into_value(self) -> Value;
}

impl MeasureValue for i64 {
    const KIND: MeasureKind = MeasureKind::Int64;
    fn into_value(self) -> Value {
        Value::Int(self)
    }
}

impl MeasureValue for f64 {
    const KIND: MeasureKind = MeasureKind::Float64;
    fn into_value(self) -> Value {
        Value::Float(self)
    }
}

/// One recorded value, of the measure's kind.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// From an `i64` measure.
    Int(i64),
    /// From an `f64` measure.
    Float(f64),
}

impl Value {
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Value::Int(v) => v as f64,
            Value::Float(v) => v,
        }
    }

    pub(crate) fn as_i64(self) -> i64 {
        match self {
            Value::Int(v) => v,
            // Only a float measure's views get float values, and they aggregate as floats; kept total.
            Value::Float(v) => v as i64,
        }
    }
}

/// A quantity to record, e.g. a request's latency in ms.
///
/// Declare measures as `static` items (not `const`: the measure caches its registry id on first use, and a
/// `const` would be a fresh copy at every use site):
///
/// ```
/// use oclayer_runtime::stats::Float64Measure;
///
/// static LATENCY: Float64Measure = Float64Measure::new("example.com/latency", "Time to answer", "ms");
/// ```
///
/// Two measures with the same name are the same measure, and must then agree on description, unit and
/// kind: a measure that disagrees with the first one of its name is reported once and its records dropped.
pub struct Measure<T> {
    pub(crate) core: MeasureCore,
    _kind: PhantomData<fn() -> T>,
}

/// An `i64` measure (counts, bytes).
pub type Int64Measure = Measure<i64>;
/// An `f64` measure (latencies in ms).
pub type Float64Measure = Measure<f64>;

/// The part of a measure that does not depend on its value type.
pub(crate) struct MeasureCore {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) unit: &'static str,
    pub(crate) kind: MeasureKind,
    /// The registry's id for this name; 0 until first used. See [`super::registry`].
    id: AtomicU32,
}

/// The id of a measure whose descriptor conflicts with the first measure of its name: never subscribed.
pub(crate) const CONFLICTING_MEASURE: u32 = u32::MAX;

impl MeasureCore {
    pub(crate) fn descriptor(&self) -> MeasureDescriptor {
        MeasureDescriptor {
            name: Cow::Borrowed(self.name),
            description: Cow::Borrowed(self.description),
            unit: Cow::Borrowed(self.unit),
            kind: self.kind,
        }
    }

    /// The registry id; a relaxed load once the measure was used.
    #[inline]
    pub(crate) fn id(&self) -> u32 {
        let id = self.id.load(Ordering::Relaxed);
        if id != 0 {
            return id;
        }
        let id = super::registry::intern_measure(self);
        self.id.store(id, Ordering::Relaxed);
        id
    }
}

impl<T: MeasureValue> Measure<T> {
    /// A measure named `name` (e.g. `opencensus.io/http/server/latency`), described in words, in `unit`:
    /// `"1"` for counts, `"By"` for bytes, `"ms"` for milliseconds (UCUM, as OpenCensus uses it).
    pub const fn new(name: &'static str, description: &'static str, unit: &'static str) -> Self {
        Measure {
            core: MeasureCore { name, description, unit, kind: T::KIND, id: AtomicU32::new(0) },
            _kind: PhantomData,
        }
    }

    /// The measure's name.
    pub fn name(&self) -> &'static str {
        self.core.name
    }

    /// The measure's description.
    pub fn description(&self) -> &'static str {
        self.core.description
    }

    /// The measure's unit.
    pub fn unit(&self) -> &'static str {
        self.core.unit
    }

    /// Name, description, unit and kind, as views and exporters see them.
    pub fn descriptor(&self) -> MeasureDescriptor {
        self.core.descriptor()
    }

    /// A measurement of `value`, to pass to [`record`](super::record()).
    #[inline]
    pub fn m(&self, value: T) -> Measurement<'_> {
        Measurement { measure: &self.core, value: value.into_value() }
    }
}

impl<T> std::fmt::Debug for Measure<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measure")
            .field("name", &self.core.name)
            .field("unit", &self.core.unit)
            .field("kind", &self.core.kind)
            .finish()
    }
}

/// A value of one measure, ready to record.
#[derive(Clone, Copy)]
pub struct Measurement<'a> {
    pub(crate) measure: &'a MeasureCore,
    pub(crate) value: Value,
}

impl Measurement<'_> {
    /// The measure's name.
    pub fn measure_name(&self) -> &'static str {
        self.measure.name
    }
}

impl std::fmt::Debug for Measurement<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measurement")
            .field("measure", &self.measure.name)
            .field("value", &self.value)
            .finish()
    }
}
