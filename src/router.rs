//! `db_for_read` and `db_for_write` of `replica_router.ReadWriteRouter`, natively:
//! Django's dispatch calls them with no Python frame in between, and the instance
//! hint (which alias an object was loaded from, and the rule that an object of
//! another database stays there) and the read decision are one native call.
//!
//! They are functions, not methods: the class holds them as static methods, so
//! Django's `getattr(router, "db_for_read")` on every call returns them as they are
//! instead of allocating a bound method, and nothing checks `self`. Taking `**hints`,
//! they receive Django's positional tuple and hints dict as they are (no vector to
//! unpack); `instance` is a keyword parameter of its own, matched by name, so no
//! dict is built unless Django passes another hint. (A Python method that receives
//! `**hints` builds a new dict on every call.)
//!
//! The router takes no arguments (Django builds it), so the cluster it routes for is
//! installed here by `replica_router._runtime` (`install_router`), together with
//! what a write calls (`context.note_write`) and, under a test runner, the Python
//! read functions that replace the core's decision.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use pyo3::exceptions::{PyAttributeError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::bindings::Cluster;

/// What the routers of this process route with.
struct Installed {
    cluster: Py<Cluster>,
    /// Records a write in the caller's routing state (`context.note_write`).
    note_write: Py<PyAny>,
    /// Under a test runner, `(read, read_hinted)`: Python functions deciding reads
    /// instead of the core (see `replica_router.testing.readers`).
    readers: Option<(Py<PyAny>, Py<PyAny>)>,
}

/// Replaced (never mutated) by `install_router`; read lock-free on every call.
static INSTALLED: ArcSwapOption<Installed> = ArcSwapOption::const_empty();

/// Routes this process's `db_for_read`/`db_for_write` with `cluster`: writes call `note_write()`, and
/// `readers`, when given, decide reads instead of the core.
#[pyfunction]
#[pyo3(signature = (cluster, note_write, readers=None))]
pub fn install_router(
    cluster: Py<Cluster>,
    note_write: Py<PyAny>,
    readers: Option<(Py<PyAny>, Py<PyAny>)>,
) {
    INSTALLED.store(Some(Arc::new(Installed {
        cluster,
        note_write,
        readers,
    })));
}

/// Forgets the installed cluster: the next routing call builds one from the
/// settings (`replica_router._runtime.get_cluster()`).
#[pyfunction]
pub fn uninstall_router() {
    INSTALLED.store(None);
}

/// Runs `f` with the installed cluster, building it first if there is none.
#[inline]
fn with_installed<R>(py: Python<'_>, f: impl FnOnce(&Installed) -> PyResult<R>) -> PyResult<R> {
    {
        let guard = INSTALLED.load();
        if let Some(installed) = guard.as_ref() {
            return f(installed);
        }
    }
    build(py)?;
    match INSTALLED.load().as_ref() {
        Some(installed) => f(installed),
        None => Err(PyRuntimeError::new_err(
            "replica_router: the cluster was not installed after it was built",
        )),
    }
}

/// First use (or first after `_runtime.reset()`): build the cluster from settings,
/// which installs it (raises `ImproperlyConfigured` on bad settings).
#[cold]
fn build(py: Python<'_>) -> PyResult<()> {
    py.import("replica_router._runtime")?
        .call_method0("get_cluster")?;
    Ok(())
}

/// What an `instance` hint says about where its object lives.
enum Hint<'py> {
    /// No hint, an unsaved object, or one without Django's `_state.db`.
    None,
    /// Loaded from this node of the cluster (its alias as Django stored it).
    Node(usize, Bound<'py, PyString>),
    /// Loaded from a database outside the cluster: it stays there.
    Other,
}

/// `getattr(obj, name, None)`: only a missing attribute means "none".
fn attr_or_none<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match obj.getattr(name) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_instance_of::<PyAttributeError>(obj.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads `instance._state.db` (Django sets it when an object is loaded or saved).
fn hint<'py>(
    py: Python<'py>,
    cluster: &Cluster,
    instance: Option<&Bound<'py, PyAny>>,
) -> PyResult<Hint<'py>> {
    let Some(instance) = instance else {
        return Ok(Hint::None);
    };
    let Some(state) = attr_or_none(instance, pyo3::intern!(py, "_state"))? else {
        return Ok(Hint::None);
    };
    let Some(db) = attr_or_none(&state, pyo3::intern!(py, "db"))? else {
        return Ok(Hint::None);
    };
    let Ok(db) = db.cast_into::<PyString>() else {
        return Ok(Hint::None); // unsaved: `db` is None
    };
    Ok(match cluster.node_of(&db) {
        Some(node) => Hint::Node(node, db),
        None => Hint::Other,
    })
}

/// `ReadWriteRouter.db_for_read`: where to read `model` from. The whole read decision
/// of `Cluster.read`, and for an `instance` loaded from a node, that node while it
/// may take reads. `None` for an object of a database outside the cluster (it stays
/// there).
#[pyfunction]
#[pyo3(signature = (model, *, instance=None, **hints))]
pub fn db_for_read(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    instance: Option<&Bound<'_, PyAny>>,
    hints: Option<&Bound<'_, PyDict>>,
) -> PyResult<Option<Py<PyString>>> {
    let _ = (model, hints); // Django passes them; the decision needs neither.
    with_installed(py, |installed| {
        let cluster = installed.cluster.get();
        let node = match hint(py, cluster, instance)? {
            Hint::Other => return Ok(None),
            Hint::None => None,
            Hint::Node(node, alias) => Some((node, alias)),
        };
        match (&installed.readers, node) {
            (None, node) => cluster.read_node(py, node.map(|(n, _)| n)).map(Some),
            (Some((read, _)), None) => Ok(read.call0(py)?.extract(py)?),
            (Some((_, read_hinted)), Some((_, alias))) => {
                Ok(read_hinted.call1(py, (alias,))?.extract(py)?)
            }
        }
    })
}

/// `ReadWriteRouter.db_for_write`: the primary, after pinning the caller's reads
/// there (`note_write`). `None` for an object of a database outside the cluster (it
/// stays there).
#[pyfunction]
#[pyo3(signature = (model, *, instance=None, **hints))]
pub fn db_for_write(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    instance: Option<&Bound<'_, PyAny>>,
    hints: Option<&Bound<'_, PyDict>>,
) -> PyResult<Option<Py<PyString>>> {
    let _ = (model, hints);
    with_installed(py, |installed| {
        let cluster = installed.cluster.get();
        if let Hint::Other = hint(py, cluster, instance)? {
            return Ok(None);
        }
        installed.note_write.call0(py)?;
        Ok(Some(cluster.write_alias(py)))
    })
}
