//! The background prober: one thread per process with a single-threaded tokio runtime,
//! one task per node, every probe under its own deadline. It folds observations into
//! the health machines and publishes an immutable snapshot for the pick path.
//!
//! The thread never calls Python. State changes are parked as events that a Python
//! thread collects with `wait_events` (the GIL released while it waits).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{watch, Notify};
use tokio::time::MissedTickBehavior;

use crate::config::{ClusterConfig, Role};
use crate::health::{Health, State, WalHistory};
use crate::probe::{format_lsn, Fault, FaultKind, Prober, Sample};
use crate::select::{SnapNode, Snapshot, REASON_COUNT};

/// Bumped in the child after every `fork()`: threads do not survive a fork, and the
/// parent's view of the cluster must not be trusted there.
pub static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    // Only an atomic add: nothing else is async-signal-safe here.
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

pub fn install_fork_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registering a handler that only touches an atomic.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

/// Logging levels, as Python's `logging` numbers them.
pub const INFO: u8 = 20;
pub const WARNING: u8 = 30;
pub const ERROR: u8 = 40;

const MAX_EVENTS: usize = 1000;

/// A state change for Python's `logging`, handed over by `wait_events`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// A Python logging level (`INFO`, `WARNING`, `ERROR`).
    pub level: u8,
    pub message: String,
    /// The node it is about, if one.
    pub node: Option<usize>,
    /// The node's new state, for a state change.
    pub state: Option<State>,
    /// The node was declared down for timeouts (frozen, blackholed): connections in
    /// flight to it will not answer and should be interrupted.
    pub interrupt: bool,
}

impl Event {
    fn about(level: u8, message: String, node: usize) -> Event {
        Event {
            level,
            message,
            node: Some(node),
            state: None,
            interrupt: false,
        }
    }

    fn cluster(level: u8, message: String) -> Event {
        Event {
            level,
            message,
            node: None,
            state: None,
            interrupt: false,
        }
    }
}

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

/// Everything known about one node, for `status()`.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    pub health: Health,
    pub sample: Option<Sample>,
    pub last_probe: Option<Instant>,
    pub latency: Option<Duration>,
    pub last_error: Option<Fault>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    /// A replica that is not in recovery (promoted), or a primary that is.
    pub role_mismatch: bool,
    pub probes: u64,
    pub failed_probes: u64,
    /// Failures of real connections or queries reported by the database backend.
    pub passive_faults: u64,
}

