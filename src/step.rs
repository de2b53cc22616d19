//! One step of the health monitor, as a pure function: an observation (a probe's
//! outcome, or a fault seen by real traffic) in, the nodes' new health and the events
//! to log out. No threads, no sockets, no clock reads: `monitor` drives it.

use std::time::{Duration, Instant};

use crate::config::{ClusterConfig, Role};
use crate::engine_state::EngineState;
use crate::events::{fmt_opt, Event, Severity};
use crate::health::State;
use crate::lag;
use crate::node_status::NodeStatus;
use crate::probe::{Fault, FaultKind, Sample};
use crate::roles::decide;
use crate::select::{SnapNode, Snapshot};

/// Folds one probe outcome of node `idx` into the state; returns the events.
#[cfg(test)]
pub(crate) fn observe(
    cfg: &ClusterConfig,
    st: &mut EngineState,
    idx: usize,
    outcome: Result<Sample, Fault>,
    latency: Duration,
    now: Instant,
) -> Vec<Event> {
    observe_group(cfg, st, &[idx], outcome, latency, now)
}

/// Folds one probe outcome into every node of `group` (nodes that are one probe
/// target, `config::ProbeGroups`: one server listed by several aliases), then
/// decides the roles and the herd once, so that no decision ever sees one server
/// half-updated; returns the events.
pub(crate) fn observe_group(
    cfg: &ClusterConfig,
    st: &mut EngineState,
    group: &[usize],
    outcome: Result<Sample, Fault>,
    latency: Duration,
    now: Instant,
) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    for &idx in group {
        fold(cfg, st, idx, outcome.clone(), latency, now, &mut events);
    }
    crate::roles::changes::update_roles(cfg, st, now, &mut events);
    check_herd(cfg, st, now, &mut events);
    events
}

