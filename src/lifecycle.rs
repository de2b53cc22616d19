//! The prober's life in a process: started on first use, started again in a child
//! after `fork()` (threads do not survive a fork, and the parent's view must not be
//! trusted there), stopped by `close()` or when the Python object is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};

use arc_swap::ArcSwapOption;

use crate::monitor::{Engine, Shared};

/// Bumped in the child after every `fork()`.
pub(crate) static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    // Only an atomic add: nothing else is async-signal-safe here.
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

pub(crate) fn install_fork_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registering a handler that only touches an atomic.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

const NOT_STARTED: u64 = u64::MAX;

/// One cluster's prober in this process.
pub(crate) struct Lifecycle {
    shared: Arc<Shared>,
    engine: ArcSwapOption<Engine>,
    started_generation: AtomicU64,
    closed: AtomicBool,
}

impl Lifecycle {
    pub(crate) fn new(shared: Arc<Shared>) -> Lifecycle {
        install_fork_hook();
        Lifecycle {
            shared,
            engine: ArcSwapOption::empty(),
            started_generation: AtomicU64::new(NOT_STARTED),
            closed: AtomicBool::new(false),
        }
    }

    /// Starts probing on first use, and again in a child after a fork. Two relaxed
    /// atomic loads on the hot path.
    #[inline]
    pub(crate) fn ensure_started(&self) {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        let current = self.started_generation.load(Ordering::Relaxed);
        if current != generation {
            self.start_slow(current, generation);
        }
    }

    #[cold]
    fn start_slow(&self, current: u64, generation: u64) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        if self
            .started_generation
            .compare_exchange(current, generation, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        if current != NOT_STARTED {
            // A forked child: the parent's thread does not exist here, and its locks
            // may have been held at the fork. Never touch (or drop) that engine again.
            if let Some(inherited) = self.engine.swap(None) {
                std::mem::forget(inherited);
            }
        }
        self.engine
            .store(Some(Engine::start(Arc::clone(&self.shared))));
    }

    /// This process's engine, if it was started.
    pub(crate) fn engine(&self) -> Option<Arc<Engine>> {
        self.engine.load_full()
    }

    /// Whether this process has a running prober.
    pub(crate) fn running(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.ours()
    }

    pub(crate) fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether the engine was started in this process (not inherited through fork).
    fn ours(&self) -> bool {
        self.started_generation.load(Ordering::SeqCst) == FORK_GENERATION.load(Ordering::SeqCst)
    }

    /// Marks the cluster closed; returns the engine to stop (outside the GIL), if this
    /// process runs one.
    pub(crate) fn close(&self) -> Option<Arc<Engine>> {
        self.closed.store(true, Ordering::SeqCst);
        if self.ours() {
            self.engine.load_full()
        } else {
            None
        }
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        if self.ours() {
            if let Some(engine) = self.engine.load_full() {
                engine.stop();
            }
        } else if let Some(inherited) = self.engine.swap(None) {
            std::mem::forget(inherited);
        }
    }
}
