//! The read path's per-thread cache: everything a read decision would otherwise load
//! from shared state on every call, in one thread-local (one TLS lookup per read
//! instead of one per part).
//!
//! - the installed router (`router`), revalidated by one relaxed load of a counter
//!   bumped on every install, and the cluster's published snapshot, an
//!   `arc_swap::Cache`: a cached `Arc` revalidated by one relaxed pointer load, where
//!   an `ArcSwap` load takes and pays back a debt slot on every call;
//! - this thread's Django connection objects (`django_conn`);
//! - the generator of weighted picks (`rng`).
//!
//! The cache is borrowed for a whole read. A read made by Python code that the read
//! itself runs (a custom `__getattr__`, the test readers, the first fetch of the
//! connection objects) finds it in use and works without it (`with` passes `None`).

use std::cell::RefCell;
use std::ops::Deref;
use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};

use pyo3::prelude::*;

use crate::django_conn::ConnCache;
use crate::rng::Rng;
use crate::select::Snapshot;
use crate::shared::Shared;

use super::Cluster;

/// A cluster's published snapshot, as the `ArcSwap` an `arc_swap::Cache` follows.
pub(crate) struct SnapshotOf(pub(crate) Arc<Shared>);

impl Deref for SnapshotOf {
    type Target = ArcSwap<Snapshot>;

    fn deref(&self) -> &ArcSwap<Snapshot> {
        &self.0.snapshot
    }
}

/// What a read decision of one cluster caches per thread.
pub(crate) struct ReadCache {
    /// (cluster id, its published snapshot).
    snapshot: Option<(u64, Cache<SnapshotOf, Arc<Snapshot>>)>,
    /// This thread's Django connection objects.
    pub(crate) conns: ConnCache,
    pub(crate) rng: Rng,
}

impl ReadCache {
    const EMPTY: ReadCache = ReadCache {
        snapshot: None,
        conns: None,
        rng: Rng::UNSEEDED,
    };

    /// The snapshot `shared` (of cluster `id`) publishes now. One pointer comparison
    /// while it is the one cached; a new publish (or another cluster) loads it again.
    #[inline]
    pub(crate) fn snapshot(&mut self, id: u64, shared: &Arc<Shared>) -> &Arc<Snapshot> {
        if !matches!(&self.snapshot, Some((cached_id, _)) if *cached_id == id) {
            self.snapshot = None;
        }
        let (_, cache) = self
            .snapshot
            .get_or_insert_with(|| (id, Cache::new(SnapshotOf(Arc::clone(shared)))));
        cache.load()
    }
}

/// What the routers of this process route with.
pub(crate) struct Installed {
    pub(crate) cluster: Py<Cluster>,
    /// Records a write in the caller's routing state (`context.note_write`).
    pub(crate) note_write: Py<PyAny>,
    /// Under a test runner, `(read, read_hinted)`: Python functions deciding reads
    /// instead of the core (see `replica_router.testing.readers`).
    pub(crate) readers: Option<(Py<PyAny>, Py<PyAny>)>,
}

/// `router`'s installed router as one thread's read path keeps it: (generation, router).
pub(crate) type InstalledCache = Option<(u64, Option<Arc<Installed>>)>;

/// The whole per-thread cache: the router's part and the read decision's.
pub(crate) struct Hot {
    pub(crate) installed: InstalledCache,
    pub(crate) read: ReadCache,
}

thread_local! {
    static HOT: RefCell<Hot> = const {
        RefCell::new(Hot {
            installed: None,
            read: ReadCache::EMPTY,
        })
    };
}

/// Runs `f` with this thread's cache, or with `None` if a read further up this
/// thread's stack holds it (or the thread is exiting). `f` runs exactly once.
#[inline]
pub(crate) fn with<R>(mut f: impl FnMut(Option<&mut Hot>) -> R) -> R {
    let mut out = None;
    let _ = HOT.try_with(|cell| {
        if let Ok(mut hot) = cell.try_borrow_mut() {
            out = Some(f(Some(&mut hot)));
        }
    });
    match out {
        Some(r) => r,
        None => f(None),
    }
}

#[cfg(test)]
mod tests;
