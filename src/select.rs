//! Read selection over an immutable snapshot of node health. No I/O, no locks, and no
//! allocation on the pick path: the prober builds a new snapshot and swaps it in.

use std::sync::Arc;
use std::time::Instant;

use crate::roles::Roles;

mod reason;
mod retry;

pub use reason::{Reason, REASON_COUNT, REASON_NAMES};

/// What the pick path needs to know about one node.
#[derive(Clone, Debug)]
pub struct SnapNode {
    pub weight: f64,
    /// May take weighted reads: up, in the role it is configured for, under lag limits.
    pub eligible: bool,
    /// Answers probes (up or lagging): a candidate for fallback.
    pub live: bool,
    /// Replica over a lag limit (for naming the fallback reason).
    pub lagging: bool,
    /// Lagging, but among the least-lagged replicas under the ceiling while no replica
    /// is eligible: takes plain reads by weight (reason `lag_tolerated`).
    pub tolerated: bool,
    /// Both flags above hold only until this instant (last good probe + window).
    pub fresh_until: Instant,
    /// The newest WAL position it serves (replayed on a standby, current on a primary).
    pub visible_lsn: u64,
}

impl SnapNode {
    pub fn unknown(weight: f64, now: Instant) -> SnapNode {
        SnapNode {
            weight,
            eligible: false,
            live: false,
            lagging: false,
            tolerated: false,
            fresh_until: now,
            visible_lsn: 0,
        }
    }

    fn eligible_at(&self, now: Instant) -> bool {
        self.eligible && self.weight > 0.0 && now <= self.fresh_until
    }

    fn tolerated_at(&self, now: Instant) -> bool {
        self.tolerated && self.weight > 0.0 && now <= self.fresh_until
    }

    fn live_at(&self, now: Instant) -> bool {
        self.live && now <= self.fresh_until
    }
}

/// An immutable view of the cluster, one entry per alias. Entry 0 is the primary
/// alias; each entry describes the node its alias connects to now (`roles`).
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub nodes: Vec<SnapNode>,
    /// The observed roles this view was built with (published with it, atomically).
    pub roles: Arc<Roles>,
    /// (node, running total of weights, reason) over the nodes that take plain reads,
    /// for the fast path: eligible nodes, or while no replica is, the primary and the
    /// tolerated replicas.
    cumulative: Vec<(usize, f64, Reason)>,
    total: f64,
    /// The earliest `fresh_until` among nodes that are eligible or live; after it the
    /// snapshot's precomputed answers may be stale and the slow path re-checks.
    valid_until: Option<Instant>,
    /// Where reads go when nothing is eligible (valid until `valid_until`).
    fallback: (usize, Reason),
    /// `valid_until` on the coarse clock (`clock::coarse_ns`), minus a margin for
    /// its resolution, so the fast path can skip reading the fine clock.
    valid_until_coarse: u64,
    /// Bit `i`: node `i` (below 64) is eligible at build time, and so until
    /// `valid_until` (its freshness is part of that bound).
    eligible_mask: u64,
}

/// More than the coarse clock's resolution (one kernel tick, 1 to 10 ms).
const COARSE_MARGIN_NS: u64 = 20_000_000;

impl Snapshot {
    pub fn new(nodes: Vec<SnapNode>, now: Instant) -> Snapshot {
        let mut cumulative = Vec::with_capacity(nodes.len());
        let mut total = 0.0;
        let mut valid_until: Option<Instant> = None;
        let mut eligible_mask = 0u64;
        // With replicas configured but none eligible, reads go to the primary as a
        // fallback (counted as such), not as a weighted pick of the primary alone.
        let replica_eligible = replica_available(&nodes, now);
        let tolerating = !replica_eligible && nodes.iter().any(|n| n.tolerated_at(now));
        for (i, n) in nodes.iter().enumerate() {
            if n.eligible_at(now) && (i > 0 || replica_eligible || tolerating) {
                total += n.weight;
                cumulative.push((i, total, Reason::Weighted));
            } else if tolerating && n.tolerated_at(now) {
                total += n.weight;
                cumulative.push((i, total, Reason::LagTolerated));
            }
            if i < 64 && n.eligible_at(now) {
                eligible_mask |= 1 << i;
            }
            if (n.eligible || n.live || n.tolerated) && now <= n.fresh_until {
                valid_until = Some(valid_until.map_or(n.fresh_until, |v| v.min(n.fresh_until)));
            }
        }
        let fallback = fallback(&nodes, now);
        let valid_until_coarse = match valid_until {
            None => u64::MAX,
            Some(v) => {
                let left = v.saturating_duration_since(now).as_nanos() as u64;
                (crate::clock::coarse_ns() + left).saturating_sub(COARSE_MARGIN_NS)
            }
        };
        Snapshot {
            roles: Arc::new(Roles::initial(nodes.len())),
            nodes,
            cumulative,
            total,
            valid_until,
            fallback,
            valid_until_coarse,
            eligible_mask,
        }
    }

    /// The same view, built with `roles` (which alias connects to which node).
    pub fn with_roles(mut self, roles: Roles) -> Snapshot {
        self.roles = Arc::new(roles);
        self
    }

    /// Before any probe answered: every read goes to the primary.
    pub fn cold(weights: &[f64], now: Instant) -> Snapshot {
        Snapshot::new(
            weights.iter().map(|&w| SnapNode::unknown(w, now)).collect(),
            now,
        )
    }

    /// `pick` at the current time. While the snapshot is surely valid (by the coarse
    /// clock) the fine clock is not read at all.
    #[inline]
    pub fn pick_now(&self, r: f64) -> (usize, Reason) {
        if crate::clock::coarse_ns() <= self.valid_until_coarse {
            return self.pick_valid(r);
        }
        self.pick(Instant::now(), r)
    }

