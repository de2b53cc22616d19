//! This process's own configuration errors, seen by its real traffic: a node that
//! refused this process's login (wrong password, missing database or privilege).
//!
//! They are never the node's fault: another process, with other credentials, may use
//! the node well. So they are kept here, per process, never posted to the host's
//! shared prober: the node takes no reads from this process and `status()` shows it
//! `misconfigured` with the reason, for at least `HOLD` and until a probe that started
//! after the error succeeds (the server was fixed). The hold bounds what a process
//! whose connections fail while its probes succeed costs: one failed connection (its
//! read retried elsewhere) and one logged error per `HOLD`, not one per probe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::events::lock;
use crate::node_status::NodeStatus;
use crate::probe::Fault;

/// The least time a node stays out of this process's reads after its login failed.
pub(crate) const HOLD: Duration = Duration::from_secs(30);

/// Per node: this process's configuration error and when it was seen.
pub(crate) struct OwnErrors {
    marks: Mutex<Vec<Option<(Fault, Instant)>>>,
    /// A bit per marked node (the first 64), read on every publish without the lock.
    mask: AtomicU64,
}

impl OwnErrors {
    pub(crate) fn new(nodes: usize) -> OwnErrors {
        OwnErrors {
            marks: Mutex::new(vec![None; nodes]),
            mask: AtomicU64::new(0),
        }
    }

    /// Records the error of node `idx`; true when the node was not marked yet (so
    /// that it is logged once, not once per failed connection).
    pub(crate) fn mark(&self, idx: usize, fault: Fault, now: Instant) -> bool {
        let mut marks = lock(&self.marks);
        let Some(slot) = marks.get_mut(idx) else {
            return false;
        };
        let new = slot.is_none();
        *slot = Some((fault, now));
        self.mask.store(mask_of(&marks), Ordering::SeqCst);
        new
    }

    /// The marked nodes, a bit each.
    pub(crate) fn mask(&self) -> u64 {
        self.mask.load(Ordering::SeqCst)
    }

    /// The error of node `idx`, if marked.
    pub(crate) fn get(&self, idx: usize) -> Option<Fault> {
        if idx < 64 && self.mask() & (1 << idx) == 0 {
            return None;
        }
        lock(&self.marks)
            .get(idx)
            .and_then(|m| m.as_ref().map(|(f, _)| f.clone()))
    }

    /// Forgets the errors older than `HOLD` that a later good probe disproved: one that
    /// ended more than `timeout` after the error, so it surely started after it.
    pub(crate) fn refresh(&self, nodes: &[NodeStatus], timeout: Duration, now: Instant) {
        if self.mask() == 0 {
            return;
        }
        let mut marks = lock(&self.marks);
        for (slot, node) in marks.iter_mut().zip(nodes) {
            let disproved = matches!(
                (slot.as_ref(), node.health.last_good),
                (Some((_, at)), Some(good)) if good > *at + timeout && now >= *at + HOLD
            );
            if disproved {
                *slot = None;
            }
        }
        self.mask.store(mask_of(&marks), Ordering::SeqCst);
    }
}

fn mask_of(marks: &[Option<(Fault, Instant)>]) -> u64 {
    marks
        .iter()
        .enumerate()
        .take(64)
        .filter(|(_, m)| m.is_some())
        .fold(0, |m, (i, _)| m | (1u64 << i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::cluster;
    use crate::engine_state::EngineState;
    use crate::probe::FaultKind;

    fn auth() -> Fault {
        Fault {
            kind: FaultKind::Authentication,
            message: "passive: password authentication failed".into(),
        }
    }

    #[test]
    fn a_mark_holds_for_hold_and_until_a_probe_started_after_it_succeeds() {
        let cfg = cluster(&[1.0, 1.0]);
        let t0 = Instant::now();
        let own = OwnErrors::new(2);
        assert!(own.mark(1, auth(), t0), "logged the first time");
        assert!(!own.mark(1, auth(), t0), "not again");
        assert_eq!(own.mask(), 0b10);
        assert_eq!(own.get(1).map(|f| f.kind), Some(FaultKind::Authentication));
        assert!(own.get(0).is_none());
        let mut st = EngineState::new(&cfg, t0);
        // A good probe that may have started before the error proves nothing.
        st.nodes[1].health.last_good = Some(t0 + cfg.probe_timeout / 2);
        own.refresh(&st.nodes, cfg.probe_timeout, t0 + HOLD);
        assert_eq!(own.mask(), 0b10);
        // A later good probe, but before the hold is over: still out.
        st.nodes[1].health.last_good = Some(t0 + cfg.probe_timeout * 2);
        own.refresh(&st.nodes, cfg.probe_timeout, t0 + HOLD / 2);
        assert_eq!(own.mask(), 0b10);
        own.refresh(&st.nodes, cfg.probe_timeout, t0 + HOLD);
        assert_eq!(own.mask(), 0);
        assert!(own.get(1).is_none());
    }
}
