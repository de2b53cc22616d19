//! `db_for_read` and `db_for_write` of `replica_router.ReadWriteRouter`, natively:
//! Django's dispatch calls them with no Python frame in between, and the instance
//! hint (which alias an object was loaded from, and the rule that an object of
//! another database stays there) and the read decision are one native call.
//!
//! They are functions, not methods: the class holds them as static methods, so
//! Django's `getattr(router, "db_for_read")` on every call returns them as they are
//! instead of allocating a bound method, and nothing checks `self`. They take
//! CPython's `METH_VARARGS | METH_KEYWORDS` convention directly: Django's
//! `method(model, **hints)` hands over its argument tuple and hints dict as they
//! are, and the hint is one lookup in that dict. (A Python method that receives
//! `**hints` builds a new dict on every call; PyO3's argument parsing copies or
//! matches the hints too.)
//!
//! The router takes no arguments (Django builds it), so the cluster it routes for is
//! installed here by `replica_router._runtime` (`install_router`), together with
//! what a write calls (`context.note_write`) and, under a test runner, the Python
//! read functions that replace the core's decision.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use pyo3::exceptions::{PyAttributeError, PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::bindings::hot::{Installed, InstalledCache};
use crate::bindings::Cluster;

/// Replaced (never mutated) by `install_router`; read lock-free on every call.
static INSTALLED: ArcSwapOption<Installed> = ArcSwapOption::const_empty();

/// Bumped after every change of `INSTALLED`: a thread's cached copy is current while
/// this has not moved (one relaxed load per call instead of an `ArcSwap` load).
static INSTALL_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The installed router, from this thread's cache.
#[inline]
fn cached_installed(cache: &mut InstalledCache) -> Option<&Installed> {
    let generation = INSTALL_GENERATION.load(Ordering::Acquire);
    if !matches!(cache, Some((g, _)) if *g == generation) {
        refresh_installed(cache, generation);
    }
    cache.as_ref()?.1.as_deref()
}

#[cold]
fn refresh_installed(cache: &mut InstalledCache, generation: u64) {
    let fresh = INSTALLED.load_full();
    // The copy it replaces may own the last reference to a retired cluster: release
    // its Python objects now, as a holder of the GIL (which the native functions are
    // not to PyO3, which would only queue the release).
    Python::attach(|_| *cache = Some((generation, fresh)));
}

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
    INSTALL_GENERATION.fetch_add(1, Ordering::Release);
}

/// Forgets the installed cluster: the next routing call builds one from the
/// settings (`replica_router._runtime.get_cluster()`).
#[pyfunction]
pub fn uninstall_router() {
    INSTALLED.store(None);
    INSTALL_GENERATION.fetch_add(1, Ordering::Release);
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

/// `ReadWriteRouter.db_for_read`: where to read from. The whole read decision of
/// `Cluster.read`, and for an `instance` loaded from a node, that node while it may
/// take reads. `None` for an object of a database outside the cluster (it stays
/// there).
fn read(py: Python<'_>, instance: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Py<PyString>>> {
    // With this thread's cache: the installed router and everything the decision
    // loads, without a shared load or a Python call (but the hint's attributes).
    let cached = crate::bindings::hot::with(|hot| {
        let hot = hot?;
        let installed = cached_installed(&mut hot.installed)?;
        if installed.readers.is_some() {
            // The test readers are Python code that reads through `Cluster.read`:
            // they run below, with the cache free for those reads.
            return None;
        }
        let cluster = installed.cluster.get();
        Some(match hint(py, cluster, instance) {
            Err(e) => Err(e),
            Ok(Hint::Other) => Ok(None),
            Ok(Hint::None) => cluster.read_node(py, None, Some(&mut hot.read)).map(Some),
            Ok(Hint::Node(node, _)) => cluster
                .read_node(py, Some(node), Some(&mut hot.read))
                .map(Some),
        })
    });
    if let Some(outcome) = cached {
        return outcome;
    }
    // First use, the test readers, or a read made while one is running.
    with_installed(py, |installed| {
        let cluster = installed.cluster.get();
        let node = match hint(py, cluster, instance)? {
            Hint::Other => return Ok(None),
            Hint::None => None,
            Hint::Node(node, alias) => Some((node, alias)),
        };
        match (&installed.readers, node) {
            (None, node) => {
                let node = node.map(|(n, _)| n);
                crate::bindings::hot::with(|hot| {
                    cluster.read_node(py, node, hot.map(|h| &mut h.read))
                })
                .map(Some)
            }
            (Some((read, _)), None) => Ok(read.bind(py).call0()?.extract()?),
            (Some((_, read_hinted)), Some((_, alias))) => {
                Ok(read_hinted.bind(py).call1((alias,))?.extract()?)
            }
        }
    })
}

/// `ReadWriteRouter.db_for_write`: the primary, after pinning the caller's reads
/// there (`note_write`). `None` for an object of a database outside the cluster (it
/// stays there).
fn write(py: Python<'_>, instance: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Py<PyString>>> {
    with_installed(py, |installed| {
        let cluster = installed.cluster.get();
        if let Hint::Other = hint(py, cluster, instance)? {
            return Ok(None);
        }
        installed.note_write.bind(py).call0()?;
        Ok(Some(cluster.write_alias(py)))
    })
}

type Body = for<'py> fn(Python<'py>, Option<&Bound<'py, PyAny>>) -> PyResult<Option<Py<PyString>>>;

/// The `(model, *, instance=None, **hints)` of Django's call: `instance`, if given
/// and not None. Only the argument count is checked; other hints are ignored.
///
/// # Safety
/// The GIL is held; `args` is a live tuple, `kwargs` a live dict or NULL (what
/// CPython passes a `METH_VARARGS | METH_KEYWORDS` function).
unsafe fn instance_of<'py>(
    py: Python<'py>,
    name: &str,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    // Raw calls, not PyO3's checked casts: CPython guarantees both types, and
    // Django's plain call hands over an empty dict, which needs no lookup at all.
    // SAFETY (all blocks): per this function's contract.
    let has_hints = !kwargs.is_null() && unsafe { ffi::PyDict_Size(kwargs) } > 0;
    let nargs = unsafe { ffi::PyTuple_Size(args) };
    if nargs != 1 {
        let kwargs = unsafe { Bound::from_borrowed_ptr_or_opt(py, kwargs) };
        let model_by_name = kwargs.is_some_and(|k| {
            k.cast::<PyDict>()
                .is_ok_and(|k| k.contains(pyo3::intern!(py, "model")).unwrap_or(false))
        });
        if !(nargs == 0 && model_by_name) {
            return Err(PyTypeError::new_err(format!(
                "{name}() takes one positional argument, the model, and keyword hints ({nargs} given)"
            )));
        }
    }
    if !has_hints {
        return Ok(None);
    }
    let key = pyo3::intern!(py, "instance").as_ptr();
    // A borrowed reference, or NULL: absent, or (never for a str key) an error.
    let found = unsafe { ffi::PyDict_GetItemWithError(kwargs, key) };
    if found.is_null() {
        return PyErr::take(py).map_or(Ok(None), Err);
    }
    let instance = unsafe { Bound::from_borrowed_ptr(py, found) };
    Ok((!instance.is_none()).then_some(instance))
}

