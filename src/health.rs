//! Per-node health: the FALL/RISE state machine, lag limits with hysteresis, and the
//! primary's WAL history that turns a replayed LSN into seconds of lag. No I/O.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::probe::FaultKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Never answered yet: not healthy.
    Unknown,
    Up,
    Down,
    /// Answers, but is over a lag limit: out of weighted reads, kept for fallback.
    Lagging,
    /// Fails for a reason retrying will not fix (authentication, missing database).
    Misconfigured,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Down => "down",
            State::Lagging => "lagging",
            State::Misconfigured => "misconfigured",
        }
    }

    /// The node answers probes (it may still be lagging).
    pub fn is_live(self) -> bool {
        matches!(self, State::Up | State::Lagging)
    }
}

/// Whether the last probe was over a lag limit: `None` when a limit is on and the lag
/// is unknown (the primary's position is not known).
pub type OverLimit = Option<bool>;

/// The FALL/RISE machine of one node.
#[derive(Clone, Debug)]
pub struct Health {
    pub state: State,
    pub ok_streak: u32,
    pub fail_streak: u32,
    /// Consecutive good probes under the lag limits while `Lagging`.
    pub under_limit_streak: u32,
    /// Since it became `Lagging`, the node was measured over a limit (not only of
    /// unknown lag): it then needs RISE probes under the limits to come back.
    pub measured_over: bool,
    pub last_good: Option<Instant>,
    pub last_change: Instant,
    fall: u32,
    rise: u32,
}

impl Health {
    pub fn new(fall: u32, rise: u32, now: Instant) -> Health {
        Health {
            state: State::Unknown,
            ok_streak: 0,
            fail_streak: 0,
            under_limit_streak: 0,
            measured_over: false,
            last_good: None,
            last_change: now,
            fall,
            rise,
        }
    }

    fn set(&mut self, state: State, now: Instant) -> Option<(State, State)> {
        if state == self.state {
            return None;
        }
        let old = self.state;
        self.state = state;
        self.last_change = now;
        Some((old, state))
    }

    /// The state a node that answers enters from `Unknown`, `Down` or `Misconfigured`:
    /// with a limit on, a lag not known to be under it is not "within the limit", so
    /// the node is live (a fallback while the primary is down) but out of weighted
    /// reads until its lag is known.
    fn entering(&mut self, over: OverLimit) -> State {
        self.under_limit_streak = 0;
        self.measured_over = over == Some(true);
        if over == Some(false) {
            State::Up
        } else {
            State::Lagging
        }
    }

    /// A probe answered; `over` says whether the node is over a lag limit (`None`:
    /// a limit is on and the lag is unknown). Returns the transition, if any.
    pub fn on_success(&mut self, over: OverLimit, now: Instant) -> Option<(State, State)> {
        self.fail_streak = 0;
        self.ok_streak = self.ok_streak.saturating_add(1);
        self.last_good = Some(now);
        match self.state {
            // A fresh process must not wait RISE intervals to use a node it has never
            // seen fail; RISE guards against flapping of a node that did fail.
            State::Unknown => {
                let to = self.entering(over);
                self.set(to, now)
            }
            State::Down | State::Misconfigured => {
                if self.ok_streak >= self.rise {
                    let to = self.entering(over);
                    self.set(to, now)
                } else {
                    None
                }
            }
            // Unknown lag (the primary cannot be probed) keeps an up replica up: it
            // has everything it was last known to lack, and the primary's own reads
            // are failing.
            State::Up => {
                if over == Some(true) {
                    self.under_limit_streak = 0;
                    self.measured_over = true;
                    self.set(State::Lagging, now)
                } else {
                    None
                }
            }
            State::Lagging => match over {
                // Hysteresis guards against flapping around a limit; a node whose
                // lag was only unknown has no limit to flap around.
                Some(false) if !self.measured_over => self.set(State::Up, now),
                Some(false) => {
                    self.under_limit_streak += 1;
                    if self.under_limit_streak >= self.rise {
                        self.set(State::Up, now)
                    } else {
                        None
                    }
                }
                Some(true) => {
                    self.under_limit_streak = 0;
                    self.measured_over = true;
                    None
                }
                None => None,
            },
        }
    }