    #[inline]
    fn pick_valid(&self, r: f64) -> (usize, Reason) {
        if self.total > 0.0 {
            let x = r * self.total;
            for &(i, upto, reason) in &self.cumulative {
                if x < upto {
                    return (i, reason);
                }
            }
            if let Some(&(i, _, reason)) = self.cumulative.last() {
                return (i, reason);
            }
        }
        self.fallback
    }

    /// A weighted pick; `r` is uniform in [0, 1).
    #[inline]
    pub fn pick(&self, now: Instant, r: f64) -> (usize, Reason) {
        if self.valid_until.is_none_or(|v| now <= v) {
            return self.pick_valid(r);
        }
        self.pick_where(now, r, |_| true, Reason::Weighted)
            .or_else(|| self.pick_tolerated(now, r))
            .unwrap_or_else(|| fallback(&self.nodes, now))
    }

    /// While no replica is eligible: a weighted pick among the eligible primary and the
    /// tolerated replicas (the herd policy); `None` when no replica is tolerated.
    fn pick_tolerated(&self, now: Instant, r: f64) -> Option<(usize, Reason)> {
        let weight = |i: usize, n: &SnapNode| {
            let takes = (i == 0 && n.eligible_at(now)) || (i > 0 && n.tolerated_at(now));
            if takes {
                n.weight
            } else {
                0.0
            }
        };
        let any = self.nodes.iter().skip(1).any(|n| n.tolerated_at(now));
        let total: f64 = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| weight(i, n))
            .sum();
        if !any || total <= 0.0 {
            return None;
        }
        let x = r * total;
        let mut upto = 0.0;
        let mut last = None;
        for (i, n) in self.nodes.iter().enumerate() {
            let w = weight(i, n);
            if w > 0.0 {
                upto += w;
                let reason = if i == 0 {
                    Reason::Weighted
                } else {
                    Reason::LagTolerated
                };
                last = Some((i, reason));
                if x < upto {
                    return last;
                }
            }
        }
        last
    }

    /// A copy in which the aliases connected to `excluded` nodes (a bit per node)
    /// take no reads until the prober publishes again: nodes that just failed under
    /// real traffic.
    pub fn without(&self, excluded: u64, now: Instant) -> Snapshot {
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .map(|(slot, n)| {
                let i = self.roles.targets.get(slot).copied().unwrap_or(slot);
                if i < 64 && excluded & (1u64 << i) != 0 {
                    SnapNode {
                        eligible: false,
                        live: false,
                        lagging: false,
                        tolerated: false,
                        ..n.clone()
                    }
                } else {
                    n.clone()
                }
            })
            .collect();
        let mut s = Snapshot::new(nodes, now);
        s.roles = Arc::clone(&self.roles);
        s
    }

    /// Is this node eligible for weighted reads right now?
    /// `is_eligible` at the current time; while the snapshot is surely valid (by the
    /// coarse clock) the fine clock is not read at all.
    #[inline]
    pub fn is_eligible_now(&self, i: usize) -> bool {
        if i < 64 && crate::clock::coarse_ns() <= self.valid_until_coarse {
            return self.eligible_mask >> i & 1 == 1;
        }
        self.is_eligible(i, Instant::now())
    }

    pub fn is_eligible(&self, i: usize, now: Instant) -> bool {
        self.nodes.get(i).is_some_and(|n| n.eligible_at(now))
    }

    /// Weighted pick among eligible nodes that pass `keep`, checking freshness per node.
    /// Iterates twice instead of collecting, so it allocates nothing.
    fn pick_where(
        &self,
        now: Instant,
        r: f64,
        keep: impl Fn((usize, &SnapNode)) -> bool,
        reason: Reason,
    ) -> Option<(usize, Reason)> {
        let replica_eligible = replica_available(&self.nodes, now);
        let ok = |i: usize, n: &SnapNode| {
            n.eligible_at(now) && (i > 0 || replica_eligible) && keep((i, n))
        };
        let total: f64 = self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(i, n)| ok(i, n))
            .map(|(_, n)| n.weight)
            .sum();
        if total <= 0.0 {
            return None;
        }
        let x = r * total;
        let mut upto = 0.0;
        let mut last = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if ok(i, n) {
                upto += n.weight;
                last = Some(i);
                if x < upto {
                    return Some((i, reason));
                }
            }
        }
        last.map(|i| (i, reason))
    }
}

/// Whether weighted picks may run: some replica is eligible, or none is configured
/// (a cluster of one primary reads from it by weight).
fn replica_available(nodes: &[SnapNode], now: Instant) -> bool {
    nodes.len() < 2 || nodes.iter().skip(1).any(|n| n.eligible_at(now))
}

/// Where reads go when no node is eligible: the primary if it answers; else the live
/// replica that has replayed the most; else the primary, so Django raises its own
/// connection error.
fn fallback(nodes: &[SnapNode], now: Instant) -> (usize, Reason) {
    let any_lagging = nodes.iter().skip(1).any(|n| n.lagging && n.live_at(now));
    let reason = if any_lagging {
        Reason::LagFallback
    } else {
        Reason::DownFallback
    };
    if nodes.first().is_some_and(|p| p.live_at(now)) {
        return (0, reason);
    }
    let best = nodes
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, n)| n.live_at(now))
        .max_by_key(|(_, n)| n.visible_lsn)
        .map(|(i, _)| i);
    match best {
        Some(i) => (i, Reason::DownFallback),
        None => (0, Reason::DownFallback),
    }
}

#[cfg(test)]
mod retry_tests;

#[cfg(test)]
mod tests;
