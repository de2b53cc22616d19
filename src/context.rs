//! The per-context routing state Python keeps in a `ContextVar`, as a frozen class
//! the read path can inspect without running Python code.

use std::ffi::c_int;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::clock::monotonic;

extern "C" {
    /// CPython's `ContextVar.get()` (public C API since 3.7, same signature in every
    /// version since; outside the limited API, which has no context variables at
    /// all). It keeps the last value found per variable and thread, tagged with the
    /// context's version, so a repeated read in an unchanged context is a few
    /// comparisons.
    fn PyContextVar_Get(
        var: *mut ffi::PyObject,
        default_value: *mut ffi::PyObject,
        value: *mut *mut ffi::PyObject,
    ) -> c_int;
}

/// Where the read path finds the caller's routing state.
pub(crate) enum StateSource {
    /// A `ContextVar` read directly through the C API: no Python call.
    Var(Py<PyAny>),
    /// Any other callable returning a `RouteState` or None.
    Getter(Py<PyAny>),
}

impl StateSource {
    /// `getter` as given to `Cluster`; a bound `ContextVar.get` (what
    /// `replica_router.context.current` is) is read as its variable instead.
    pub(crate) fn new(py: Python<'_>, getter: Py<PyAny>) -> StateSource {
        match context_var_of(getter.bind(py)) {
            Ok(Some(var)) => StateSource::Var(var),
            _ => StateSource::Getter(getter),
        }
    }

    /// The caller's routing state, if it has one.
    #[inline]
    pub(crate) fn get<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, RouteState>>> {
        let value = match self {
            StateSource::Var(var) => {
                let mut value = std::ptr::null_mut();
                // SAFETY: the GIL is held (`py`); `var` is a live ContextVar; on
                // success `value` is a new reference or NULL (no value, no default).
                if unsafe { PyContextVar_Get(var.as_ptr(), std::ptr::null_mut(), &mut value) } < 0 {
                    return Err(PyErr::fetch(py));
                }
                // SAFETY: a new reference (or NULL), owned from here on.
                match unsafe { Bound::from_owned_ptr_or_opt(py, value) } {
                    Some(value) => value,
                    None => return Ok(None),
                }
            }
            StateSource::Getter(getter) => getter.bind(py).call0()?,
        };
        if value.is_none() {
            return Ok(None);
        }
        Ok(value.cast_into::<RouteState>().ok())
    }
}

/// The `ContextVar` whose bound `get` method `getter` is, if it is one.
fn context_var_of(getter: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
    let py = getter.py();
    let Ok(owner) = getter.getattr("__self__") else {
        return Ok(None);
    };
    let context_var = py.import("contextvars")?.getattr("ContextVar")?;
    let is_get = getter.getattr("__name__")?.extract::<String>()? == "get";
    Ok((is_get && owner.get_type().is(&context_var)).then(|| owner.unbind()))
}

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