/// A `METH_VARARGS | METH_KEYWORDS` function's body: Django's `method(model, **hints)`
/// hands over its argument tuple and its hints dict as they are, with nothing to
/// unpack or rebuild, and the hint is one dict lookup.
///
/// # Safety
/// Called by CPython only: the GIL is held, `args` is a tuple, `kwargs` a dict or NULL.
unsafe fn entry(
    name: &str,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
    body: Body,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a C function of this module with the GIL held (the module
    // declares `gil_used`). PyO3 does not count this as holding it, so a `Py` dropped
    // in here would only be released later: the body works with `Bound` values.
    let py = unsafe { Python::assume_attached() };
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: CPython passes a tuple and a dict or NULL, alive for the call.
        let instance = unsafe { instance_of(py, name, args, kwargs) }?;
        body(py, instance.as_ref())
    }));
    let err = match outcome {
        Ok(Ok(Some(alias))) => return alias.into_ptr(),
        Ok(Ok(None)) => return py.None().into_ptr(),
        Ok(Err(err)) => err,
        Err(_) => {
            PyRuntimeError::new_err(format!("replica_router: {name}() failed (internal error)"))
        }
    };
    err.restore(py);
    std::ptr::null_mut()
}

unsafe extern "C" fn db_for_read(
    _module: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: only CPython calls it, as `METH_VARARGS | METH_KEYWORDS`.
    unsafe { entry("db_for_read", args, kwargs, read) }
}

unsafe extern "C" fn db_for_write(
    _module: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: only CPython calls it, as `METH_VARARGS | METH_KEYWORDS`.
    unsafe { entry("db_for_write", args, kwargs, write) }
}

/// A method table entry CPython keeps a pointer to for the process's lifetime.
struct Def(ffi::PyMethodDef);
// SAFETY: immutable, and its pointers are to static C strings and functions.
unsafe impl Sync for Def {}

static READ_DEF: Def = Def(ffi::PyMethodDef {
    ml_name: c"db_for_read".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionWithKeywords: db_for_read,
    },
    ml_flags: ffi::METH_VARARGS | ffi::METH_KEYWORDS,
    ml_doc: c"db_for_read(model, *, instance=None, **hints)\n--\n\nReadWriteRouter.db_for_read: the read decision of Cluster.read; for an\ninstance loaded from a node, that node while it may take reads; None for an\nobject of another database.".as_ptr(),
});

static WRITE_DEF: Def = Def(ffi::PyMethodDef {
    ml_name: c"db_for_write".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionWithKeywords: db_for_write,
    },
    ml_flags: ffi::METH_VARARGS | ffi::METH_KEYWORDS,
    ml_doc: c"db_for_write(model, *, instance=None, **hints)\n--\n\nReadWriteRouter.db_for_write: the primary, pinning the caller's reads there;\nNone for an object of another database.".as_ptr(),
});

/// Adds `db_for_read` and `db_for_write` to the module. They are written against
/// CPython's calling convention directly, not through PyO3's argument parsing: PyO3
/// copies the hints into a new dict or matches them by name, where one lookup in
/// Django's own dict is all a routing call needs.
pub fn add_functions(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let name = m.name()?;
    for def in [&READ_DEF, &WRITE_DEF] {
        // SAFETY: `def` is static; CPython never writes through the pointer.
        let f = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyCFunction_NewEx(
                    std::ptr::from_ref(&def.0).cast_mut(),
                    m.as_ptr(),
                    name.as_ptr(),
                ),
            )
        }?;
        m.add(f.getattr("__name__")?.cast_into::<PyString>()?, f)?;
    }
    Ok(())
}