struct EngineState {
    nodes: Vec<NodeStatus>,
    primary_wal: WalHistory,
    /// Whether "two nodes claim primary" has been reported for the current episode.
    split_brain_reported: bool,
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
        let nodes = cfg
            .nodes
            .iter()
            .map(|_| NodeStatus {
                health: Health::new(cfg.fall, cfg.rise, now),
                sample: None,
                last_probe: None,
                latency: None,
                last_error: None,
                lag_bytes: None,
                lag_seconds: None,
                role_mismatch: false,
                probes: 0,
                failed_probes: 0,
                passive_faults: 0,
            })
            .collect();
        let pending = cfg.nodes.iter().map(|_| ArcSwapOption::empty()).collect();
        let wake = cfg.nodes.iter().map(|_| Notify::new()).collect();
        let (stop_tx, _) = watch::channel(false);
        let engine = Arc::new(Engine {
            shared,
            state: Mutex::new(EngineState {
                nodes,
                primary_wal: WalHistory::default(),
                split_brain_reported: false,
            }),
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
                ERROR,
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
                    ERROR,
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
        let window = cfg.staleness_window();
        let mut events: Vec<Event> = Vec::new();
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        self.drain_passive(st, now, &mut events);
        let node_cfg = &cfg.nodes[idx];
        let what = format!("{} {:?}", node_cfg.role.as_str(), node_cfg.alias);

        let transition = match outcome {
            Ok(sample) => {
                let n = &mut st.nodes[idx];
                n.probes += 1;
                n.last_probe = Some(now);
                n.latency = Some(latency);
                if idx == 0 {
                    if let (false, Some(lsn)) = (sample.in_recovery, sample.current_lsn) {
                        st.primary_wal.push(lsn, now);
                    }
                }
                let primary_fresh = st.nodes[0].health.is_fresh(now, window)
                    && st.nodes[0].sample.as_ref().is_some_and(|s| !s.in_recovery);
                let n = &mut st.nodes[idx];
                let mismatch = match node_cfg.role {
                    Role::Primary => sample.in_recovery,
                    Role::Replica => !sample.in_recovery,
                };
                if mismatch != n.role_mismatch {
                    n.role_mismatch = mismatch;
                    let (level, message) = match (node_cfg.role, mismatch) {
                        (Role::Replica, true) => (
                            ERROR,
                            format!(
                                "{what} is no longer in recovery (promoted?): it is not read \
                                 from as a replica; timeline {}",
                                fmt_opt(sample.timeline)
                            ),
                        ),
                        (Role::Primary, true) => (
                            ERROR,
                            format!("{what} is in recovery (demoted?): writes to it will fail"),
                        ),
                        (_, false) => (INFO, format!("{what} is back in its configured role")),
                    };
                    events.push(Event::about(level, message, idx));
                }
                let (lag_bytes, lag_seconds) = match (idx, sample.in_recovery, sample.replay_lsn) {
                    (i, true, Some(replayed)) if i > 0 && primary_fresh => {
                        let primary_lsn = st.primary_wal.latest().map(|(l, _)| l).unwrap_or(0);
                        (
                            Some(primary_lsn.saturating_sub(replayed)),
                            st.primary_wal.lag_seconds(replayed, now),
                        )
                    }
                    _ => (None, None),
                };
                n.lag_bytes = lag_bytes;
                n.lag_seconds = lag_seconds;
                let over = if idx == 0 || mismatch {
                    Some(false)
                } else {
                    over_limit(cfg, lag_bytes, lag_seconds)
                };
                n.sample = Some(sample);
                let t = n.health.on_success(over, now);
                // Keep the error that took the node down until it is back (RISE).
                if n.health.state.is_live() {
                    n.last_error = None;
                }
                t
            }
            Err(fault) => {
                let n = &mut st.nodes[idx];
                n.probes += 1;
                n.failed_probes += 1;
                n.last_probe = Some(now);
                n.latency = Some(latency);
                let t = n.health.on_failure(fault.kind, now);
                if t.is_none()
                    && fault.kind.is_config_error()
                    && n.last_error.as_ref() != Some(&fault)
                {
                    events.push(Event::about(
                        ERROR,
                        format!("{what} is misconfigured: {}", fault.message),
                        idx,
                    ));
                }
                n.last_error = Some(fault);
                t
            }
        };

        if let Some((old, new)) = transition {
            let n = &st.nodes[idx];
            let cause = format!("after {} failed probe(s)", n.health.fail_streak);
            events.push(transition_event(cfg, idx, n, old, new, &cause));
        }

        self.check_split_brain(st, &mut events);
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
    fn drain_passive(&self, st: &mut EngineState, now: Instant, events: &mut Vec<Event>) {
        let cfg = &self.shared.config;
        for (idx, slot) in self.pending.iter().enumerate() {
            let Some(fault) = slot.swap(None) else {
                continue;
            };
            let n = &mut st.nodes[idx];
            n.passive_faults += 1;
            n.last_error = Some((*fault).clone());
            if let Some((old, new)) = n.health.on_passive_fault(now) {
                events.push(transition_event(
                    cfg,
                    idx,
                    n,
                    old,
                    new,
                    "reported by a query",
                ));
            }
        }
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
            let mut events = Vec::new();
            self.drain_passive(&mut guard, now, &mut events);
            let snapshot = build_snapshot(&self.shared.config, &guard.nodes, now);
            drop(guard);
            self.publish(snapshot, now);
            for event in events {
                self.event(event);
            }
        }
        was_in_reads
    }

    fn check_split_brain(&self, st: &mut EngineState, events: &mut Vec<Event>) {
        let cfg = &self.shared.config;
        let claims: Vec<(usize, Option<u32>)> = st
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.health.state.is_live())
            .filter_map(|(i, n)| match &n.sample {
                Some(s) if !s.in_recovery => Some((i, s.timeline)),
                _ => None,
            })
            .collect();
        if claims.len() < 2 {
            st.split_brain_reported = false;
            return;
        }
        if st.split_brain_reported {
            return;
        }
        st.split_brain_reported = true;
        let newest = claims.iter().max_by_key(|(_, tl)| tl.unwrap_or(0));
        let list: Vec<String> = claims
            .iter()
            .map(|(i, tl)| format!("{:?} (timeline {})", cfg.nodes[*i].alias, fmt_opt(*tl)))
            .collect();
        let newest = newest.map_or("unknown".into(), |(i, _)| {
            format!("{:?}", cfg.nodes[*i].alias)
        });
        events.push(Event::cluster(
            ERROR,
            format!(
                "{} nodes claim to be primary: {}; the newest timeline is on {newest}. Writes still \
                 go to the configured primary {:?}",
                claims.len(),
                list.join(", "),
                cfg.nodes[0].alias
            ),
        ));
    }
}

