//! Roles are observed, not configured: which node is the primary now, from what the
//! probes saw, and where each alias's new connections go. No I/O, no clock reads.
//!
//! The primary is the live node that is not in recovery on the newest timeline seen
//! on any live node (a standby that streams from a newer primary counts too, so an
//! isolated old primary never takes writes). Two connections that reach one server
//! (two aliases through one proxy) are one claim, told apart by the server's start
//! time. Two distinct servers on the newest timeline are a split brain: no writes.

use std::time::Instant;

use crate::config::ClusterConfig;
use crate::node_status::NodeStatus;

pub(crate) use patroni::Word;

/// Who takes writes now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Writer {
    /// The node (index into the configured nodes) that is primary now.
    Known(usize),
    /// No live node is a primary on the newest timeline (a switchover or failover in
    /// progress, or the primary is down).
    Unknown,
    /// Distinct servers claim primary on the newest timeline: writes are refused.
    Split(Vec<usize>),
}

/// The observed roles of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roles {
    pub writer: Writer,
    /// Per alias (the configured order: the primary alias first), the node its new
    /// connections go to. The primary alias goes to the primary; the alias that was
    /// configured for that node takes the primary alias's configured node (a demoted
    /// primary serves reads through it). Every other alias keeps its own node.
    pub targets: Vec<usize>,
    /// The newest timeline seen on a live node.
    pub timeline: Option<u32>,
    /// Nodes that claim primary on an older timeline: never written to.
    pub stale: Vec<usize>,
    /// What Patroni's view did to the roles (`PATRONI_URLS`; `Off` without).
    pub patroni: Word,
    /// Aliases (nodes) that are proxy or pooler endpoints (`proxy`).
    pub proxies: Vec<usize>,
    /// The server the writer's probe reached (`server_of`): through a proxy, a new
    /// one is a change of primary although the writer's node is the same.
    pub writer_server: Option<String>,
}

impl Roles {
    /// Nothing observed yet: every alias on its configured node, no writer known.
    pub fn initial(n: usize) -> Roles {
        Roles {
            writer: Writer::Unknown,
            targets: (0..n).collect(),
            timeline: None,
            stale: Vec::new(),
            patroni: Word::Off,
            proxies: Vec::new(),
            writer_server: None,
        }
    }

    /// The node that takes writes now, if one does.
    pub fn writer_node(&self) -> Option<usize> {
        match self.writer {
            Writer::Known(w) => Some(w),
            _ => None,
        }
    }

    /// The alias index (slot) whose connections go to `node` now.
    pub fn slot_of(&self, node: usize) -> Option<usize> {
        self.targets.iter().position(|&t| t == node)
    }
}

/// The roles as the nodes' latest health shows them at `now`.
///
/// An alias that is a proxy endpoint (`NodeStatus::proxy`) is never a place for
/// another alias's connections, and its own never move: the proxy decides where they
/// go. A proxied primary alias therefore has a writer only while its own endpoint
/// answers as primary on the newest timeline; a proxied replica alias's claim (the
/// proxy's check window, when `replicas` still reaches the new primary) is neither a
/// writer nor a split brain.
pub fn observe_roles(cfg: &ClusterConfig, nodes: &[NodeStatus], now: Instant) -> Roles {
    let window = cfg.staleness_window();
    let mut newest: Option<u32> = None;
    // (node, timeline, server start time) of every live node not in recovery.
    let mut claims: Vec<(usize, u32, Option<u64>)> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if !n.health.state.is_live() || !n.health.is_fresh(now, window) {
            continue;
        }
        let Some(s) = &n.sample else { continue };
        let tl = s.timeline.unwrap_or(0);
        newest = Some(newest.map_or(tl, |t| t.max(tl)));
        if !s.in_recovery {
            claims.push((i, tl, s.started_us));
        }
    }
    let newest_tl = newest.unwrap_or(0);
    let stale = claims
        .iter()
        .filter(|c| c.1 < newest_tl)
        .map(|c| c.0)
        .collect();
    let proxied = |i: usize| nodes.get(i).is_some_and(|n| n.proxy);
    // One entry per distinct server on the newest timeline, lowest index first (so
    // the primary alias's own node wins when two aliases reach the same server).
    // A proxied replica alias's claim is the proxy's view, not a place for writes.
    let mut servers: Vec<(usize, Option<u64>)> = Vec::new();
    for &(i, tl, started) in &claims {
        if tl != newest_tl || (i != 0 && proxied(i)) {
            continue;
        }
        let same = servers
            .iter()
            .any(|&(_, s)| started.is_some() && s == started);
        if !same {
            servers.push((i, started));
        }
    }
    let writer = match servers.as_slice() {
        [] => Writer::Unknown,
        // A proxied primary alias never moves: it waits for its endpoint to answer
        // as primary (the proxy's checks catch up) rather than go elsewhere.
        [(w, _)] if *w != 0 && proxied(0) => Writer::Unknown,
        [(w, _)] => Writer::Known(*w),
        many => Writer::Split(many.iter().map(|s| s.0).collect()),
    };
    let mut targets: Vec<usize> = (0..nodes.len()).collect();
    if let Writer::Known(w) = writer {
        // Also for another host of a multi-host primary alias: its slot then describes
        // node 0 with weight 0 (no reads of its own), and slot 0 the primary.
        if w != 0 && w < targets.len() {
            targets.swap(0, w);
        }
    }
    let writer_server = writer_node_of(&writer)
        .and_then(|w| nodes.get(w))
        .and_then(server_of);
    Roles {
        writer,
        targets,
        timeline: newest,
        stale,
        patroni: Word::Off,
        proxies: (0..nodes.len()).filter(|&i| proxied(i)).collect(),
        writer_server,
    }
}

fn writer_node_of(writer: &Writer) -> Option<usize> {
    match writer {
        Writer::Known(w) => Some(*w),
        _ => None,
    }
}

/// The server a node's latest probe reached: `addr:port` as the server saw the
/// connection, or its start time over a Unix socket.
pub(crate) fn server_of(n: &NodeStatus) -> Option<String> {
    let s = n.sample.as_ref()?;
    match (&s.server_addr, s.server_port, s.started_us) {
        (Some(a), Some(p), _) => Some(format!("{a}:{p}")),
        (_, _, Some(t)) => Some(format!("started {t}")),
        _ => None,
    }
}

/// The roles decision: what PostgreSQL shows (`observe_roles`) with Patroni's word
/// applied when `PATRONI_URLS` is set (`ha`: its latest view; see `patroni::gate`).
pub fn decide(
    cfg: &ClusterConfig,
    nodes: &[NodeStatus],
    ha: Option<&crate::patroni::View>,
    now: Instant,
) -> Roles {
    patroni::gate(cfg, observe_roles(cfg, nodes, now), ha, now)
}

pub(crate) mod changes;
pub(crate) mod patroni;
pub(crate) mod proxy;

#[cfg(test)]
mod tests;