/// Folds one probe outcome of node `idx` into its status and health machine.
fn fold(
    cfg: &ClusterConfig,
    st: &mut EngineState,
    idx: usize,
    outcome: Result<Sample, Fault>,
    latency: Duration,
    now: Instant,
    events: &mut Vec<Event>,
) {
    let window = cfg.staleness_window();
    let node_cfg = &cfg.nodes[idx];
    let what = format!("{} {:?}", node_cfg.role.as_str(), node_cfg.alias);

    let transition = match outcome {
        Ok(sample) => {
            let n = &mut st.nodes[idx];
            n.probes += 1;
            n.last_probe = Some(now);
            n.latency = Some(latency);
            // The primary is the observed one (before any is known: a node that says
            // it is not in recovery), whichever alias it was configured for.
            let writer = st.roles.writer_node();
            if writer.is_none_or(|w| w == idx) {
                if let (false, Some(lsn)) = (sample.in_recovery, sample.current_lsn) {
                    st.primary_wal.push(lsn, now);
                }
            }
            let primary_fresh = writer.is_some_and(|w| {
                st.nodes[w].health.is_fresh(now, window)
                    && st.nodes[w].sample.as_ref().is_some_and(|s| !s.in_recovery)
            });
            let primary_never_answered = st.nodes[0].health.state == State::Unknown;
            let n = &mut st.nodes[idx];
            events.extend(crate::roles::proxy::detect(
                node_cfg, n, &sample, &what, idx,
            ));
            // A host of a multi-host alias, or a proxy endpoint (whose server the proxy
            // picks), has no configured role to be out of.
            let mismatch = !node_cfg.multi_host
                && !n.proxy
                && match node_cfg.role {
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
                        format!(
                            "{what} is in recovery (demoted?): writes follow the observed primary"
                        ),
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
                    (i, true, Some(replayed)) if writer != Some(i) && primary_fresh => {
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
            let over = if writer == Some(idx) || !sample.in_recovery {
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
            // Down already (a query's connect failed), and now the probe times out too:
            // the node is frozen or blackholed, so queries in flight to it will not
            // answer; interrupt them once, as a transition for timeouts would.
            let passive_down_now_frozen = t.is_none()
                && fault.kind == FaultKind::Timeout
                && n.health.state == State::Down
                && n.last_error
                    .as_ref()
                    .is_some_and(|f| f.kind != FaultKind::Timeout);
            if passive_down_now_frozen {
                events.push(Event {
                    interrupt: true,
                    ..Event::about(
                        Severity::Warning,
                        format!("{what} stopped answering probes too ({})", fault.message),
                        idx,
                    )
                });
            }
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
}

/// A node fault seen by real traffic on node `idx` (see `Health::on_passive_fault`).
#[cfg(test)]
pub(crate) fn passive(
    cfg: &ClusterConfig,
    st: &mut EngineState,
    idx: usize,
    fault: Fault,
    now: Instant,
) -> Vec<Event> {
    passive_group(cfg, st, &[idx], fault, now)
}

/// A node fault seen by real traffic on a node of `group`: it is the server's, so
/// every node of the group takes it (each counts it in `passive_faults`, and each
/// that was live logs its own transition), then the roles are decided once.
pub(crate) fn passive_group(
    cfg: &ClusterConfig,
    st: &mut EngineState,
    group: &[usize],
    fault: Fault,
    now: Instant,
) -> Vec<Event> {
    let mut events = Vec::new();
    for &idx in group {
        let n = &mut st.nodes[idx];
        n.passive_faults += 1;
        n.last_error = Some(fault.clone());
        let transition = n.health.on_passive_fault(now);
        crate::roles::proxy::after_passive_fault(cfg, n);
        if let Some((old, new)) = transition {
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
    crate::roles::changes::update_roles(cfg, st, now, &mut events);
    events
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

/// `build_snapshot_ha` without Patroni.
#[cfg(test)]
pub fn build_snapshot(cfg: &ClusterConfig, nodes: &[NodeStatus], now: Instant) -> Snapshot {
    build_snapshot_ha(cfg, nodes, None, now)
}

/// The pick path's view, one entry per alias (primary alias first), each describing
/// the node that alias connects to now (`Roles::targets`): the primary alias is
/// eligible only while a primary is known, the others only on a standby. `ha`:
/// Patroni's view when `PATRONI_URLS` is set (see `roles::decide`).
pub fn build_snapshot_ha(
    cfg: &ClusterConfig,
    nodes: &[NodeStatus],
    ha: Option<&crate::patroni::View>,
    now: Instant,
) -> Snapshot {
    let window = cfg.staleness_window();
    let roles = decide(cfg, nodes, ha, now);
    let writer = roles.writer_node();
    let tolerated = lag::tolerated(cfg, nodes, now);
    let snap_nodes = cfg
        .nodes
        .iter()
        .enumerate()
        .map(|(slot, c)| {
            let target = roles.targets.get(slot).copied().unwrap_or(slot);
            let Some(n) = nodes.get(target) else {
                return SnapNode::unknown(c.weight, now);
            };
            let state = n.health.state;
            let standby = n.sample.as_ref().is_some_and(|s| s.in_recovery);
            // No primary known: the primary alias takes no reads (its connections wait
            // for a primary; reads never wait).
            let primary_reads = crate::roles::proxy::reads_as_primary(&roles, slot, target, n);
            let role_ok = if slot == 0 {
                writer == Some(target)
            } else {
                standby || primary_reads
            };
            // The herd policy tolerates a lagging standby behind a replica alias only.
            let tolerated = slot > 0 && role_ok && tolerated.get(target).copied().unwrap_or(false);
            let weight = if tolerated {
                c.weight * lag::tolerated_share(cfg, n.lag_seconds)
            } else if primary_reads {
                cfg.nodes[0].weight
            } else {
                c.weight
            };
            SnapNode {
                weight,
                eligible: state == State::Up && role_ok,
                live: state.is_live() && role_ok,
                lagging: state == State::Lagging,
                tolerated,
                fresh_until: n.health.last_good.map_or(now, |t| t + window),
                visible_lsn: n.sample.as_ref().and_then(Sample::visible_lsn).unwrap_or(0),
            }
        })
        .collect();
    Snapshot::new(snap_nodes, now).with_roles(roles)
}

mod herd;
use herd::check_herd;

#[cfg(test)]
pub(crate) mod tests;
