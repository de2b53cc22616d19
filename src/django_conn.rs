//! Reading Django's connection state from the read path: is this thread's connection
//! to a cluster node inside `transaction.atomic()`? The connection objects are
//! fetched from Python once per thread (a sync thread keeps them for its lifetime),
//! then each read looks `in_atomic_block` up in their instance `__dict__`s.

use std::sync::atomic::Ordering;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::fork::FORK_GENERATION;

/// (cluster id, fork generation, each alias's connection `__dict__`, in alias order):
/// kept per thread in the read path's cache (`hot`).
pub(crate) type ConnCache = Option<(u64, u64, Vec<Py<PyDict>>)>;

/// The node whose connection in this thread is inside `transaction.atomic()`.
/// `fetch` returns this thread's Django connection objects, in alias order. `cache`:
/// this thread's cache, or `None` when it is in use further up the stack (a read
/// made from Python code that a read runs), which fetches the objects again.
pub(crate) fn transaction_node(
    py: Python<'_>,
    cluster_id: u64,
    fetch: &Py<PyAny>,
    cache: Option<&mut ConnCache>,
) -> Option<usize> {
    let generation = FORK_GENERATION.load(Ordering::Relaxed);
    let name = pyo3::intern!(py, "in_atomic_block").as_ptr();
    // A dict lookup is cheaper than an attribute lookup, which first walks the class
    // hierarchy for descriptors. Django stores a real bool there: compare with True
    // by address instead of asking Python for truthiness.
    // SAFETY: `Py_True` is a static object; only its address is used.
    let true_ = unsafe { pyo3::ffi::Py_True() };
    let in_tx = |dicts: &[Py<PyDict>]| {
        dicts.iter().position(|d| {
            // SAFETY: the GIL is held (`py`) and `d`, `name` are live objects. A
            // borrowed reference, only compared by address, or NULL: absent (a str
            // key's lookup raises nothing; never leave an error set all the same).
            let v = unsafe { pyo3::ffi::PyDict_GetItemWithError(d.as_ptr(), name) };
            if v.is_null() {
                drop(PyErr::take(py));
                return false;
            }
            v == true_
        })
    };
    if let Some(Some((id, g, conns))) = cache.as_deref() {
        if *id == cluster_id && *g == generation {
            return in_tx(conns);
        }
    }
    // First read in this thread (or in this fork, or of this cluster): fetch the
    // objects (Python code runs here; a read it makes finds the cache in use).
    let fetched = fetch.bind(py).call0().ok()?;
    let dunder_dict = pyo3::intern!(py, "__dict__");
    let conns: Vec<Py<PyDict>> = fetched
        .try_iter()
        .ok()?
        .filter_map(|o| {
            let d = o.ok()?.getattr(dunder_dict).ok()?;
            d.cast_into::<PyDict>().ok().map(Bound::unbind)
        })
        .collect();
    let found = in_tx(&conns);
    if let Some(cache) = cache {
        // What it replaces (another cluster's, or the parent's before a fork) is
        // released now, as a holder of the GIL (see `router::refresh_installed`).
        Python::attach(|_| *cache = Some((cluster_id, generation, conns)));
    }
    found
}
