//! What `status()` says about each node, built in the core from the prober's record
//! (`NodeStatus`) and this process's own counters and roles. The keys, their types
//! and how every consumer shows them are one table, `fields::FIELDS`; this module
//! only gathers what its getters read. The staleness rule (a live node whose last
//! good probe is too old counts as down) and the own-login rule (this process's own
//! login failed: misconfigured) are applied here, once.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use crate::config::ClusterConfig;
use crate::engine_state::EngineState;
use crate::health::State;
use crate::node_status::NodeStatus;
use crate::probe::{Fault, Sample};
use crate::roles::Roles;
use crate::select::{REASON_COUNT, REASON_NAMES};
use crate::shared::Shared;

pub(crate) mod fields;

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

fn unix_time((wall, mono): (SystemTime, Instant), t: Instant) -> f64 {
    let at = if t >= mono {
        wall + (t - mono)
    } else {
        wall - (mono - t)
    };
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One node, as the table's getters read it.
pub(crate) struct NodeReport<'a> {
    pub cfg: &'a ClusterConfig,
    pub idx: usize,
    /// Reads routed to the node in this process, by reason (the core's order).
    pub reads_by_reason: Vec<(&'static str, u64)>,
    pub primary_now: bool,
    pub connected_as: Option<String>,
    /// The node's member in Patroni's last answer: `(role, state)` (`None`s without
    /// `PATRONI_URLS` or a member at the node's host:port).
    pub patroni: (Option<String>, Option<String>),
    /// `None` until the prober started in this process.
    pub probed: Option<Probed<'a>>,
}

impl NodeReport<'_> {
    pub fn node(&self) -> &crate::config::NodeConfig {
        &self.cfg.nodes[self.idx]
    }
}

/// What the prober knows about a node, with what this process adds to it.
pub(crate) struct Probed<'a> {
    pub cfg: &'a ClusterConfig,
    /// The prober's record (a fresh one when only this process's own login failed).
    pub st: Cow<'a, NodeStatus>,
    pub epoch: (SystemTime, Instant),
    pub prober_pid: u32,
    pub shared: bool,
    pub snapshot_age: Option<f64>,
    /// A live node whose last good probe is older than the staleness window.
    pub stale: bool,
    /// This process's own login failed (`own_error`): misconfigured here, whatever
    /// the prober says.
    pub own: Option<Fault>,
    pub now: Instant,
}

impl Probed<'_> {
    pub fn state(&self) -> State {
        if self.own.is_some() {
            State::Misconfigured
        } else if self.stale {
            State::Down
        } else {
            self.st.health.state
        }
    }

    pub fn sample(&self) -> Option<&Sample> {
        self.st.sample.as_ref()
    }

    /// The error to show: this process's own, else the prober's last.
    pub fn error(&self) -> Option<&Fault> {
        self.own.as_ref().or(self.st.last_error.as_ref())
    }

    pub fn unix(&self, t: Instant) -> f64 {
        unix_time(self.epoch, t)
    }
}

/// The report of node `idx` from the prober's record `st` (no own error).
pub(crate) fn probed<'a>(
    cfg: &'a ClusterConfig,
    st: &'a NodeStatus,
    view: &ProberView,
    now: Instant,
) -> Probed<'a> {
    let fresh = st.health.is_fresh(now, cfg.staleness_window());
    Probed {
        cfg,
        st: Cow::Borrowed(st),
        epoch: view.epoch,
        prober_pid: view.prober_pid,
        shared: view.shared,
        snapshot_age: view.snapshot_age,
        stale: st.health.state.is_live() && !fresh,
        own: None,
        now,
    }
}

/// Every node's report, primary first.
pub(crate) fn reports<'a>(
    shared: &'a Shared,
    view: Option<&'a ProberView>,
    now: Instant,
) -> Vec<NodeReport<'a>> {
    let cfg: &ClusterConfig = &shared.config;
    let roles = std::sync::Arc::clone(&shared.snapshot.load().roles);
    let patroni = shared.patroni_view();
    (0..cfg.nodes.len())
        .map(|i| {
            let counters = &shared.reads[i];
            let reads_by_reason: Vec<(&'static str, u64)> = (0..REASON_COUNT)
                .map(|r| (REASON_NAMES[r], counters[r].load(Ordering::Relaxed)))
                .collect();
            let probed = view.and_then(|v| Some(probed(cfg, v.nodes.get(i)?, v, now)));
            let probed = match (shared.own.get(i), probed) {
                (Some(fault), Some(p)) => Some(Probed {
                    own: Some(fault),
                    ..p
                }),
                // The own login failed before the prober's first report: a fresh record.
                (Some(fault), None) => {
                    EngineState::new(cfg, now)
                        .nodes
                        .into_iter()
                        .nth(i)
                        .map(|st| Probed {
                            cfg,
                            st: Cow::Owned(st),
                            epoch: (SystemTime::now(), now),
                            prober_pid: 0,
                            shared: false,
                            snapshot_age: None,
                            stale: false,
                            own: Some(fault),
                            now,
                        })
                }
                (None, p) => p,
            };
            NodeReport {
                cfg,
                idx: i,
                reads_by_reason,
                primary_now: is_primary_now(cfg, &roles, i),
                connected_as: connected_as(cfg, &roles, i),
                patroni: patroni
                    .as_deref()
                    .and_then(|v| crate::roles::patroni::member_of(v, &cfg.nodes[i]))
                    .map_or((None, None), |m| {
                        (Some(m.role.clone()), Some(m.state.clone()))
                    }),
                probed,
            }
        })
        .collect()
}

/// Whether node `i` is the primary now: the writer, or the same server reached
/// through another alias (a multi-host replica alias lists the primary too).
fn is_primary_now(cfg: &ClusterConfig, roles: &Roles, i: usize) -> bool {
    let nodes = &cfg.nodes;
    roles.writer_node().is_some_and(|w| {
        w == i
            || nodes
                .get(w)
                .zip(nodes.get(i))
                .is_some_and(|(a, b)| a.host == b.host && a.port == b.port && a.dbname == b.dbname)
    })
}

/// The alias whose new connections go to node `i` now, if any: the alias of the
/// slot that describes it, except a spare host of a multi-host primary alias (its
/// connections go to the primary only).
fn connected_as(cfg: &ClusterConfig, roles: &Roles, i: usize) -> Option<String> {
    let nodes = &cfg.nodes;
    let slot = roles.slot_of(i)?;
    let n = nodes.get(slot)?;
    if slot != 0 && n.database == nodes[0].database {
        return None;
    }
    Some(n.database.clone())
}
