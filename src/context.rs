//! The per-context routing state Python keeps in a `ContextVar`, as a frozen class
//! the read path can inspect without running Python code.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::clock::monotonic;

/// One context's routing state. Immutable: `replace()` makes a changed copy.
#[pyclass(frozen, module = "replica_router._core")]
#[derive(Clone, Debug, Default)]
pub struct RouteState {
    /// Depth of `use_primary()` blocks.
    #[pyo3(get)]
    pub primary_depth: u32,
    /// Inside a unit of work (a request or `unit_of_work()`).
    #[pyo3(get)]
    pub unit: bool,
    /// A write happened in this unit: reads go to the primary until it ends.
    #[pyo3(get)]
    pub pinned: bool,
    /// Outside a unit: reads go to the primary until this `time.monotonic()`.
    #[pyo3(get)]
    pub pin_until: f64,
    /// Read-your-writes token: the primary's WAL position after the client's last write.
    #[pyo3(get)]
    pub min_lsn: Option<u64>,
}

impl RouteState {
    #[inline]
    pub fn pinned_now(&self) -> bool {
        self.pinned || (self.pin_until > 0.0 && monotonic() < self.pin_until)
    }
}

const FIELDS: [&str; 5] = ["primary_depth", "unit", "pinned", "pin_until", "min_lsn"];

#[pymethods]
impl RouteState {
    #[new]
    #[pyo3(signature = (*, primary_depth=0, unit=false, pinned=false, pin_until=0.0, min_lsn=None))]
    fn new(
        primary_depth: u32,
        unit: bool,
        pinned: bool,
        pin_until: f64,
        min_lsn: Option<u64>,
    ) -> Self {
        RouteState {
            primary_depth,
            unit,
            pinned,
            pin_until,
            min_lsn,
        }
    }

    /// A copy with the given fields changed.
    #[pyo3(signature = (**changes))]
    fn replace(&self, changes: Option<&Bound<'_, PyDict>>) -> PyResult<RouteState> {
        let mut next = self.clone();
        if let Some(changes) = changes {
            for (key, value) in changes.iter() {
                let key: String = key.extract()?;
                match key.as_str() {
                    "primary_depth" => next.primary_depth = value.extract()?,
                    "unit" => next.unit = value.extract()?,
                    "pinned" => next.pinned = value.extract()?,
                    "pin_until" => next.pin_until = value.extract()?,
                    "min_lsn" => next.min_lsn = value.extract()?,
                    other => {
                        return Err(PyTypeError::new_err(format!(
                            "RouteState has no field {other:?} (fields: {FIELDS:?})"
                        )))
                    }
                }
            }
        }
        Ok(next)
    }

    /// Whether reads must go to the primary because of a write (pin).
    fn is_pinned(&self) -> bool {
        self.pinned_now()
    }

    fn __repr__(&self) -> String {
        format!(
            "RouteState(primary_depth={}, unit={}, pinned={}, pin_until={}, min_lsn={})",
            self.primary_depth,
            if self.unit { "True" } else { "False" },
            if self.pinned { "True" } else { "False" },
            self.pin_until,
            self.min_lsn.map_or("None".into(), |l| l.to_string())
        )
    }
}