/// The log record of a node's state change; `cause` says what made it go down.
fn transition_event(
    cfg: &ClusterConfig,
    idx: usize,
    n: &NodeStatus,
    old: State,
    new: State,
    cause: &str,
) -> Event {
    let node_cfg = &cfg.nodes[idx];
    let what = format!("{} {:?}", node_cfg.role.as_str(), node_cfg.alias);
    let detail = match (&n.last_error, new) {
        (Some(f), State::Down | State::Misconfigured) => {
            format!(" {cause}: {}: {}", f.kind.as_str(), f.message)
        }
        (_, State::Lagging) => format!(
            " (lag {} bytes, {} s)",
            fmt_opt(n.lag_bytes),
            n.lag_seconds
                .map_or("unknown".into(), |s| format!("{s:.1}"))
        ),
        _ => String::new(),
    };
    let level = match new {
        State::Up => INFO,
        State::Lagging => WARNING,
        State::Misconfigured => ERROR,
        _ if idx == 0 => ERROR,
        _ => WARNING,
    };
    let interrupt = new == State::Down
        && n.last_error
            .as_ref()
            .is_some_and(|f| f.kind == FaultKind::Timeout);
    Event {
        interrupt,
        state: Some(new),
        ..Event::about(
            level,
            format!("{what} is {} (was {}){detail}", new.as_str(), old.as_str()),
            idx,
        )
    }
}

fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "unknown".into(), |v| v.to_string())
}

/// Over a lag limit? `None` when a limit is set but the lag is unknown.
fn over_limit(cfg: &ClusterConfig, bytes: Option<u64>, seconds: Option<f64>) -> Option<bool> {
    let mut over = false;
    if let Some(max) = cfg.max_lag_bytes {
        over |= bytes? > max;
    }
    if let Some(max) = cfg.max_lag_seconds {
        over |= seconds? > max;
    }
    Some(over)
}

pub fn build_snapshot(cfg: &ClusterConfig, nodes: &[NodeStatus], now: Instant) -> Snapshot {
    let window = cfg.staleness_window();
    let snap_nodes = nodes
        .iter()
        .zip(&cfg.nodes)
        .map(|(n, c)| {
            let state = n.health.state;
            let role_ok = c.role == Role::Primary || !n.role_mismatch;
            SnapNode {
                weight: c.weight,
                eligible: state == State::Up && role_ok,
                live: state.is_live(),
                lagging: state == State::Lagging,
                fresh_until: n.health.last_good.map_or(now, |t| t + window),
                visible_lsn: n.sample.as_ref().and_then(Sample::visible_lsn).unwrap_or(0),
            }
        })
        .collect();
    Snapshot::new(snap_nodes, now)
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
        if latency >= cfg.probe_interval {
            // After an overrun (a frozen node), keep a full interval before the next
            // probe; back-to-back probes would make RISE meaningless.
            ticker.reset();
        }
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
        engine.apply(idx, result, latency, Instant::now());
    }
}

