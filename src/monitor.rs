//! The background prober: one thread per process with a single-threaded tokio runtime,
//! one task per probe target (`ProbeGroups`: a server listed by several aliases is
//! probed once, on one connection), every probe under its own deadline. It folds
//! observations into the health machines of every node of the target and publishes an
//! immutable snapshot for the pick path.
//!
//! The thread never calls Python. State changes are parked as events (`Events`) that
//! a Python thread collects with `wait_events` (the GIL released while it waits). With
//! shared health, the leader's engine also writes every publish to the segment.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use tokio::sync::{watch, Notify};

use crate::config::ProbeGroups;
use crate::engine_state::EngineState;
use crate::events::{lock, Event, Events, Severity};
use crate::node_status::NodeStatus;
use crate::probe::{Fault, Sample};
use crate::report::ProberView;
use crate::select::Snapshot;
use crate::shared::Shared;
use crate::shm::{Probing, Publisher};
use crate::step::{self, build_snapshot_ha};

/// One process's prober. Replaced whole after a fork; never dropped in a child.
pub struct Engine {
    shared: Arc<Shared>,
    state: Mutex<EngineState>,
    /// A node fault seen by real traffic, per node, until the prober folds it in.
    /// Lock-free, so that reporting never waits for the prober.
    pending: Vec<ArcSwapOption<Fault>>,
    /// The nodes by probe target: one probe loop per group.
    groups: ProbeGroups,
    /// Per group, wakes its probe loop for an immediate re-probe.
    wake: Vec<Notify>,
    /// Per group, real traffic failed on it: a proxy endpoint's next probe connects anew.
    reconnect: Vec<AtomicBool>,
    events: Arc<Events>,
    /// The shared segment, when this process probes for the host.
    publisher: Option<Arc<Publisher>>,
    /// CLOCK_MONOTONIC-based `Instant` of the last publish, as ns (0: none yet).
    published_ns: AtomicU64,
    stop_tx: watch::Sender<bool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Wall clock and monotonic clock read together, to report instants as Unix times.
    epoch: (SystemTime, Instant),
}

impl Engine {
    /// Starts the prober thread. Without `seed` (the health a previous leader shared),
    /// it first publishes a cold snapshot; with it, it carries on from there.
    pub fn start(
        shared: Arc<Shared>,
        events: Arc<Events>,
        publisher: Option<Arc<Publisher>>,
        seed: Option<Vec<NodeStatus>>,
    ) -> Arc<Engine> {
        let now = Instant::now();
        let cfg = &shared.config;
        let mut state = EngineState::new(cfg, now);
        match seed {
            Some(nodes) if nodes.len() == state.nodes.len() => state.nodes = nodes,
            _ => shared
                .snapshot
                .store(Arc::new(Snapshot::cold(&shared.weights(), now))),
        }
        let pending = cfg.nodes.iter().map(|_| ArcSwapOption::empty()).collect();
        let groups = shared.probe_groups.clone();
        let wake = groups.members.iter().map(|_| Notify::new()).collect();
        let reconnect = groups
            .members
            .iter()
            .map(|_| AtomicBool::new(false))
            .collect();
        let (stop_tx, _) = watch::channel(false);
        let engine = Arc::new(Engine {
            shared,
            state: Mutex::new(state),
            pending,
            groups,
            wake,
            reconnect,
            events,
            publisher,
            published_ns: AtomicU64::new(0),
            stop_tx,
            thread: Mutex::new(None),
            epoch: (SystemTime::now(), now),
        });
        let runner = Arc::clone(&engine);
        let spawned = std::thread::Builder::new()
            .name("replica-router-probe".into())
            .spawn(move || runner.run());
        match spawned {
            Ok(handle) => *lock(&engine.thread) = Some(handle),
            Err(e) => engine.event(Event::cluster(
                Severity::Error,
                format!("could not start the prober thread: {e}"),
            )),
        }
        engine
    }

