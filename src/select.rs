//! Read selection over an immutable snapshot of node health. No I/O, no locks, and no
//! allocation on the pick path: the prober builds a new snapshot and swaps it in.

use std::sync::Arc;
use std::time::Instant;

use crate::roles::Roles;

/// Why a read went where it went. The order is the index of its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    Weighted = 0,
    Transaction = 1,
    Pinned = 2,
    UsePrimary = 3,
    ReadYourWrites = 4,
    InstanceHint = 5,
    LagFallback = 6,
    DownFallback = 7,
    /// A read run again on another node after its node failed under it.
    Retried = 8,
}

pub const REASON_COUNT: usize = 9;

pub const REASON_NAMES: [&str; REASON_COUNT] = [
    "weighted",
    "transaction",
    "pinned",
    "use_primary",
    "read_your_writes",
    "instance_hint",
    "lag_fallback",
    "down_fallback",
    "retried",
];

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
            fresh_until: now,
            visible_lsn: 0,
        }
    }

    fn eligible_at(&self, now: Instant) -> bool {
        self.eligible && self.weight > 0.0 && now <= self.fresh_until
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
    /// (node, running total of weights) over eligible nodes, for the fast path.
    cumulative: Vec<(usize, f64)>,
    total: f64,
    /// The earliest `fresh_until` among nodes that are eligible or live; after it the
    /// snapshot's precomputed answers may be stale and the slow path re-checks.
    valid_until: Option<Instant>,
    /// Where reads go when nothing is eligible (valid until `valid_until`).
    fallback: (usize, Reason),
    /// `valid_until` on the coarse clock (`context::coarse_ns`), minus a margin for
    /// its resolution, so the fast path can skip reading the fine clock.
    valid_until_coarse: u64,
}

/// More than the coarse clock's resolution (one kernel tick, 1 to 10 ms).
const COARSE_MARGIN_NS: u64 = 20_000_000;

impl Snapshot {
    pub fn new(nodes: Vec<SnapNode>, now: Instant) -> Snapshot {
        let mut cumulative = Vec::with_capacity(nodes.len());
        let mut total = 0.0;
        let mut valid_until: Option<Instant> = None;
        // With replicas configured but none eligible, reads go to the primary as a
        // fallback (counted as such), not as a weighted pick of the primary alone.
        let replica_eligible = replica_available(&nodes, now);
        for (i, n) in nodes.iter().enumerate() {
            if n.eligible_at(now) && (i > 0 || replica_eligible) {
                total += n.weight;
                cumulative.push((i, total));
            }
            if (n.eligible || n.live) && now <= n.fresh_until {
                valid_until = Some(valid_until.map_or(n.fresh_until, |v| v.min(n.fresh_until)));
            }
        }
        let fallback = fallback(&nodes, now);
        let valid_until_coarse = match valid_until {
            None => u64::MAX,
            Some(v) => {
                let left = v.saturating_duration_since(now).as_nanos() as u64;
                (crate::context::coarse_ns() + left).saturating_sub(COARSE_MARGIN_NS)
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
        if crate::context::coarse_ns() <= self.valid_until_coarse {
            return self.pick_valid(r);
        }
        self.pick(Instant::now(), r)
    }

    #[inline]
    fn pick_valid(&self, r: f64) -> (usize, Reason) {
        if self.total > 0.0 {
            let x = r * self.total;
            for &(i, upto) in &self.cumulative {
                if x < upto {
                    return (i, Reason::Weighted);
                }
            }
            if let Some(&(i, _)) = self.cumulative.last() {
                return (i, Reason::Weighted);
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
            .unwrap_or_else(|| fallback(&self.nodes, now))
    }

    /// A pick among nodes that have replayed at least `min_lsn` (the primary always
    /// has). Used for read-your-writes across requests.
    pub fn pick_min_lsn(&self, now: Instant, r: f64, min_lsn: u64) -> (usize, Reason) {
        let caught_up = |(i, n): (usize, &SnapNode)| i == 0 || n.visible_lsn >= min_lsn;
        if let Some(choice) = self.pick_where(now, r, caught_up, Reason::ReadYourWrites) {
            return choice;
        }
        if self.nodes.first().is_some_and(|p| p.live_at(now)) {
            return (0, Reason::ReadYourWrites);
        }
        fallback(&self.nodes, now)
    }

    /// Where to run a read again after it failed on the nodes in `tried` (a bit per
    /// node): a weighted pick among eligible nodes not tried yet (of those that have
    /// replayed `min_lsn`, when given); else an untried live node (the primary first,
    /// then the replica that replayed the most); else the primary if untried, so that
    /// Django raises its own error. `None` when every node was tried.
    pub fn pick_retry(
        &self,
        now: Instant,
        r: f64,
        tried: u64,
        min_lsn: Option<u64>,
    ) -> Option<usize> {
        let untried = |i: usize| i >= 64 || tried & (1u64 << i) == 0;
        let caught_up = |(i, n): (usize, &SnapNode)| {
            untried(i) && (i == 0 || min_lsn.is_none_or(|lsn| n.visible_lsn >= lsn))
        };
        if let Some((i, _)) = self.pick_where(now, r, caught_up, Reason::Retried) {
            return Some(i);
        }
        if untried(0) && self.nodes.first().is_some_and(|p| p.live_at(now)) {
            return Some(0);
        }
        if min_lsn.is_none() {
            let best = self
                .nodes
                .iter()
                .enumerate()
                .skip(1)
                .filter(|&(i, n)| untried(i) && n.live_at(now))
                .max_by_key(|(_, n)| n.visible_lsn)
                .map(|(i, _)| i);
            if best.is_some() {
                return best;
            }
        }
        untried(0).then_some(0)
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
