//! Read selection over an immutable snapshot of node health. No I/O, no locks, and no
//! allocation on the pick path: the prober builds a new snapshot and swaps it in.

use std::time::Instant;

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

/// An immutable view of the cluster. Node 0 is the primary.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub nodes: Vec<SnapNode>,
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
            nodes,
            cumulative,
            total,
            valid_until,
            fallback,
            valid_until_coarse,
        }
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

    /// A copy in which `excluded` (a bit per node) take no reads until the prober
    /// publishes again: nodes that just failed under real traffic.
    pub fn without(&self, excluded: u64, now: Instant) -> Snapshot {
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
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
        Snapshot::new(nodes, now)
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
mod retry_tests {
    use super::*;
    use std::time::Duration;

    fn node(weight: f64, up: bool, now: Instant, lsn: u64) -> SnapNode {
        SnapNode {
            weight,
            eligible: up,
            live: up,
            lagging: false,
            fresh_until: now + Duration::from_secs(3),
            visible_lsn: lsn,
        }
    }

    #[test]
    fn retry_never_picks_a_tried_node_and_ends() {
        let now = Instant::now();
        let snap = Snapshot::new(
            vec![
                node(1.0, true, now, 10),
                node(1.0, true, now, 10),
                node(1.0, true, now, 5),
            ],
            now,
        );
        for k in 0..20 {
            let r = k as f64 / 20.0;
            let i = snap.pick_retry(now, r, 0b010, None).unwrap();
            assert_ne!(i, 1);
        }
        assert_eq!(snap.pick_retry(now, 0.5, 0b011, None), Some(2));
        assert_eq!(snap.pick_retry(now, 0.5, 0b111, None), None);
        // Read-your-writes: only nodes that replayed the token, else the primary.
        assert_eq!(snap.pick_retry(now, 0.99, 0b010, Some(8)), Some(0));
        assert_eq!(snap.pick_retry(now, 0.5, 0b011, Some(8)), None);
    }

    #[test]
    fn retry_falls_back_to_untried_primary_even_when_down() {
        let now = Instant::now();
        let snap = Snapshot::new(vec![node(1.0, false, now, 0), node(1.0, true, now, 0)], now);
        assert_eq!(snap.pick_retry(now, 0.5, 0b10, None), Some(0));
        assert_eq!(snap.pick_retry(now, 0.5, 0b01, None), Some(1));
    }

    #[test]
    fn without_takes_nodes_out_of_reads() {
        let now = Instant::now();
        let snap = Snapshot::new(vec![node(0.0, true, now, 0), node(1.0, true, now, 0)], now);
        assert_eq!(snap.pick(now, 0.5), (1, Reason::Weighted));
        let out = snap.without(0b10, now);
        assert_eq!(out.pick(now, 0.5), (0, Reason::DownFallback));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};
    use std::time::Duration;

    fn up(weight: f64, now: Instant, lsn: u64) -> SnapNode {
        SnapNode {
            weight,
            eligible: true,
            live: true,
            lagging: false,
            fresh_until: now + Duration::from_secs(3),
            visible_lsn: lsn,
        }
    }

    fn lagging(weight: f64, now: Instant, lsn: u64) -> SnapNode {
        SnapNode {
            eligible: false,
            lagging: true,
            ..up(weight, now, lsn)
        }
    }

    fn shares(snap: &Snapshot, now: Instant, n: usize) -> Vec<f64> {
        let mut rng = SmallRng::seed_from_u64(42);
        let mut counts = vec![0usize; snap.nodes.len()];
        for _ in 0..n {
            let (i, reason) = snap.pick(now, rng.random::<f64>());
            assert_eq!(reason, Reason::Weighted);
            counts[i] += 1;
        }
        counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let now = Instant::now();
        let snap = Snapshot::new(vec![up(1.0, now, 0), up(3.0, now, 0), up(2.0, now, 0)], now);
        let s = shares(&snap, now, 120_000);
        assert!((s[0] - 1.0 / 6.0).abs() < 0.01, "{s:?}");
        assert!((s[1] - 3.0 / 6.0).abs() < 0.01, "{s:?}");
        assert!((s[2] - 2.0 / 6.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn zero_weight_is_never_picked() {
        let now = Instant::now();
        let snap = Snapshot::new(vec![up(0.0, now, 0), up(1.0, now, 0), up(0.0, now, 0)], now);
        let s = shares(&snap, now, 10_000);
        assert_eq!(s, vec![0.0, 1.0, 0.0]);
        // The edges of [0, 1) too.
        assert_eq!(snap.pick(now, 0.0).0, 1);
        assert_eq!(snap.pick(now, 0.999_999_999).0, 1);
    }

    #[test]
    fn cold_start_reads_go_to_primary() {
        let now = Instant::now();
        let snap = Snapshot::cold(&[1.0, 1.0], now);
        assert_eq!(snap.pick(now, 0.5), (0, Reason::DownFallback));
    }

    #[test]
    fn every_replica_lagging_goes_to_primary_as_lag_fallback() {
        let now = Instant::now();
        let snap = Snapshot::new(vec![up(0.0, now, 100), lagging(1.0, now, 50)], now);
        assert_eq!(snap.pick(now, 0.5), (0, Reason::LagFallback));
    }

    #[test]
    fn primary_with_weight_serves_fallback_reads_counted_as_fallback() {
        let now = Instant::now();
        let snap = Snapshot::new(vec![up(1.0, now, 100), lagging(1.0, now, 50)], now);
        assert_eq!(snap.pick(now, 0.1), (0, Reason::LagFallback));
        let mut down = up(1.0, now, 0);
        down.eligible = false;
        down.live = false;
        let snap = Snapshot::new(vec![up(1.0, now, 100), down], now);
        assert_eq!(snap.pick(now, 0.9), (0, Reason::DownFallback));
        // A cluster with no replica at all reads from the primary by weight.
        let snap = Snapshot::new(vec![up(1.0, now, 100)], now);
        assert_eq!(snap.pick(now, 0.5), (0, Reason::Weighted));
    }

    #[test]
    fn primary_down_goes_to_least_lagging_live_replica() {
        let now = Instant::now();
        let mut primary = up(1.0, now, 100);
        primary.eligible = false;
        primary.live = false;
        let snap = Snapshot::new(
            vec![
                primary,
                lagging(1.0, now, 50),
                lagging(1.0, now, 80),
                lagging(1.0, now, 60),
            ],
            now,
        );
        assert_eq!(snap.pick(now, 0.1), (2, Reason::DownFallback));
    }

    #[test]
    fn nothing_live_goes_to_primary() {
        let now = Instant::now();
        let mut nodes = vec![SnapNode::unknown(1.0, now), SnapNode::unknown(1.0, now)];
        nodes[1].fresh_until = now;
        let snap = Snapshot::new(nodes, now);
        assert_eq!(snap.pick(now, 0.1), (0, Reason::DownFallback));
    }

    #[test]
    fn stale_snapshot_stops_using_nodes_whose_last_good_probe_is_too_old() {
        let now = Instant::now();
        let mut replica = up(1.0, now, 0);
        replica.fresh_until = now + Duration::from_millis(10);
        let snap = Snapshot::new(vec![up(1.0, now, 0), replica], now);
        let later = now + Duration::from_millis(20);
        for k in 0..100 {
            let (i, _) = snap.pick(later, k as f64 / 100.0);
            assert_eq!(i, 0);
        }
        // Everything stale: the primary, as the last resort.
        let much_later = now + Duration::from_secs(10);
        assert_eq!(snap.pick(much_later, 0.7), (0, Reason::DownFallback));
    }

    #[test]
    fn pick_now_agrees_with_pick_and_expires() {
        let now = Instant::now();
        let snap = Snapshot::new(vec![up(1.0, now, 0), up(3.0, now, 0)], now);
        for k in 0..100 {
            let r = k as f64 / 100.0;
            assert_eq!(snap.pick_now(r), snap.pick(Instant::now(), r));
        }
        // A snapshot whose nodes went stale 1 ms after it was built: after that,
        // pick_now must not use them (the coarse margin only errs on the safe side).
        let mut stale = up(1.0, now, 0);
        stale.fresh_until = now + Duration::from_millis(1);
        let snap = Snapshot::new(vec![up(0.0, now, 0), stale], now);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(snap.pick_now(0.5).0, 0);
    }

    #[test]
    fn min_lsn_pick_only_uses_caught_up_replicas() {
        let now = Instant::now();
        let snap = Snapshot::new(
            vec![up(0.0, now, 1000), up(1.0, now, 500), up(1.0, now, 900)],
            now,
        );
        for k in 0..100 {
            let r = k as f64 / 100.0;
            assert_eq!(snap.pick_min_lsn(now, r, 800), (2, Reason::ReadYourWrites));
            assert_eq!(snap.pick_min_lsn(now, r, 950), (0, Reason::ReadYourWrites));
        }
        let both: std::collections::HashSet<usize> = (0..100)
            .map(|k| snap.pick_min_lsn(now, k as f64 / 100.0, 400).0)
            .collect();
        assert_eq!(both, [1usize, 2].into_iter().collect());
    }

    #[test]
    fn reason_indices_match_names() {
        assert_eq!(REASON_NAMES[Reason::DownFallback as usize], "down_fallback");
        assert_eq!(REASON_NAMES[Reason::Retried as usize], "retried");
        assert_eq!(Reason::Retried as usize, REASON_COUNT - 1);
    }
}
