//! `Cluster`'s read decision, the hot path of every `db_for_read`: the caller's
//! routing state, an open transaction, an `instance` hint, then a weighted pick on
//! the published snapshot. No I/O, no lock, no allocation; with this thread's cache
//! (`hot::ReadCache`) no shared-memory write either (the counters aside).

use std::sync::atomic::Ordering;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::PyString;

use super::hot::ReadCache;
use crate::context::RouteState;
use crate::fork::FORK_GENERATION;
use crate::rng::uniform;
use crate::select::{Reason, Snapshot};

use super::{roles, Cluster};

impl Cluster {
    /// The caller's routing state, if it has one.
    #[inline]
    pub(super) fn state<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, RouteState>>> {
        match &self.state {
            Some(source) => source.get(py),
            None => Ok(None),
        }
    }

    /// The read decision; `hint`: the node an `instance` hint's object was loaded
    /// from. `cache`: this thread's read cache, `None` when a read further up the
    /// stack holds it (then the snapshot is loaded and the connections fetched anew).
    #[inline]
    pub(crate) fn read_node(
        &self,
        py: Python<'_>,
        hint: Option<usize>,
        mut cache: Option<&mut ReadCache>,
    ) -> PyResult<Py<PyString>> {
        self.prober.ensure_started();
        let mut min_lsn = None;
        if let Some(state) = self.state(py)? {
            let state = state.get();
            if state.primary_depth > 0 {
                return Ok(self.route(py, 0, Reason::UsePrimary));
            }
            if state.pinned_now() {
                return Ok(self.route(py, 0, Reason::Pinned));
            }
            min_lsn = state.min_lsn;
        }
        if let Some(fetch) = &self.thread_connections {
            let conns = cache.as_deref_mut().map(|c| &mut c.conns);
            if let Some(node) = crate::django_conn::transaction_node(py, self.id, fetch, conns) {
                return Ok(self.route(py, node, Reason::Transaction));
            }
        }
        let (node, reason) = match cache {
            Some(cache) => {
                let r = cache.rng.uniform(FORK_GENERATION.load(Ordering::Relaxed));
                decide(cache.snapshot(self.id, &self.shared), hint, min_lsn, r)
            }
            None => decide(&self.shared.snapshot.load(), hint, min_lsn, uniform()),
        };
        Ok(self.route(py, node, reason))
    }

    #[inline]
    pub(super) fn route(&self, py: Python<'_>, node: usize, reason: Reason) -> Py<PyString> {
        roles::note_pick(node);
        if let Some(counters) = self.shared.reads.get(node) {
            // Every caller holds the GIL (the module declares `gil_used`), so calls are
            // serialized: a plain load and store counts exactly.
            let c = &counters[reason as usize];
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        self.aliases[node].clone_ref(py)
    }
}

/// The snapshot's part of a read: the hint's node while it may take reads, else a
/// pick (among nodes that replayed `min_lsn`, when given). `r`: uniform in [0, 1).
#[inline]
fn decide(
    snapshot: &Snapshot,
    hint: Option<usize>,
    min_lsn: Option<u64>,
    r: f64,
) -> (usize, Reason) {
    if let Some(node) = hint {
        // An instance read from a node goes back to it while it may take reads, so
        // related lookups see the same data.
        if node == 0 || snapshot.is_eligible_now(node) {
            return (node, Reason::InstanceHint);
        }
    }
    match min_lsn {
        None => snapshot.pick_now(r),
        Some(lsn) => snapshot.pick_min_lsn(Instant::now(), r, lsn),
    }
}
