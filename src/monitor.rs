//! The background prober: one thread per process with a single-threaded tokio runtime,
//! one task per node, every probe under its own deadline. It folds observations into
//! the health machines and publishes an immutable snapshot for the pick path.
//!
//! The thread never calls Python. State changes are parked as events that a Python
//! thread collects with `wait_events` (the GIL released while it waits).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{watch, Notify};
use tokio::time::MissedTickBehavior;

use crate::config::ClusterConfig;
use crate::probe::{Fault, FaultKind, Prober, Sample};
use crate::select::{Snapshot, REASON_COUNT};
use crate::step::{self, build_snapshot, EngineState, Event, NodeStatus, Severity};

const MAX_EVENTS: usize = 1000;

/// What lives as long as the Python object: config, the published snapshot, counters.
pub struct Shared {
    pub config: ClusterConfig,
    pub snapshot: ArcSwap<Snapshot>,
    /// Reads routed, per node and per reason.
    pub reads: Vec<[AtomicU64; REASON_COUNT]>,
    pub writes: AtomicU64,
}

impl Shared {
    pub fn new(config: ClusterConfig) -> Shared {
        let weights: Vec<f64> = config.nodes.iter().map(|n| n.weight).collect();
        let reads = config
            .nodes
            .iter()
            .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            .collect();
        Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::cold(&weights, Instant::now())),
            config,
            reads,
            writes: AtomicU64::new(0),
        }
    }

    pub fn weights(&self) -> Vec<f64> {
        self.config.nodes.iter().map(|n| n.weight).collect()
    }
}

/// One process's prober. Replaced whole after a fork; never dropped in a child.
pub struct Engine {
    shared: Arc<Shared>,
    state: Mutex<EngineState>,
    /// A node fault seen by real traffic, per node, until the prober folds it in.
    /// Lock-free, so that reporting never waits for the prober.
    pending: Vec<ArcSwapOption<Fault>>,
    /// Wakes a node's probe loop for an immediate re-probe.
    wake: Vec<Notify>,
    events: Mutex<VecDeque<Event>>,
    events_ready: Condvar,
    stopping: AtomicBool,
    stop_tx: watch::Sender<bool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Wall clock and monotonic clock read together, to report instants as Unix times.
    epoch: (SystemTime, Instant),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock must not take the router down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// Publishes a cold snapshot and starts the prober thread.
    pub fn start(shared: Arc<Shared>) -> Arc<Engine> {
        let now = Instant::now();
        shared
            .snapshot
            .store(Arc::new(Snapshot::cold(&shared.weights(), now)));
        let cfg = &shared.config;
        let state = EngineState::new(cfg, now);
        let pending = cfg.nodes.iter().map(|_| ArcSwapOption::empty()).collect();
        let wake = cfg.nodes.iter().map(|_| Notify::new()).collect();
        let (stop_tx, _) = watch::channel(false);
        let engine = Arc::new(Engine {
            shared,
            state: Mutex::new(state),
            pending,
            wake,
            events: Mutex::new(VecDeque::new()),
            events_ready: Condvar::new(),
            stopping: AtomicBool::new(false),
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
            for idx in 0..self.shared.config.nodes.len() {
                tasks.spawn(node_loop(Arc::clone(&self), idx, self.stop_tx.subscribe()));
            }
            while tasks.join_next().await.is_some() {}
        });
        // Dropping the runtime aborts what is left, closing every probe socket.
        drop(runtime);
    }

    /// Stops probing and waits for the thread (bounded: every await in it also
    /// listens for the stop signal).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop_tx.send_replace(true);
        self.events_ready.notify_all();
        let handle = lock(&self.thread).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn event(&self, event: Event) {
        let mut q = lock(&self.events);
        if q.len() >= MAX_EVENTS {
            q.pop_front();
        }
        q.push_back(event);
        drop(q);
        self.events_ready.notify_all();
    }

