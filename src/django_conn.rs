//! Reading Django's connection state from the read path: is this thread's connection
//! to a cluster node inside `transaction.atomic()`? The connection objects are
//! fetched from Python once per thread (a sync thread keeps them for its lifetime),
//! then each read looks `in_atomic_block` up in their instance `__dict__`s.

use std::cell::RefCell;
use std::sync::atomic::Ordering;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::fork::FORK_GENERATION;

/// (cluster id, fork generation, each alias's connection `__dict__`, in alias order).
type ConnCache = Option<(u64, u64, Vec<Py<PyDict>>)>;

thread_local! {
    static CONNECTIONS: RefCell<ConnCache> = const { RefCell::new(None) };
}

/// The node whose connection in this thread is inside `transaction.atomic()`.
/// `fetch` returns this thread's Django connection objects, in alias order.
pub(crate) fn transaction_node(
    py: Python<'_>,
    cluster_id: u64,
    fetch: &Py<PyAny>,
) -> Option<usize> {
    let generation = FORK_GENERATION.load(Ordering::Relaxed);
    let name = pyo3::intern!(py, "in_atomic_block").as_ptr();
    // A dict lookup is cheaper than an attribute lookup, which first walks the class
    // hierarchy for descriptors. Django stores a real bool there: compare with True
    // by address instead of asking Python for truthiness.
    let true_ = pyo3::types::PyBool::new(py, true).as_ptr();
    let in_tx = |dicts: &[Py<PyDict>]| {
        dicts.iter().position(|d| {
            // SAFETY: the GIL is held (`py`) and `d`, `name` are live objects; the
            // result is a borrowed reference (or NULL), only compared by address.
            let v = unsafe { pyo3::ffi::PyDict_GetItemWithError(d.as_ptr(), name) };
            if v.is_null() {
                // Absent; a str key cannot raise, but never leave an error set.
                let _ = PyErr::take(py);
                return false;
            }
            v == true_
        })
    };
    let cached = CONNECTIONS.with(|c| {
        let c = c.try_borrow().ok()?;
        match c.as_ref() {
            Some((id, g, conns)) if *id == cluster_id && *g == generation => Some(in_tx(conns)),
            _ => None,
        }
    });
    if let Some(found) = cached {
        return found;
    }
    // First read in this thread: fetch the objects (Python code runs here, so the
    // cache is not borrowed meanwhile).
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
    CONNECTIONS.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            *c = Some((cluster_id, generation, conns));
        }
    });
    found
}
