use super::*;

fn t0() -> Instant {
    Instant::now()
}

#[test]
fn unknown_becomes_up_on_first_answer_and_down_after_fall() {
    let now = t0();
    let mut h = Health::new(2, 2, now);
    assert_eq!(h.state, State::Unknown);
    assert_eq!(
        h.on_success(Some(false), now),
        Some((State::Unknown, State::Up))
    );
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
fn unknown_lag_with_a_limit_is_live_but_not_up_and_joins_once_known() {
    let now = t0();
    let mut h = Health::new(2, 2, now);
    assert_eq!(
        h.on_success(None, now),
        Some((State::Unknown, State::Lagging))
    );
    assert!(h.state.is_live(), "a fallback while the primary is down");
    assert_eq!(h.on_success(None, now), None);
    // Never measured over a limit: no hysteresis to wait for.
    assert_eq!(
        h.on_success(Some(false), now),
        Some((State::Lagging, State::Up))
    );
    // An up replica whose lag becomes unknown (the primary cannot be probed) stays up.
    assert_eq!(h.on_success(None, now), None);
    assert_eq!(h.state, State::Up);
}

#[test]
fn a_node_back_from_down_with_unknown_lag_is_lagging() {
    let now = t0();
    let mut h = Health::new(1, 1, now);
    h.on_failure(FaultKind::Refused, now);
    assert_eq!(h.on_success(None, now), Some((State::Down, State::Lagging)));
    assert_eq!(h.on_success(Some(true), now), None);
    // Measured over now: RISE (1) probe under the limit brings it back.
    assert_eq!(
        h.on_success(Some(false), now),
        Some((State::Lagging, State::Up))
    );
}

#[test]
fn awaiting_the_primary_keeps_unknown_but_fresh() {
    let now = t0();
    let mut h = Health::new(2, 2, now);
    h.on_success_awaiting_primary(now);
    assert_eq!(h.state, State::Unknown);
    assert!(h.is_fresh(now, Duration::from_secs(1)));
}

#[test]
fn config_errors_are_immediate_and_recover_after_rise() {
    let now = t0();
    let mut h = Health::new(2, 2, now);
    h.on_success(Some(false), now);
    assert_eq!(
        h.on_failure(FaultKind::Authentication, now),
        Some((State::Up, State::Misconfigured))
    );
    h.on_success(Some(false), now);
    assert_eq!(h.state, State::Misconfigured);
    h.on_success(Some(false), now);
    assert_eq!(h.state, State::Up);
}

#[test]
fn staleness() {
    let now = t0();
    let mut h = Health::new(2, 2, now);
    assert!(!h.is_fresh(now, Duration::from_secs(3)));
    h.on_success(Some(false), now);
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
