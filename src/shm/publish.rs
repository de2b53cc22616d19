//! The leader's side of the segment: after each publish of its prober, every node's
//! health goes into the shared segment, with the counters followers turn into events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::events::{lock, Event};
use crate::health::State;
use crate::node_status::NodeStatus;
use crate::select::Snapshot;

use super::clock;
use super::files::Files;
use super::segment::{Counters, Segment};

pub(crate) struct Publisher {
    files: Arc<Files>,
    key: u64,
    nodes: usize,
    counters: Mutex<Vec<Counters>>,
    /// CLOCK_MONOTONIC ns of the last publish (0: none yet).
    last_beat: AtomicU64,
    pid: u32,
}

impl Publisher {
    /// Takes over the segment; `counters` continue those of the previous leader.
    pub(crate) fn new(
        files: Arc<Files>,
        key: u64,
        nodes: usize,
        counters: Vec<Counters>,
    ) -> Publisher {
        let p = Publisher {
            files,
            key,
            nodes,
            counters: Mutex::new(counters),
            last_beat: AtomicU64::new(0),
            pid: std::process::id(),
        };
        p.segment().init_header();
        p
    }

    pub(crate) fn segment(&self) -> Segment<'_> {
        Segment {
            words: self.files.words(),
            key: self.key,
            nodes: self.nodes,
        }
    }

    /// Writes the prober's state (its lock held by the caller, so writes are in order).
    pub(crate) fn publish(&self, statuses: &[NodeStatus], snapshot: &Snapshot, events: &[Event]) {
        let mut counters = lock(&self.counters);
        for e in events {
            let Some(c) = e.node.and_then(|i| counters.get_mut(i)) else {
                continue;
            };
            if matches!(e.state, Some(State::Down | State::Misconfigured)) {
                c.down_epoch += 1;
            }
            if e.interrupt {
                c.interrupt_epoch += 1;
            }
        }
        let rows: Vec<_> = statuses
            .iter()
            .zip(&snapshot.nodes)
            .zip(counters.iter())
            .map(|((n, s), c)| (n, s, *c))
            .collect();
        let beat = clock::now_ns();
        self.segment().write(self.pid, beat, &rows);
        self.last_beat.store(beat, Ordering::Relaxed);
    }

    /// Records that the passive faults posted for node `idx` up to `count` are applied
    /// (written with the next publish).
    pub(crate) fn set_applied(&self, idx: usize, count: u64) {
        if let Some(c) = lock(&self.counters).get_mut(idx) {
            c.applied = count;
        }
    }

    pub(crate) fn last_beat(&self) -> u64 {
        self.last_beat.load(Ordering::Relaxed)
    }
}