/// Status text of an LSN, for `status()`.
pub fn lsn_text(lsn: Option<u64>) -> Option<String> {
    lsn.map(format_lsn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::cluster;
    use crate::select::Reason;

    fn sample_primary(lsn: u64) -> Sample {
        Sample {
            in_recovery: false,
            current_lsn: Some(lsn),
            timeline: Some(1),
            ..Sample::default()
        }
    }

    fn sample_standby(replayed: u64) -> Sample {
        Sample {
            in_recovery: true,
            receive_lsn: Some(replayed),
            replay_lsn: Some(replayed),
            receiver_status: Some("streaming".into()),
            timeline: Some(1),
            ..Sample::default()
        }
    }

    /// An engine whose thread probes nothing reachable; tests drive `apply` directly.
    fn engine(max_lag_bytes: Option<u64>) -> Arc<Engine> {
        let mut cfg = cluster(&[1.0, 1.0]);
        cfg.max_lag_bytes = max_lag_bytes;
        // An unroutable port on loopback: probes fail fast and never interfere
        // before the test is done (interval is long).
        for n in &mut cfg.nodes {
            n.port = 1;
        }
        cfg.probe_interval = Duration::from_secs(3600);
        let shared = Arc::new(Shared::new(cfg));
        let e = Engine::start(shared);
        e.stop();
        e
    }

    #[test]
    fn lag_bytes_come_from_the_primary_sample_and_limits_take_replica_out() {
        let e = engine(Some(1000));
        let now = Instant::now();
        e.apply(0, Ok(sample_primary(10_000)), Duration::ZERO, now);
        e.apply(1, Ok(sample_standby(10_000)), Duration::ZERO, now);
        let st = e.node_statuses();
        assert_eq!(st[1].lag_bytes, Some(0));
        assert_eq!(st[1].health.state, State::Up);
        e.apply(0, Ok(sample_primary(20_000)), Duration::ZERO, now);
        e.apply(1, Ok(sample_standby(10_000)), Duration::ZERO, now);
        let st = e.node_statuses();
        assert_eq!(st[1].lag_bytes, Some(10_000));
        assert_eq!(st[1].health.state, State::Lagging);
        let snap = e.shared.snapshot.load();
        assert_eq!(snap.pick(now, 0.99), (0, Reason::LagFallback));
    }

    #[test]
    fn promoted_replica_is_flagged_and_not_read_from() {
        let e = engine(None);
        let now = Instant::now();
        e.apply(0, Ok(sample_primary(100)), Duration::ZERO, now);
        let mut promoted = sample_primary(200);
        promoted.timeline = Some(2);
        e.apply(1, Ok(promoted), Duration::ZERO, now);
        let st = e.node_statuses();
        assert!(st[1].role_mismatch);
        let snap = e.shared.snapshot.load();
        for k in 0..50 {
            assert_eq!(snap.pick(now, k as f64 / 50.0).0, 0);
        }
        let events = e.wait_events(Duration::ZERO);
        assert!(
            events
                .iter()
                .any(|e| e.level == ERROR && e.message.contains("promoted")),
            "{events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| e.message.contains("claim to be primary")
                    && e.message.contains("newest timeline is on \"replica1\"")),
            "{events:?}"
        );
    }

    #[test]
    fn failures_then_recovery_publish_snapshots() {
        let e = engine(None);
        let now = Instant::now();
        e.apply(0, Ok(sample_primary(100)), Duration::ZERO, now);
        e.apply(1, Ok(sample_standby(100)), Duration::ZERO, now);
        let fault = || {
            Err(Fault {
                kind: FaultKind::Refused,
                message: "Connection refused".into(),
            })
        };
        e.apply(1, fault(), Duration::ZERO, now);
        e.apply(1, fault(), Duration::ZERO, now);
        assert_eq!(e.node_statuses()[1].health.state, State::Down);
        let events = e.wait_events(Duration::ZERO);
        assert!(
            events
                .iter()
                .any(|e| e.message.contains("is down (was up) after 2 failed")),
            "{events:?}"
        );
        e.apply(1, Ok(sample_standby(100)), Duration::ZERO, now);
        assert_eq!(e.node_statuses()[1].health.state, State::Down);
        e.apply(1, Ok(sample_standby(100)), Duration::ZERO, now);
        assert_eq!(e.node_statuses()[1].health.state, State::Up);
    }

    #[test]
    fn passive_fault_takes_node_out_now_and_rise_brings_it_back() {
        let e = engine(None);
        let now = Instant::now();
        e.apply(0, Ok(sample_primary(100)), Duration::ZERO, now);
        e.apply(1, Ok(sample_standby(100)), Duration::ZERO, now);
        let _ = e.wait_events(Duration::ZERO);
        let fault = Fault {
            kind: FaultKind::Timeout,
            message: "passive: connection timeout expired".into(),
        };
        assert!(e.report_passive(1, fault, now));
        // Out of reads at once, and in status (the prober held no lock here).
        let snap = e.shared.snapshot.load();
        for k in 0..50 {
            assert_eq!(snap.pick(now, k as f64 / 50.0).0, 0);
        }
        let st = e.node_statuses();
        assert_eq!(st[1].health.state, State::Down);
        assert_eq!(st[1].passive_faults, 1);
        let events = e.wait_events(Duration::ZERO);
        assert!(
            events.iter().any(|ev| ev.node == Some(1)
                && ev.interrupt
                && ev.message.contains("reported by a query")),
            "{events:?}"
        );
        // A second report while down is counted, and logs nothing.
        let again = Fault {
            kind: FaultKind::Refused,
            message: "passive: refused".into(),
        };
        assert!(!e.report_passive(1, again, now));
        assert_eq!(e.node_statuses()[1].passive_faults, 2);
        assert!(e.wait_events(Duration::ZERO).is_empty());
        // Back only after RISE (2) good probes.
        e.apply(1, Ok(sample_standby(100)), Duration::ZERO, now);
        assert_eq!(e.node_statuses()[1].passive_faults, 2);
        assert_eq!(e.node_statuses()[1].health.state, State::Down);
        e.apply(1, Ok(sample_standby(100)), Duration::ZERO, now);
        assert_eq!(e.node_statuses()[1].health.state, State::Up);
        assert_eq!(e.shared.snapshot.load().pick(now, 0.99).0, 1);
    }

    #[test]
    fn a_report_racing_with_a_publish_is_not_lost() {
        let e = engine(None);
        let now = Instant::now();
        e.apply(0, Ok(sample_primary(100)), Duration::ZERO, now);
        e.apply(1, Ok(sample_standby(100)), Duration::ZERO, now);
        // The prober holds its lock while a report arrives: the report waits for
        // nothing, and the prober's next publish keeps the node out.
        let guard = e.state.lock().unwrap();
        let fault = Fault {
            kind: FaultKind::Refused,
            message: "passive: refused".into(),
        };
        assert!(e.report_passive(1, fault, now));
        let stale = build_snapshot(&e.shared.config, &guard.nodes, now);
        drop(guard);
        e.publish(stale, now);
        assert_eq!(e.shared.snapshot.load().pick(now, 0.99).0, 0);
        assert_eq!(e.node_statuses()[1].health.state, State::Up);
        e.apply(0, Ok(sample_primary(100)), Duration::ZERO, now);
        assert_eq!(e.node_statuses()[1].health.state, State::Down);
    }

    #[test]
    fn over_limit_unknown_when_lag_unknown() {
        let mut cfg = cluster(&[1.0, 1.0]);
        assert_eq!(over_limit(&cfg, None, None), Some(false));
        cfg.max_lag_seconds = Some(5.0);
        assert_eq!(over_limit(&cfg, None, None), None);
        assert_eq!(over_limit(&cfg, None, Some(6.0)), Some(true));
        assert_eq!(over_limit(&cfg, None, Some(4.0)), Some(false));
    }
}
