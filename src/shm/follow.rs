//! A follower's read of the segment: validated, turned into the local snapshot, and
//! the leader's down counters into local events (for closing stale connections and
//! interrupting in-flight queries; not logged again: the leader logged them).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::events::{lock, Event, Severity};
use crate::health::State;
use crate::select::Snapshot;

use super::segment::{Decoded, Rejected};
use super::{clock, Probing, Sharing};

/// A segment written more than this in the future is from another boot (the
/// monotonic clock restarts at boot): ignored.
const FUTURE_NS: u64 = 1_000_000_000;

impl<E: Probing> Sharing<E> {
    /// Reads the segment once; `Err` when it must not be trusted.
    pub(super) fn follow_once(&self) -> Result<(), String> {
        let seg = self.segment();
        let seq = seg.seq();
        // A new word of Patroni's is decided on with the same segment. [s3-patroni]
        let ha_generation = self.shared.patroni.as_ref().map_or(0, |w| w.generation());
        let unchanged = lock(&self.view).as_ref().is_some_and(|d| d.seq == seq)
            && self.patroni_seen.swap(ha_generation, Ordering::SeqCst) == ha_generation;
        if unchanged {
            return Ok(());
        }
        let cfg = &self.shared.config;
        let mut d = match seg.read(cfg.fall, cfg.rise) {
            Ok(d) => d,
            Err(Rejected::Empty | Rejected::Torn) => return Ok(()),
            Err(Rejected::Foreign(why)) => return Err(why),
        };
        if d.heartbeat_ns > clock::now_ns().saturating_add(FUTURE_NS) {
            return Ok(());
        }
        // Nothing stays fresh longer than the window after the leader's last publish.
        let beat = clock::from_ns(d.heartbeat_ns);
        let latest = beat + cfg.staleness_window();
        for s in &mut d.snap {
            s.fresh_until = s.fresh_until.min(latest);
        }
        let now = Instant::now();
        self.shared.own.refresh(&d.nodes, cfg.probe_timeout, now);
        let mut mask = self.shared.own.mask();
        for (i, c) in d.counters.iter().enumerate().take(64) {
            let posted = self.posted[i].load(Ordering::SeqCst);
            if posted > c.applied {
                // Our passive fault is not applied by the leader yet: keep it out.
                mask |= 1 << i;
            }
        }
        let ha = self.shared.patroni_view();
        let roles = crate::roles::decide(cfg, &d.nodes, ha.as_deref(), now);
        let snapshot = Snapshot::new(d.snap.clone(), now).with_roles(roles);
        let snapshot = if mask == 0 {
            snapshot
        } else {
            snapshot.without(mask, now)
        };
        self.shared.snapshot.store(Arc::new(snapshot));
        self.shared.note_roles();
        let mut view = lock(&self.view);
        if let Some(old) = view.as_ref() {
            self.events_between(old, &d);
        }
        *view = Some(d);
        Ok(())
    }

    fn events_between(&self, old: &Decoded, new: &Decoded) {
        let cfg = &self.shared.config;
        for (i, (a, b)) in old.counters.iter().zip(&new.counters).enumerate() {
            let down = b.down_epoch > a.down_epoch;
            let interrupt = b.interrupt_epoch > a.interrupt_epoch;
            if !down && !interrupt {
                continue;
            }
            let state = match new.nodes[i].health.state {
                State::Misconfigured => State::Misconfigured,
                _ => State::Down,
            };
            let mut e = Event::about(
                Severity::Silent,
                format!(
                    "{:?} is {} (seen by the shared prober, pid {})",
                    cfg.nodes[i].alias,
                    state.as_str(),
                    new.leader_pid
                ),
                i,
            );
            e.state = Some(state);
            e.interrupt = interrupt;
            self.events.push(e);
        }
    }
}
