//! The one wait for the first probes: the status page, `replica_status` and
//! `check --database` wait here (GIL released) rather than each polling `status()`
//! with a bound of its own.

use std::time::{Duration, Instant};

use crate::health::State;

use super::Cluster;

/// How often the wait looks again: well under one probe's round trip.
const POLL: Duration = Duration::from_millis(10);

impl Cluster {
    /// The default bound of `wait_probed`: one probe interval and two timeouts, time
    /// for a node that fails to fail a second probe (FALL is 2 by default) and be
    /// `down` rather than `unknown`.
    pub(super) fn probe_round(&self) -> Duration {
        let cfg = &self.shared.config;
        cfg.probe_interval + 2 * cfg.probe_timeout
    }

    /// Whether every node's state is known: not `unknown` in `status()` (it answered,
    /// or failed FALL probes, which the default bound leaves time for), or this
    /// process's login was refused.
    pub(super) fn all_probed(&self) -> bool {
        let view = self.prober.view();
        let nodes = view.as_ref().map_or(&[][..], |v| &v.nodes[..]);
        (0..self.shared.config.nodes.len()).all(|i| {
            self.shared.own.get(i).is_some()
                || nodes
                    .get(i)
                    .is_some_and(|n| n.health.state != State::Unknown)
        })
    }

    /// Waits (the caller releases the GIL) until `all_probed` or `timeout` passed;
    /// returns `all_probed`.
    pub(super) fn wait_probed_for(&self, timeout: Duration) -> bool {
        self.prober.ensure_started();
        // `None`: past what an `Instant` holds, so never reached.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if self.all_probed() {
                return true;
            }
            let left = deadline.map_or(POLL, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() || self.prober.closed() {
                return false;
            }
            std::thread::sleep(left.min(POLL));
        }
    }
}