    /// A probe answered while the primary has never answered yet (cold start): the lag
    /// cannot be known, and the primary's first answer is at most an interval away, so
    /// the node stays `Unknown` instead of showing as lagging at every start-up.
    pub fn on_success_awaiting_primary(&mut self, now: Instant) {
        self.fail_streak = 0;
        self.ok_streak = self.ok_streak.saturating_add(1);
        self.last_good = Some(now);
    }

    /// A probe failed or timed out. Returns the transition, if any.
    pub fn on_failure(&mut self, kind: FaultKind, now: Instant) -> Option<(State, State)> {
        self.ok_streak = 0;
        self.fail_streak = self.fail_streak.saturating_add(1);
        if kind.is_config_error() {
            return self.set(State::Misconfigured, now);
        }
        if self.fail_streak >= self.fall && self.state != State::Down {
            return self.set(State::Down, now);
        }
        None
    }

    /// A real connection or query failed on the node for a node fault: it leaves reads
    /// at once (counted as FALL failures), and comes back only after RISE good probes.
    pub fn on_passive_fault(&mut self, now: Instant) -> Option<(State, State)> {
        self.ok_streak = 0;
        self.fail_streak = self.fail_streak.max(self.fall);
        match self.state {
            State::Down | State::Misconfigured => None,
            _ => self.set(State::Down, now),
        }
    }

    /// Whether the last good probe is recent enough to trust (the staleness rule).
    pub fn is_fresh(&self, now: Instant, window: Duration) -> bool {
        self.last_good
            .is_some_and(|t| now.saturating_duration_since(t) <= window)
    }
}

/// Recent (LSN, time) samples of the primary, one per change of position, oldest first.
#[derive(Debug, Default)]
pub struct WalHistory {
    samples: VecDeque<(u64, Instant)>,
    /// The latest sample, even when the position did not move.
    latest: Option<(u64, Instant)>,
}

const HISTORY_CAP: usize = 4096;

impl WalHistory {
    pub fn push(&mut self, lsn: u64, now: Instant) {
        self.latest = Some((lsn, now));
        match self.samples.back() {
            Some(&(last, _)) if lsn <= last => {}
            _ => {
                if self.samples.len() == HISTORY_CAP {
                    self.samples.pop_front();
                }
                self.samples.push_back((lsn, now));
            }
        }
    }

    pub fn latest(&self) -> Option<(u64, Instant)> {
        self.latest
    }

    /// Whether `lag_seconds(replayed)` is a measure, not a lower bound: the replica
    /// has replayed at least the oldest position remembered (or everything).
    pub fn covers(&self, replayed: u64) -> bool {
        let caught_up = self.latest.is_some_and(|(l, _)| replayed >= l);
        caught_up || self.samples.front().is_some_and(|&(l, _)| replayed >= l)
    }

    /// How long ago the primary moved past `replayed`: 0 when the replica has replayed
    /// everything the primary was last seen at (an idle primary included). When the
    /// replica is behind everything remembered, the age of the oldest sample is a lower
    /// bound and is what we report.
    pub fn lag_seconds(&self, replayed: u64, now: Instant) -> Option<f64> {
        let (latest, _) = self.latest?;
        if replayed >= latest {
            return Some(0.0);
        }
        // The first sample past `replayed` is when the primary had WAL the replica lacks.
        let idx = self.samples.partition_point(|&(lsn, _)| lsn <= replayed);
        let since = match self.samples.get(idx) {
            Some(&(_, t)) => t,
            None => self.latest?.1,
        };
        Some(now.saturating_duration_since(since).as_secs_f64())
    }
}

#[cfg(test)]
mod tests;