    fn run(self: Arc<Engine>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let runtime = match runtime {
            Ok(rt) => rt,
            Err(e) => {
                self.event(Event::cluster(
                    Severity::Error,
                    format!("could not start the prober runtime: {e}"),
                ));
                return;
            }
        };
        runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for group in 0..self.groups.members.len() {
                tasks.spawn(probe_loop(
                    Arc::clone(&self),
                    group,
                    self.stop_tx.subscribe(),
                ));
            }
            while tasks.join_next().await.is_some() {}
        });
        // Dropping the runtime aborts what is left, closing every probe socket.
        drop(runtime);
    }

    /// Stops probing and waits for the thread (bounded: every await in it also
    /// listens for the stop signal).
    pub fn stop(&self) {
        self.stop_tx.send_replace(true);
        let handle = lock(&self.thread).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    fn event(&self, event: Event) {
        self.events.push(event);
    }

    /// What `status()` reports of this process's prober.
    pub fn view(&self, shared: bool) -> ProberView {
        let published = self.published_ns.load(Ordering::Relaxed);
        let now = crate::shm::clock::now_ns();
        ProberView {
            nodes: lock(&self.state).nodes.clone(),
            epoch: self.epoch,
            prober_pid: std::process::id(),
            shared,
            snapshot_age: (published != 0).then(|| now.saturating_sub(published) as f64 * 1e-9),
        }
    }

    /// Folds one probe outcome into the state of node `idx` and of every node probed
    /// with it (its group), in one step, and publishes a new snapshot.
    pub fn apply(
        &self,
        idx: usize,
        outcome: Result<Sample, Fault>,
        latency: Duration,
        now: Instant,
    ) {
        let cfg = &self.shared.config;
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        st.patroni = self.shared.patroni_view();
        let mut events = self.drain_passive(st, now);
        let group = self.groups.with(idx);
        events.extend(step::observe_group(cfg, st, group, outcome, latency, now));
        self.shared.own.refresh(&st.nodes, cfg.probe_timeout, now);
        let snapshot = build_snapshot_ha(cfg, &st.nodes, st.patroni.as_deref(), now);
        self.publish(snapshot, now);
        self.mirror(st, &events);
        drop(guard);
        for event in events {
            self.event(event);
        }
    }

    /// Publishes a snapshot, keeping out of reads every node with a passive fault that
    /// the prober has not folded in yet (`rcu`: a report racing with this publish is
    /// never lost).
    fn publish(&self, snapshot: Snapshot, now: Instant) {
        let snapshot = Arc::new(snapshot);
        self.shared.snapshot.rcu(|_| {
            let mask = self.pending_mask() | self.shared.own.mask();
            if mask == 0 {
                Arc::clone(&snapshot)
            } else {
                Arc::new(snapshot.without(mask, now))
            }
        });
        self.shared.note_roles();
    }

    /// Re-probes every node now (a write found no primary, or the primary failed):
    /// the new primary is known as soon as it answers, not at the next interval.
    pub fn reprobe(&self) {
        for wake in &self.wake {
            wake.notify_one();
        }
    }

    /// Writes the published state to the shared segment (the state lock held).
    fn mirror(&self, st: &EngineState, events: &[Event]) {
        self.published_ns
            .store(crate::shm::clock::now_ns(), Ordering::Relaxed);
        if let Some(p) = &self.publisher {
            p.publish(&st.nodes, &self.shared.snapshot.load(), events);
        }
    }

    /// The nodes out of reads for a passive fault not folded in yet: a fault's node
    /// and every node probed with it (one server).
    fn pending_mask(&self) -> u64 {
        self.pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.load().is_some())
            .flat_map(|(i, _)| self.groups.with(i))
            .filter(|&&j| j < 64)
            .fold(0, |m, &j| m | (1u64 << j))
    }

    /// Folds passive faults into the health machines (the lock is held by the caller).
    fn drain_passive(&self, st: &mut EngineState, now: Instant) -> Vec<Event> {
        let cfg = &self.shared.config;
        let mut events = Vec::new();
        for (idx, slot) in self.pending.iter().enumerate() {
            if let Some(fault) = slot.swap(None) {
                let group = self.groups.with(idx);
                events.extend(step::passive_group(cfg, st, group, (*fault).clone(), now));
            }
        }
        events
    }

    /// A real connection or query failed on node `idx` for a node fault: the node
    /// leaves reads at once, is re-probed at once, and comes back after RISE good
    /// probes. So do the nodes probed with it (its group: the same server through
    /// another alias, which a refused or dropped connection takes down just as well).
    /// No I/O; no lock is waited for (the state is updated now only if the prober
    /// does not hold it, else by the prober's next step). Returns whether the node,
    /// or another node of its group, was taking reads until now.
    pub fn report_passive(&self, idx: usize, fault: Fault, now: Instant) -> bool {
        let Some(slot) = self.pending.get(idx) else {
            return false;
        };
        let group = self.groups.with(idx);
        let was_in_reads = group.iter().any(|&j| self.shared.takes_reads(j));
        let writer = self.shared.snapshot.load().roles.writer_node();
        let was_writer = writer.is_some_and(|w| group.contains(&w));
        slot.store(Some(Arc::new(fault)));
        if let Some(r) = self
            .groups
            .group_of
            .get(idx)
            .and_then(|&g| self.reconnect.get(g))
        {
            r.store(true, Ordering::Relaxed);
        }
        for &j in group {
            self.shared.exclude(j, now);
        }
        if was_writer {
            // The primary failed under a query: find where writes go now.
            self.reprobe();
        } else if let Some(wake) = self
            .groups
            .group_of
            .get(idx)
            .and_then(|&g| self.wake.get(g))
        {
            wake.notify_one();
        }
        if let Ok(mut guard) = self.state.try_lock() {
            guard.patroni = self.shared.patroni_view();
            let events = self.drain_passive(&mut guard, now);
            let ha = guard.patroni.clone();
            let snapshot = build_snapshot_ha(&self.shared.config, &guard.nodes, ha.as_deref(), now);
            self.publish(snapshot, now);
            self.mirror(&guard, &events);
            drop(guard);
            for event in events {
                self.event(event);
            }
        }
        was_in_reads
    }
}

/// How the host's shared prober (`shm::Sharing`) runs this engine when its process
/// leads: the inherent methods above, unchanged.
impl Probing for Engine {
    fn start(
        shared: Arc<Shared>,
        events: Arc<Events>,
        publisher: Option<Arc<Publisher>>,
        seed: Option<Vec<NodeStatus>>,
    ) -> Arc<Engine> {
        Engine::start(shared, events, publisher, seed)
    }

    fn reprobe(&self) {
        Engine::reprobe(self);
    }

    fn refresh(&self) {
        Engine::refresh(self);
    }

    fn report_passive(&self, idx: usize, fault: Fault, now: Instant) -> bool {
        Engine::report_passive(self, idx, fault, now)
    }

    fn view(&self, shared: bool) -> ProberView {
        Engine::view(self, shared)
    }

    fn stop(&self) {
        Engine::stop(self);
    }
}

// The probe loop, one per group (`ProbeGroups`).
mod probe_loop;
use probe_loop::probe_loop;

// [s3-patroni] `Engine::refresh`: Patroni's view changed.
mod refresh;

#[cfg(test)]
mod tests;
