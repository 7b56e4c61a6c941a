//! Views: which measure to aggregate, broken down by which tag keys, and how. A view collects only while
//! registered.

use std::borrow::Cow;
use std::sync::Arc;

use super::cell::{BucketIndex, CellKind};
use super::measure::{Measure, MeasureValue};
use super::tag::{MAX_TAG_LEN, TagKey};
use super::view_data::{Aggregation, ViewDescriptor};
use crate::Error;

impl Aggregation {
    /// A distribution over `bounds` (strictly increasing and finite; checked when the view is registered).
    pub fn distribution(bounds: &[f64]) -> Aggregation {
        Aggregation::Distribution { bounds: bounds.into() }
    }
}

/// A view definition, to pass to [`register`](super::register).
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub(crate) descriptor: ViewDescriptor,
    pub(crate) keys: Vec<TagKey>,
}

impl View {
    /// A view named `name` (e.g. `opencensus.io/http/server/latency`) aggregating `measure` by `tag_keys`
    /// (in this order: it is the order of each row's values).
    pub fn new<T: MeasureValue>(
        name: impl Into<Cow<'static, str>>,
        description: impl Into<Cow<'static, str>>,
        measure: &Measure<T>,
        tag_keys: &[TagKey],
        aggregation: Aggregation,
    ) -> View {
        View {
            descriptor: ViewDescriptor {
                name: name.into(),
                description: description.into(),
                measure: measure.descriptor(),
                tag_keys: tag_keys.iter().map(|k| Cow::Owned(k.as_str().to_owned())).collect(),
                aggregation,
            },
            keys: tag_keys.to_vec(),
        }
    }

    /// The view's name.
    pub fn name(&self) -> &str {
        &self.descriptor.name
    }

    /// The definition as exporters see it.
    pub fn descriptor(&self) -> &ViewDescriptor {
        &self.descriptor
    }

    /// Checks the definition; returns what its cells aggregate.
    pub(crate) fn validate(&self) -> Result<CellKind, Error> {
        let d = &self.descriptor;
        let err = |message: String| Error::View { name: d.name.to_string(), message };
        if d.name.is_empty()
            || d.name.len() > MAX_TAG_LEN
            || !d.name.bytes().all(|b| (b' '..=b'~').contains(&b))
        {
            return Err(err("a view name must be 1 to 255 bytes of printable ASCII".to_owned()));
        }
        for (i, key) in self.keys.iter().enumerate() {
            if self.keys[..i].iter().any(|k| k.same(key)) {
                return Err(err(format!("tag key `{key}` is listed twice; list each key once")));
            }
        }
        Ok(match &d.aggregation {
            Aggregation::Count => CellKind::Count,
            Aggregation::Sum => CellKind::Sum(d.measure.kind),
            Aggregation::LastValue => CellKind::LastValue(d.measure.kind),
            Aggregation::Distribution { bounds } => {
                if let Some(i) = bounds.iter().position(|b| !b.is_finite()) {
                    return Err(err(format!("bucket bound #{i} is {}; bounds must be finite", bounds[i])));
                }
                if let Some(i) = bounds.windows(2).position(|w| w[0] >= w[1]) {
                    return Err(err(format!(
                        "bucket bounds must be strictly increasing, but bound #{} ({}) is not above #{} ({})",
                        i + 1,
                        bounds[i + 1],
                        i,
                        bounds[i]
                    )));
                }
                CellKind::Distribution(Arc::new(BucketIndex::new(Arc::clone(bounds))))
            }
        })
    }
}