    /// Waits up to `timeout` for state-change events and takes them all.
    pub fn wait_events(&self, timeout: Duration) -> Vec<Event> {
        let mut q = lock(&self.events);
        if q.is_empty() && !self.is_stopping() {
            q = match self.events_ready.wait_timeout(q, timeout) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        q.drain(..).collect()
    }

    pub fn unix_time(&self, t: Instant) -> f64 {
        let (wall, mono) = self.epoch;
        let at = if t >= mono {
            wall + (t - mono)
        } else {
            wall - (mono - t)
        };
        at.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }

    pub fn node_statuses(&self) -> Vec<NodeStatus> {
        lock(&self.state).nodes.clone()
    }

    /// Folds one probe outcome into the node's state and publishes a new snapshot.
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
        let mut events = self.drain_passive(st, now);
        events.extend(step::observe(cfg, st, idx, outcome, latency, now));
        let snapshot = build_snapshot(cfg, &st.nodes, now);
        drop(guard);
        self.publish(snapshot, now);
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
            let mask = self.pending_mask();
            if mask == 0 {
                Arc::clone(&snapshot)
            } else {
                Arc::new(snapshot.without(mask, now))
            }
        });
    }

    fn pending_mask(&self) -> u64 {
        self.pending
            .iter()
            .enumerate()
            .take(64)
            .filter(|(_, p)| p.load().is_some())
            .fold(0, |m, (i, _)| m | (1u64 << i))
    }

    /// Folds passive faults into the health machines (the lock is held by the caller).
    fn drain_passive(&self, st: &mut EngineState, now: Instant) -> Vec<Event> {
        let cfg = &self.shared.config;
        let mut events = Vec::new();
        for (idx, slot) in self.pending.iter().enumerate() {
            if let Some(fault) = slot.swap(None) {
                events.extend(step::passive(cfg, st, idx, (*fault).clone(), now));
            }
        }
        events
    }

    /// A real connection or query failed on node `idx` for a node fault: the node
    /// leaves reads at once, is re-probed at once, and comes back after RISE good
    /// probes. No I/O; no lock is waited for (the state is updated now only if the
    /// prober does not hold it, else by the prober's next step). Returns whether the
    /// node was taking reads until now.
    pub fn report_passive(&self, idx: usize, fault: Fault, now: Instant) -> bool {
        let Some(slot) = self.pending.get(idx) else {
            return false;
        };
        let was_in_reads = self
            .shared
            .snapshot
            .load()
            .nodes
            .get(idx)
            .is_some_and(|n| n.eligible || n.live);
        slot.store(Some(Arc::new(fault)));
        let bit = if idx < 64 { 1u64 << idx } else { 0 };
        self.shared.snapshot.rcu(|s| Arc::new(s.without(bit, now)));
        if let Some(wake) = self.wake.get(idx) {
            wake.notify_one();
        }
        if let Ok(mut guard) = self.state.try_lock() {
            let events = self.drain_passive(&mut guard, now);
            let snapshot = build_snapshot(&self.shared.config, &guard.nodes, now);
            drop(guard);
            self.publish(snapshot, now);
            for event in events {
                self.event(event);
            }
        }
        was_in_reads
    }
}

async fn node_loop(engine: Arc<Engine>, idx: usize, mut stop: watch::Receiver<bool>) {
    let cfg = &engine.shared.config;
    let timeout = cfg.probe_timeout;
    let mut prober = Prober::new(&cfg.nodes[idx], timeout);
    let mut ticker = tokio::time::interval(cfg.probe_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            // A passive fault: probe now rather than at the next tick.
            _ = engine.wake[idx].notified() => {}
            _ = stop.wait_for(|&stopping| stopping) => return,
        }
        let started = Instant::now();
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, prober.probe()) => r,
            _ = stop.wait_for(|&stopping| stopping) => return,
        };
        let latency = started.elapsed();
        let result = match outcome {
            Ok(r) => r,
            Err(_) => {
                // Dropping the half-done connection closes its socket now.
                prober.reset();
                Err(Fault {
                    kind: FaultKind::Timeout,
                    message: format!(
                        "no answer within PROBE_TIMEOUT ({:.3} s)",
                        timeout.as_secs_f64()
                    ),
                })
            }
        };
        if latency >= cfg.probe_interval && result.is_ok() {
            // A good probe that overran (a node just thawed): keep a full interval
            // before the next one, or back-to-back probes would make RISE meaningless.
            // A failed one does not wait: the next tick is due, and going down within
            // FALL x PROBE_INTERVAL + PROBE_TIMEOUT is what interrupts in-flight
            // reads on a frozen node.
            ticker.reset();
        }
        engine.apply(idx, result, latency, Instant::now());
    }
}

#[cfg(test)]
mod tests;
