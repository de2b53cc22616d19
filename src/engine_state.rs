//! The prober's state for one cluster, which one step (`step::observe`) folds an
//! observation into: every node's status, the primary's WAL history, and what was
//! last logged about roles and the herd.

use std::time::Instant;

use crate::config::ClusterConfig;
use crate::health::{Health, WalHistory};
use crate::lag;
use crate::node_status::NodeStatus;
use crate::roles::Roles;

pub(crate) struct EngineState {
    pub(crate) nodes: Vec<NodeStatus>,
    pub(crate) primary_wal: WalHistory,
    /// Whether "two nodes claim primary" has been reported for the current episode.
    pub(crate) split_brain_reported: bool,
    /// Where reads go while lag keeps replicas out, as last logged.
    pub(crate) herd: lag::Herd,
    /// Since when distinct servers have claimed primary (reported only once it lasts
    /// the staleness window: a proxy's check window flips roles for a moment).
    pub(crate) split_since: Option<Instant>,
    /// The roles as last observed.
    pub(crate) roles: Roles,
    /// The last node known as primary (kept through a gap), for naming changes.
    pub(crate) last_writer: Option<usize>,
    /// Changes of primary seen (a switchover or failover each).
    pub(crate) role_changes: u64,
    /// The server the last known primary's probe reached (`roles::server_of`).
    pub(crate) last_writer_server: Option<String>,
    /// Patroni's latest view, set by the engine before each step (`None` without
    /// `PATRONI_URLS`).
    pub(crate) patroni: Option<std::sync::Arc<crate::patroni::View>>,
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
                proxy: false,
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
            split_since: None,
            roles: Roles::initial(cfg.nodes.len()),
            last_writer: None,
            role_changes: 0,
            last_writer_server: None,
            patroni: None,
        }
    }
}
