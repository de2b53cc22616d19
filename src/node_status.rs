//! What is known about one node: its health machine, its last sample and error,
//! its lag and counters. The record `status()`, the snapshot and the shared segment
//! are built from.

use std::time::{Duration, Instant};

use crate::health::Health;
use crate::probe::{Fault, Sample};

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
    /// The alias is a proxy or pooler endpoint, not a server (see `roles::proxy`):
    /// its connections stay on it and no other alias's go to it. Once seen, kept.
    pub proxy: bool,
    pub probes: u64,
    pub failed_probes: u64,
    /// Failures of real connections or queries reported by the database backend.
    pub passive_faults: u64,
}
