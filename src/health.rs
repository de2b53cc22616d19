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

/// Whether the last probe was over a lag limit: `None` when lag is unknown
/// (the primary's position is not known), which never changes the lag state.
pub type OverLimit = Option<bool>;

/// The FALL/RISE machine of one node.
#[derive(Clone, Debug)]
pub struct Health {
    pub state: State,
    pub ok_streak: u32,
    pub fail_streak: u32,
    /// Consecutive good probes under the lag limits while `Lagging`.
    pub under_limit_streak: u32,
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

    /// A probe answered. Returns the transition, if any.
    pub fn on_success(&mut self, over: OverLimit, now: Instant) -> Option<(State, State)> {
        self.fail_streak = 0;
        self.ok_streak = self.ok_streak.saturating_add(1);
        self.last_good = Some(now);
        let lagging_now = over == Some(true);
        match self.state {
            // A fresh process must not wait RISE intervals to use a node it has never
            // seen fail; RISE guards against flapping of a node that did fail.
            State::Unknown => {
                self.under_limit_streak = 0;
                self.set(
                    if lagging_now {
                        State::Lagging
                    } else {
                        State::Up
                    },
                    now,
                )
            }
            State::Down | State::Misconfigured => {
                if self.ok_streak >= self.rise {
                    self.under_limit_streak = 0;
                    self.set(
                        if lagging_now {
                            State::Lagging
                        } else {
                            State::Up
                        },
                        now,
                    )
                } else {
                    None
                }
            }
            State::Up => {
                if lagging_now {
                    self.under_limit_streak = 0;
                    self.set(State::Lagging, now)
                } else {
                    None
                }
            }
            State::Lagging => match over {
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
                    None
                }
                None => None,
            },
        }
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
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn unknown_becomes_up_on_first_answer_and_down_after_fall() {
        let now = t0();
        let mut h = Health::new(2, 2, now);
        assert_eq!(h.state, State::Unknown);
        assert_eq!(h.on_success(None, now), Some((State::Unknown, State::Up)));
        assert_eq!(h.on_failure(FaultKind::Refused, now), None);
        assert_eq!(h.state, State::Up);
        assert_eq!(
            h.on_failure(FaultKind::Timeout, now),
            Some((State::Up, State::Down))
        );
        assert_eq!(h.on_failure(FaultKind::Timeout, now), None);
    }

    #[test]
    fn down_needs_rise_successes_and_a_failure_resets_the_streak() {
        let now = t0();
        let mut h = Health::new(2, 3, now);
        h.on_failure(FaultKind::Refused, now);
        h.on_failure(FaultKind::Refused, now);
        assert_eq!(h.state, State::Down);
        h.on_success(Some(false), now);
        h.on_success(Some(false), now);
        h.on_failure(FaultKind::Refused, now);
        h.on_success(Some(false), now);
        h.on_success(Some(false), now);
        assert_eq!(h.state, State::Down);
        assert_eq!(
            h.on_success(Some(false), now),
            Some((State::Down, State::Up))
        );
    }

    #[test]
    fn unknown_stays_unknown_until_fall_failures() {
        let now = t0();
        let mut h = Health::new(3, 2, now);
        h.on_failure(FaultKind::Refused, now);
        h.on_failure(FaultKind::Refused, now);
        assert_eq!(h.state, State::Unknown);
        h.on_failure(FaultKind::Refused, now);
        assert_eq!(h.state, State::Down);
    }

    #[test]
    fn lag_limit_has_hysteresis() {
        let now = t0();
        let mut h = Health::new(2, 2, now);
        h.on_success(Some(false), now);
        assert_eq!(
            h.on_success(Some(true), now),
            Some((State::Up, State::Lagging))
        );
        assert_eq!(h.on_success(Some(false), now), None);
        // Back over the limit: the streak starts again.
        assert_eq!(h.on_success(Some(true), now), None);
        assert_eq!(h.on_success(Some(false), now), None);
        // Unknown lag neither helps nor hurts.
        assert_eq!(h.on_success(None, now), None);
        assert_eq!(
            h.on_success(Some(false), now),
            Some((State::Lagging, State::Up))
        );
    }

    #[test]
    fn config_errors_are_immediate_and_recover_after_rise() {
        let now = t0();
        let mut h = Health::new(2, 2, now);
        h.on_success(None, now);
        assert_eq!(
            h.on_failure(FaultKind::Authentication, now),
            Some((State::Up, State::Misconfigured))
        );
        h.on_success(None, now);
        assert_eq!(h.state, State::Misconfigured);
        h.on_success(None, now);
        assert_eq!(h.state, State::Up);
    }

    #[test]
    fn staleness() {
        let now = t0();
        let mut h = Health::new(2, 2, now);
        assert!(!h.is_fresh(now, Duration::from_secs(3)));
        h.on_success(None, now);
        assert!(h.is_fresh(now + Duration::from_secs(3), Duration::from_secs(3)));
        assert!(!h.is_fresh(now + Duration::from_millis(3001), Duration::from_secs(3)));
    }

    #[test]
    fn lag_seconds_is_zero_for_caught_up_replica_of_idle_primary() {
        let start = t0();
        let mut w = WalHistory::default();
        w.push(100, start);
        // The primary stays at 100 for an hour.
        for s in 1..3600 {
            w.push(100, start + Duration::from_secs(s));
        }
        assert_eq!(
            w.lag_seconds(100, start + Duration::from_secs(3600)),
            Some(0.0)
        );
    }

    #[test]
    fn lag_seconds_grows_from_when_the_primary_moved_past() {
        let start = t0();
        let mut w = WalHistory::default();
        w.push(100, start);
        w.push(200, start + Duration::from_secs(10));
        w.push(300, start + Duration::from_secs(20));
        let now = start + Duration::from_secs(25);
        assert_eq!(w.lag_seconds(300, now), Some(0.0));
        assert_eq!(w.lag_seconds(200, now), Some(5.0));
        assert_eq!(w.lag_seconds(150, now), Some(15.0));
        assert_eq!(w.lag_seconds(100, now), Some(15.0));
        // Behind everything remembered: the oldest sample's age is the lower bound.
        assert_eq!(w.lag_seconds(50, now), Some(25.0));
        assert_eq!(WalHistory::default().lag_seconds(1, now), None);
    }

    #[test]
    fn history_is_bounded() {
        let start = t0();
        let mut w = WalHistory::default();
        for i in 0..(HISTORY_CAP as u64 + 100) {
            w.push(i, start);
        }
        assert_eq!(w.samples.len(), HISTORY_CAP);
    }
}
