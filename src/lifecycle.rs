//! The prober's life in a process (its own, or the host's shared one, see `shm`): started on first use, started again in a child
//! after `fork()` (threads do not survive a fork, and the parent's view must not be
//! trusted there), stopped by `close()` or when the Python object is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;

use crate::events::{Event, Events, Severity};
use crate::fork::{install_fork_hook, FORK_GENERATION};
use crate::monitor::Engine;
use crate::patroni::poller::Poller;
use crate::probe::Fault;
use crate::report::ProberView;
use crate::shared::Shared;
use crate::shm::{Off, Sharing};

const NOT_STARTED: u64 = u64::MAX;

/// Who probes for this process.
enum Runner {
    /// Its own prober (sharing off, or not possible).
    Solo(Arc<Engine>),
    /// The host's shared prober: this process leads or follows.
    Shared(Arc<Sharing<Engine>>),
}

impl Runner {
    /// Decides the roles again now (Patroni's view changed). [s3-patroni]
    fn refresher(&self) -> crate::patroni::poller::Refresh {
        match self {
            Runner::Solo(engine) => {
                let engine = Arc::clone(engine);
                Box::new(move || engine.refresh())
            }
            Runner::Shared(sharing) => {
                let sharing = Arc::clone(sharing);
                Box::new(move || sharing.refresh())
            }
        }
    }
}

/// What one fork generation of a process runs for a cluster.
pub(crate) struct Generation {
    events: Arc<Events>,
    runner: Runner,
    /// Patroni's poller, with `PATRONI_URLS`. [s3-patroni]
    poller: Option<Poller>,
}

impl Generation {
    fn stop(&self) {
        if let Some(poller) = &self.poller {
            poller.stop();
        }
        match &self.runner {
            Runner::Solo(engine) => engine.stop(),
            Runner::Shared(sharing) => sharing.stop(),
        }
        self.events.close();
    }

    /// Stops probing and waits for the threads (bounded by one probe).
    pub(crate) fn close(&self) {
        self.stop();
    }

    /// In a child after `fork()`: never touch (or drop) what the parent ran.
    fn abandon(this: Arc<Generation>) {
        if let Runner::Shared(sharing) = &this.runner {
            Sharing::abandon_in_child(Arc::clone(sharing));
        }
        std::mem::forget(this);
    }
}

/// One cluster's prober in this process.
pub(crate) struct Lifecycle {
    shared: Arc<Shared>,
    /// `SHARE_HEALTH`: try to share one prober among the host's processes.
    share: bool,
    current: ArcSwapOption<Generation>,
    started_generation: AtomicU64,
    closed: AtomicBool,
}

impl Lifecycle {
    pub(crate) fn new(shared: Arc<Shared>, share: bool) -> Lifecycle {
        install_fork_hook();
        Lifecycle {
            shared,
            share,
            current: ArcSwapOption::empty(),
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
            // A forked child: the parent's threads do not exist here, and their locks
            // may have been held at the fork.
            if let Some(inherited) = self.current.swap(None) {
                Generation::abandon(inherited);
            }
        }
        let events = Arc::new(Events::default());
        let shared = Arc::clone(&self.shared);
        let solo = |events: &Arc<Events>| {
            Runner::Solo(Engine::start(
                Arc::clone(&shared),
                Arc::clone(events),
                None,
                None,
            ))
        };
        let runner = if !self.share {
            solo(&events)
        } else {
            match Sharing::start(Arc::clone(&shared), Arc::clone(&events)) {
                Ok(sharing) => Runner::Shared(sharing),
                Err(Off::Quiet) => solo(&events),
                Err(Off::Warn(why)) => {
                    events.push(Event::cluster(
                        Severity::Warning,
                        format!("shared health is off ({why}); this process probes on its own"),
                    ));
                    solo(&events)
                }
            }
        };
        let poller = Poller::start(&shared, &events, runner.refresher());
        self.current.store(Some(Arc::new(Generation {
            events,
            runner,
            poller,
        })));
    }

    fn ours_current(&self) -> Option<Arc<Generation>> {
        if self.ours() {
            self.current.load_full()
        } else {
            None
        }
    }

    /// A passive fault on node `idx`; returns whether the node was taking reads.
    pub(crate) fn report_passive(&self, idx: usize, fault: Fault, now: Instant) -> bool {
        let current = self.ours_current();
        let writer = self.shared.snapshot.load().roles.writer_node();
        // Through any alias that reaches the primary's server (its probe group).
        if writer.is_some_and(|w| self.shared.probe_groups.with(idx).contains(&w)) {
            // The primary failed under a query: ask Patroni too. [s3-patroni]
            if let Some(p) = current.as_deref().and_then(|g| g.poller.as_ref()) {
                p.wake();
            }
        }
        match current.as_deref().map(|g| &g.runner) {
            Some(Runner::Solo(engine)) => engine.report_passive(idx, fault, now),
            Some(Runner::Shared(sharing)) => sharing.report_passive(idx, fault, now),
            None => false,
        }
    }

    /// Re-probes every node now, where this process probes (a follower leaves it to
    /// the host's prober, whose next publish it reads).
    pub(crate) fn reprobe(&self) {
        let current = self.ours_current();
        if let Some(p) = current.as_deref().and_then(|g| g.poller.as_ref()) {
            p.wake(); // [s3-patroni]
        }
        match current.as_deref().map(|g| &g.runner) {
            Some(Runner::Solo(engine)) => engine.reprobe(),
            Some(Runner::Shared(sharing)) => sharing.reprobe(),
            None => {}
        }
    }

    /// What `status()` reports of the prober, if it started in this process.
    pub(crate) fn view(&self) -> Option<ProberView> {
        match self.ours_current().as_deref().map(|g| &g.runner) {
            Some(Runner::Solo(engine)) => Some(engine.view(false)),
            Some(Runner::Shared(sharing)) => sharing.view(),
            None => None,
        }
    }

    /// The queue of this process's events, once started.
    pub(crate) fn events(&self) -> Option<Arc<Events>> {
        self.ours_current().map(|g| Arc::clone(&g.events))
    }

    /// Whether this process has a running prober (its own or the shared one).
    pub(crate) fn running(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.ours()
    }

    pub(crate) fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether the generation was started in this process (not inherited through fork).
    fn ours(&self) -> bool {
        self.started_generation.load(Ordering::SeqCst) == FORK_GENERATION.load(Ordering::SeqCst)
    }

    /// Marks the cluster closed; returns what to stop (outside the GIL), if this
    /// process runs it.
    pub(crate) fn close(&self) -> Option<Arc<Generation>> {
        self.closed.store(true, Ordering::SeqCst);
        self.ours_current()
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        if self.ours() {
            if let Some(current) = self.current.load_full() {
                current.stop();
            }
        } else if let Some(inherited) = self.current.swap(None) {
            Generation::abandon(inherited);
        }
    }
}
