//! The picks with a condition on the node: one that has replayed a position
//! (read-your-writes across requests), one not tried yet (a read run again).

use std::time::Instant;

use super::{fallback, Reason, SnapNode, Snapshot};

impl Snapshot {
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
}
