//! What `status()` says about each node, as a plain struct built in the core: the
//! staleness rule (a live node whose last good probe is too old counts as down)
//! is applied here, once. The binding only converts it to a Python dict.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use crate::config::ClusterConfig;
use crate::health::State;
use crate::node_status::NodeStatus;
use crate::probe::format_lsn;
use crate::select::{REASON_COUNT, REASON_NAMES};
use crate::shared::Shared;

/// What this process knows of the prober: its own, or the shared one of the host.
pub(crate) struct ProberView {
    pub nodes: Vec<NodeStatus>,
    /// Wall clock and monotonic clock read together, to report instants as Unix times.
    pub epoch: (SystemTime, Instant),
    /// The process that probes (this one, unless health is shared).
    pub prober_pid: u32,
    /// Health comes from (or goes to) the host's shared segment.
    pub shared: bool,
    /// Seconds since the prober last published (`None` before its first publish).
    pub snapshot_age: Option<f64>,
}

impl ProberView {
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
}

/// One node's report; see `_core.pyi` (`NodeStatus`) for what each field means.
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeReport {
    pub alias: String,
    pub configured_role: &'static str,
    pub weight: f64,
    pub host: String,
    pub port: u16,
    pub reads_routed: u64,
    pub reads_by_reason: Vec<(&'static str, u64)>,
    /// `None` until the prober started in this process.
    pub probed: Option<Probed>,
}

/// What the prober knows about a node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Probed {
    pub state: &'static str,
    pub stale: bool,
    pub observed_role: Option<&'static str>,
    pub role_mismatch: bool,
    pub timeline: Option<u32>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    /// Why a lagging node is out of weighted reads (`lag::cause`).
    pub lag_reason: Option<String>,
    pub replay_paused: Option<bool>,
    pub wal_receiver_status: Option<String>,
    pub current_lsn: Option<String>,
    pub receive_lsn: Option<String>,
    pub replay_lsn: Option<String>,
    pub latency_ms: Option<f64>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub probes: u64,
    pub failed_probes: u64,
    pub passive_faults: u64,
    pub last_error: Option<String>,
    pub error_class: Option<&'static str>,
    pub last_state_change: f64,
    pub last_probe: Option<f64>,
    pub last_good_probe_age: Option<f64>,
    pub prober_pid: u32,
    pub shared: bool,
    pub snapshot_age: Option<f64>,
}

/// Every node's report, primary first.
pub(crate) fn reports(shared: &Shared, view: Option<&ProberView>, now: Instant) -> Vec<NodeReport> {
    let cfg: &ClusterConfig = &shared.config;
    let window = cfg.staleness_window();
    cfg.nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let counters = &shared.reads[i];
            let reads_by_reason: Vec<(&'static str, u64)> = (0..REASON_COUNT)
                .map(|r| (REASON_NAMES[r], counters[r].load(Ordering::Relaxed)))
                .collect();
            let probed = match (view, view.and_then(|v| v.nodes.get(i))) {
                (Some(view), Some(st)) => {
                    let fresh = st.health.is_fresh(now, window);
                    let stale = st.health.state.is_live() && !fresh;
                    let sample = st.sample.as_ref();
                    Some(Probed {
                        state: if stale { State::Down } else { st.health.state }.as_str(),
                        stale,
                        observed_role: sample.map(|s| {
                            if s.in_recovery {
                                "replica"
                            } else {
                                "primary"
                            }
                        }),
                        role_mismatch: st.role_mismatch,
                        timeline: sample.and_then(|s| s.timeline),
                        lag_bytes: st.lag_bytes,
                        lag_seconds: st.lag_seconds,
                        lag_reason: if stale {
                            None
                        } else {
                            crate::lag::cause(cfg, st)
                        },
                        replay_paused: sample.map(|s| s.replay_paused),
                        wal_receiver_status: sample.and_then(|s| s.receiver_status.clone()),
                        current_lsn: sample.and_then(|s| s.current_lsn).map(format_lsn),
                        receive_lsn: sample.and_then(|s| s.receive_lsn).map(format_lsn),
                        replay_lsn: sample.and_then(|s| s.replay_lsn).map(format_lsn),
                        latency_ms: st.latency.map(|l| l.as_secs_f64() * 1000.0),
                        consecutive_failures: st.health.fail_streak,
                        consecutive_successes: st.health.ok_streak,
                        probes: st.probes,
                        failed_probes: st.failed_probes,
                        passive_faults: st.passive_faults,
                        last_error: st.last_error.as_ref().map(|f| f.message.clone()),
                        error_class: st.last_error.as_ref().map(|f| f.kind.as_str()),
                        last_state_change: view.unix_time(st.health.last_change),
                        last_probe: st.last_probe.map(|t| view.unix_time(t)),
                        last_good_probe_age: st
                            .health
                            .last_good
                            .map(|t| now.saturating_duration_since(t).as_secs_f64()),
                        prober_pid: view.prober_pid,
                        shared: view.shared,
                        snapshot_age: view.snapshot_age,
                    })
                }
                _ => None,
            };
            let probed = match shared.own.get(i) {
                // This process's own login failed: whatever the prober says.
                Some(fault) => Some(Probed {
                    state: State::Misconfigured.as_str(),
                    stale: false,
                    last_error: Some(fault.message),
                    error_class: Some(fault.kind.as_str()),
                    ..probed.unwrap_or_default()
                }),
                None => probed,
            };
            NodeReport {
                alias: node.alias.clone(),
                configured_role: node.role.as_str(),
                weight: node.weight,
                host: node.host.clone(),
                port: node.port,
                reads_routed: reads_by_reason.iter().map(|(_, v)| v).sum(),
                reads_by_reason,
                probed,
            }
        })
        .collect()
}
