//! Lag as health sees it: whether a standby is over a limit, why (for `status()`),
//! and which lagging replicas still serve reads while every replica is over a limit
//! (the herd policy, `LAG_CEILING_SECONDS`). Pure functions of the probes: no I/O.

use std::time::Instant;

use crate::config::{ClusterConfig, Role};
use crate::health::State;
use crate::node_status::NodeStatus;
use crate::probe::Sample;

/// `pg_stat_wal_receiver.status` as the probe reports it when the probe user may not
/// read it (no `pg_read_all_stats`): a receiver exists, its status is unknown.
pub const RECEIVER_HIDDEN: &str = "hidden";

/// Why a standby is not keeping up by itself: its replay is paused, or its WAL receiver
/// is gone or not streaming. `None` when it replays and streams (or the probe user may
/// not see the receiver), and for a node that is not in recovery.
pub fn stopped(sample: &Sample) -> Option<String> {
    if !sample.in_recovery {
        return None;
    }
    if sample.replay_paused {
        return Some("replay paused".into());
    }
    match sample.receiver_status.as_deref() {
        Some("streaming") | Some(RECEIVER_HIDDEN) => None,
        Some(other) => Some(format!("WAL receiver {other}")),
        None => Some("no WAL receiver".into()),
    }
}

/// Is replica lag over a limit? `None` when a limit is on but the lag is unknown (the
/// primary's position is not known); `Some(false)` when no limit is on. A standby that
/// stopped replaying or streaming is over at once once the primary has moved past what
/// it replayed (`bytes > 0`): it will not catch up by itself, so waiting for the
/// seconds to fill up only serves staler data. A standby of an idle primary has
/// `bytes == 0` and is never over.
pub fn over_limit(
    cfg: &ClusterConfig,
    sample: &Sample,
    bytes: Option<u64>,
    seconds: Option<f64>,
) -> Option<bool> {
    if !cfg.has_lag_limit() {
        return Some(false);
    }
    if bytes.is_some_and(|b| b > 0) && stopped(sample).is_some() {
        return Some(true);
    }
    let mut over = false;
    if let Some(max) = cfg.max_lag_bytes {
        over |= bytes? > max;
    }
    if let Some(max) = cfg.max_lag_seconds {
        over |= seconds? > max;
    }
    Some(over)
}

/// Why a lagging replica is out of weighted reads, for `status()`, the status page and
/// `replica_status`; `None` for a node that is not lagging.
pub fn cause(cfg: &ClusterConfig, n: &NodeStatus) -> Option<String> {
    if n.health.state != State::Lagging {
        return None;
    }
    let (Some(bytes), Some(sample)) = (n.lag_bytes, n.sample.as_ref()) else {
        return Some("lag unknown: the primary's position is not known yet".into());
    };
    if bytes > 0 {
        if let Some(why) = stopped(sample) {
            return Some(format!("{why}, {bytes} bytes behind the primary"));
        }
    }
    if let (Some(max), Some(s)) = (cfg.max_lag_seconds, n.lag_seconds) {
        if s > max {
            return Some(format!("lag {s:.1} s > MAX_LAG_SECONDS {max}"));
        }
    }
    if let Some(max) = cfg.max_lag_bytes {
        if bytes > max {
            return Some(format!("lag {bytes} bytes > MAX_LAG_BYTES {max}"));
        }
    }
    Some(format!(
        "under the lag limits again: back in reads after {} probes under them (RISE)",
        cfg.rise
    ))
}

/// Where reads that need no fresh data go while lag keeps replicas out (logged once
/// per change).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Herd {
    /// Some replica takes reads, or none is out for lag.
    #[default]
    Normal,
    /// Every replica that answers is over a limit: the least-lagged ones keep serving.
    Tolerating,
    /// Every replica that answers is over a limit (and over the ceiling, or it is off):
    /// such reads go to the primary.
    Primary,
}

fn serves_as_replica(
    n: &NodeStatus,
    c: &crate::config::NodeConfig,
    now: Instant,
    cfg: &ClusterConfig,
) -> bool {
    c.role == Role::Replica
        && c.weight > 0.0
        && !n.role_mismatch
        && n.health.is_fresh(now, cfg.staleness_window())
}

/// Per node: a lagging replica that still takes reads that need no fresh data, because
/// no replica is up and its lag is known to be under `LAG_CEILING_SECONDS`. Only the
/// least-lagged replicas qualify (those within `MAX_LAG_SECONDS` of the least-lagged
/// one), so the staleness served is the smallest there is.
pub fn tolerated(cfg: &ClusterConfig, nodes: &[NodeStatus], now: Instant) -> Vec<bool> {
    let mut out = vec![false; nodes.len()];
    let Some(ceiling) = cfg.lag_ceiling_seconds else {
        return out;
    };
    let pairs = || nodes.iter().zip(&cfg.nodes).enumerate().skip(1);
    if pairs().any(|(_, (n, c))| n.health.state == State::Up && serves_as_replica(n, c, now, cfg)) {
        return out;
    }
    let lag_of = |n: &NodeStatus, c| {
        let ok =
            n.health.state == State::Lagging && n.lag_exact && serves_as_replica(n, c, now, cfg);
        n.lag_seconds.filter(|s| ok && *s <= ceiling)
    };
    let best = pairs()
        .filter_map(|(_, (n, c))| lag_of(n, c))
        .fold(f64::INFINITY, f64::min);
    let margin = cfg.max_lag_seconds.unwrap_or(0.0);
    for (i, (n, c)) in pairs() {
        out[i] = lag_of(n, c).is_some_and(|s| s <= best + margin);
    }
    out
}

/// The share of its weight a tolerated replica keeps: all of it up to
/// `MAX_LAG_SECONDS`, then less and less, none at `LAG_CEILING_SECONDS`. Plain reads
/// move to the primary gradually as the lag grows, not in one step, and the staler a
/// replica, the fewer reads it serves.
pub fn tolerated_share(cfg: &ClusterConfig, lag_seconds: Option<f64>) -> f64 {
    let (Some(ceiling), Some(lag)) = (cfg.lag_ceiling_seconds, lag_seconds) else {
        return 0.0;
    };
    let floor = cfg.max_lag_seconds.unwrap_or(0.0).min(ceiling);
    if ceiling <= floor {
        return 0.0;
    }
    ((ceiling - lag) / (ceiling - floor)).clamp(0.0, 1.0)
}

/// The herd state that goes with `tolerated` (for the log).
pub fn herd(cfg: &ClusterConfig, nodes: &[NodeStatus], tolerated: &[bool], now: Instant) -> Herd {
    let pairs = || nodes.iter().zip(&cfg.nodes).skip(1);
    if pairs().any(|(n, c)| n.health.state == State::Up && serves_as_replica(n, c, now, cfg)) {
        return Herd::Normal;
    }
    if tolerated.iter().any(|&t| t) {
        return Herd::Tolerating;
    }
    if pairs().any(|(n, c)| n.health.state == State::Lagging && serves_as_replica(n, c, now, cfg)) {
        return Herd::Primary;
    }
    Herd::Normal
}

#[cfg(test)]
mod tests;
