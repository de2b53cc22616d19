//! One step of the health monitor, as a pure function: an observation (a probe's
//! outcome, or a fault seen by real traffic) in, the nodes' new health and the events
//! to log out. No threads, no sockets, no clock reads: `monitor` drives it.

use std::time::{Duration, Instant};

use crate::config::{ClusterConfig, Role};
use crate::health::{Health, State, WalHistory};
use crate::lag;
use crate::probe::{Fault, FaultKind, Sample};
use crate::select::{SnapNode, Snapshot};

/// How loud an event is; the binding maps it to a Python logging level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Not logged: what another process's prober already logged, passed on so that
    /// this process acts on it (closes connections, interrupts queries).
    Silent,
    Info,
    Warning,
    Error,
}

/// A state change for Python's `logging`, handed over by `wait_events`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub severity: Severity,
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
    pub(crate) fn about(severity: Severity, message: String, node: usize) -> Event {
        Event {
            severity,
            message,
            node: Some(node),
            state: None,
            interrupt: false,
        }
    }

    pub(crate) fn cluster(severity: Severity, message: String) -> Event {
        Event {
            severity,
            message,
            node: None,
            state: None,
            interrupt: false,
        }
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
    /// `lag_seconds` is a measure, not a lower bound (the replica is not behind every
    /// position the prober remembers, as right after start-up). Only the prober's own
    /// state has it: the shared segment carries its effect (`SnapNode::tolerated`).
    pub lag_exact: bool,
    /// A replica that is not in recovery (promoted), or a primary that is.
    pub role_mismatch: bool,
    pub probes: u64,
    pub failed_probes: u64,
    /// Failures of real connections or queries reported by the database backend.
    pub passive_faults: u64,
}

pub(crate) struct EngineState {
    pub(crate) nodes: Vec<NodeStatus>,
    pub(crate) primary_wal: WalHistory,
    /// Whether "two nodes claim primary" has been reported for the current episode.
    pub(crate) split_brain_reported: bool,
    /// Where reads go while lag keeps replicas out, as last logged.
    pub(crate) herd: lag::Herd,
}

impl EngineState {
    pub(crate) fn new(cfg: &ClusterConfig, now: Instant) -> EngineState {
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
                lag_exact: false,
                role_mismatch: false,
                probes: 0,
                failed_probes: 0,
                passive_faults: 0,
            })
            .collect();
        EngineState {
            nodes,
            primary_wal: WalHistory::default(),
            split_brain_reported: false,
            herd: lag::Herd::Normal,
        }
    }
}

/// Folds one probe outcome of node `idx` into the state; returns the events.
pub(crate) fn observe(
    cfg: &ClusterConfig,
    st: &mut EngineState,
    idx: usize,
    outcome: Result<Sample, Fault>,
    latency: Duration,
    now: Instant,
) -> Vec<Event> {
    let window = cfg.staleness_window();
    let mut events: Vec<Event> = Vec::new();
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
            let primary_never_answered = st.nodes[0].health.state == State::Unknown;
            let n = &mut st.nodes[idx];
            let mismatch = match node_cfg.role {
                Role::Primary => sample.in_recovery,
                Role::Replica => !sample.in_recovery,
            };
            if mismatch != n.role_mismatch {
                n.role_mismatch = mismatch;
                let (level, message) = match (node_cfg.role, mismatch) {
                    (Role::Replica, true) => (
                        Severity::Error,
                        format!(
                            "{what} is no longer in recovery (promoted?): it is not read \
                             from as a replica; timeline {}",
                            fmt_opt(sample.timeline)
                        ),
                    ),
                    (Role::Primary, true) => (
                        Severity::Error,
                        format!("{what} is in recovery (demoted?): writes to it will fail"),
                    ),
                    (_, false) => (
                        Severity::Info,
                        format!("{what} is back in its configured role"),
                    ),
                };
                events.push(Event::about(level, message, idx));
            }
            let (lag_bytes, lag_seconds, lag_exact) =
                match (idx, sample.in_recovery, sample.replay_lsn) {
                    (i, true, Some(replayed)) if i > 0 && primary_fresh => {
                        let primary_lsn = st.primary_wal.latest().map(|(l, _)| l).unwrap_or(0);
                        (
                            Some(primary_lsn.saturating_sub(replayed)),
                            st.primary_wal.lag_seconds(replayed, now),
                            st.primary_wal.covers(replayed),
                        )
                    }
                    _ => (None, None, false),
                };
            n.lag_bytes = lag_bytes;
            n.lag_seconds = lag_seconds;
            n.lag_exact = lag_exact;
            let over = if idx == 0 || mismatch {
                Some(false)
            } else {
                lag::over_limit(cfg, &sample, lag_bytes, lag_seconds)
            };
            n.sample = Some(sample);
            let t = if over.is_none() && primary_never_answered && n.health.state == State::Unknown
            {
                n.health.on_success_awaiting_primary(now);
                None
            } else {
                n.health.on_success(over, now)
            };
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
            if t.is_none() && fault.kind.is_config_error() && n.last_error.as_ref() != Some(&fault)
            {
                events.push(Event::about(
                    Severity::Error,
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

    check_split_brain(cfg, st, &mut events);
    check_herd(cfg, st, now, &mut events);
    events
}

/// A node fault seen by real traffic on node `idx` (see `Health::on_passive_fault`).
pub(crate) fn passive(
    cfg: &ClusterConfig,
    st: &mut EngineState,
    idx: usize,
    fault: Fault,
    now: Instant,
) -> Vec<Event> {
    let n = &mut st.nodes[idx];
    n.passive_faults += 1;
    n.last_error = Some(fault);
    match n.health.on_passive_fault(now) {
        Some((old, new)) => vec![transition_event(
            cfg,
            idx,
            n,
            old,
            new,
            "reported by a query",
        )],
        None => Vec::new(),
    }
}

fn check_split_brain(cfg: &ClusterConfig, st: &mut EngineState, events: &mut Vec<Event>) {
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
        Severity::Error,
        format!(
            "{} nodes claim to be primary: {}; the newest timeline is on {newest}. Writes still \
             go to the configured primary {:?}",
            claims.len(),
            list.join(", "),
            cfg.nodes[0].alias
        ),
    ));
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
            ": {} (lag {} bytes, {} s)",
            lag::cause(cfg, n).unwrap_or_default(),
            fmt_opt(n.lag_bytes),
            n.lag_seconds
                .map_or("unknown".into(), |s| format!("{s:.1}"))
        ),
        _ => String::new(),
    };
    let severity = match new {
        State::Up => Severity::Info,
        State::Lagging => Severity::Warning,
        State::Misconfigured => Severity::Error,
        _ if idx == 0 => Severity::Error,
        _ => Severity::Warning,
    };
    let interrupt = new == State::Down
        && n.last_error
            .as_ref()
            .is_some_and(|f| f.kind == FaultKind::Timeout);
    Event {
        interrupt,
        state: Some(new),
        ..Event::about(
            severity,
            format!("{what} is {} (was {}){detail}", new.as_str(), old.as_str()),
            idx,
        )
    }
}

pub(crate) fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "unknown".into(), |v| v.to_string())
}

pub fn build_snapshot(cfg: &ClusterConfig, nodes: &[NodeStatus], now: Instant) -> Snapshot {
    let window = cfg.staleness_window();
    let tolerated = lag::tolerated(cfg, nodes, now);
    let snap_nodes = nodes
        .iter()
        .zip(&cfg.nodes)
        .zip(tolerated)
        .map(|((n, c), tolerated)| {
            let state = n.health.state;
            let role_ok = c.role == Role::Primary || !n.role_mismatch;
            let weight = if tolerated {
                c.weight * lag::tolerated_share(cfg, n.lag_seconds)
            } else {
                c.weight
            };
            SnapNode {
                weight,
                eligible: state == State::Up && role_ok,
                live: state.is_live(),
                lagging: state == State::Lagging,
                tolerated,
                fresh_until: n.health.last_good.map_or(now, |t| t + window),
                visible_lsn: n.sample.as_ref().and_then(Sample::visible_lsn).unwrap_or(0),
            }
        })
        .collect();
    Snapshot::new(snap_nodes, now)
}

mod herd;
use herd::check_herd;

#[cfg(test)]
pub(crate) mod tests;
