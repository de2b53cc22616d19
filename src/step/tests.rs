use std::time::{Duration, Instant};

use super::*;
use crate::config::tests::cluster;
use crate::probe::FaultKind;
use crate::select::Reason;

pub(crate) fn sample_primary(lsn: u64) -> Sample {
    Sample {
        in_recovery: false,
        current_lsn: Some(lsn),
        timeline: Some(1),
        ..Sample::default()
    }
}

pub(crate) fn sample_standby(replayed: u64) -> Sample {
    Sample {
        in_recovery: true,
        receive_lsn: Some(replayed),
        replay_lsn: Some(replayed),
        receiver_status: Some("streaming".into()),
        timeline: Some(1),
        ..Sample::default()
    }
}

fn setup(max_lag_bytes: Option<u64>) -> (ClusterConfig, EngineState, Instant) {
    let mut cfg = cluster(&[1.0, 1.0]);
    cfg.max_lag_bytes = max_lag_bytes;
    let now = Instant::now();
    let st = EngineState::new(&cfg, now);
    (cfg, st, now)
}

fn ok(
    cfg: &ClusterConfig,
    st: &mut EngineState,
    idx: usize,
    s: Sample,
    now: Instant,
) -> Vec<Event> {
    observe(cfg, st, idx, Ok(s), Duration::ZERO, now)
}

#[test]
fn lag_bytes_come_from_the_primary_sample_and_limits_take_replica_out() {
    let (cfg, mut st, now) = setup(Some(1000));
    ok(&cfg, &mut st, 0, sample_primary(10_000), now);
    ok(&cfg, &mut st, 1, sample_standby(10_000), now);
    assert_eq!(st.nodes[1].lag_bytes, Some(0));
    assert_eq!(st.nodes[1].health.state, State::Up);
    ok(&cfg, &mut st, 0, sample_primary(20_000), now);
    let events = ok(&cfg, &mut st, 1, sample_standby(10_000), now);
    assert_eq!(st.nodes[1].lag_bytes, Some(10_000));
    assert_eq!(st.nodes[1].health.state, State::Lagging);
    assert!(events
        .iter()
        .any(|e| e.severity == Severity::Warning && e.state == Some(State::Lagging)));
    let snap = build_snapshot(&cfg, &st.nodes, now);
    assert_eq!(snap.pick(now, 0.99), (0, Reason::LagFallback));
}

#[test]
fn promoted_replica_is_flagged_and_not_read_from() {
    let (cfg, mut st, now) = setup(None);
    ok(&cfg, &mut st, 0, sample_primary(100), now);
    let mut promoted = sample_primary(200);
    promoted.timeline = Some(2);
    let events = ok(&cfg, &mut st, 1, promoted, now);
    assert!(st.nodes[1].role_mismatch);
    let snap = build_snapshot(&cfg, &st.nodes, now);
    for k in 0..50 {
        assert_eq!(snap.pick(now, k as f64 / 50.0).0, 0);
    }
    assert!(
        events
            .iter()
            .any(|e| e.severity == Severity::Error && e.message.contains("promoted")),
        "{events:?}"
    );
    // Two claims are reported once they last the staleness window (a proxy's check
    // window can show a role flip for a moment).
    assert!(events
        .iter()
        .all(|e| !e.message.contains("claim to be primary")));
    let later = now + cfg.staleness_window();
    let mut events = ok(&cfg, &mut st, 0, sample_primary(100), later);
    let mut again = sample_primary(200);
    again.timeline = Some(2);
    events.extend(ok(&cfg, &mut st, 1, again, later));
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("claim to be primary")
                && e.message.contains("newest timeline is on \"replica1\"")),
        "{events:?}"
    );
    // Reported once per episode, not once per probe.
    let mut again = sample_primary(300);
    again.timeline = Some(2);
    let events = ok(&cfg, &mut st, 1, again, later);
    assert!(
        events
            .iter()
            .all(|e| !e.message.contains("claim to be primary")),
        "{events:?}"
    );
}

#[test]
fn failures_then_recovery() {
    let (cfg, mut st, now) = setup(None);
    ok(&cfg, &mut st, 0, sample_primary(100), now);
    ok(&cfg, &mut st, 1, sample_standby(100), now);
    let fault = || {
        Err(Fault {
            kind: FaultKind::Refused,
            message: "Connection refused".into(),
        })
    };
    assert!(observe(&cfg, &mut st, 1, fault(), Duration::ZERO, now).is_empty());
    let events = observe(&cfg, &mut st, 1, fault(), Duration::ZERO, now);
    assert_eq!(st.nodes[1].health.state, State::Down);
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("is down (was up) after 2 failed") && !e.interrupt),
        "{events:?}"
    );
    ok(&cfg, &mut st, 1, sample_standby(100), now);
    assert_eq!(st.nodes[1].health.state, State::Down);
    assert!(
        st.nodes[1].last_error.is_some(),
        "kept until the node is back"
    );
    ok(&cfg, &mut st, 1, sample_standby(100), now);
    assert_eq!(st.nodes[1].health.state, State::Up);
    assert!(st.nodes[1].last_error.is_none());
}

#[test]
fn timeouts_ask_for_interrupts() {
    let (cfg, mut st, now) = setup(None);
    ok(&cfg, &mut st, 1, sample_standby(100), now);
    let timeout = || {
        Err(Fault {
            kind: FaultKind::Timeout,
            message: "no answer".into(),
        })
    };
    observe(&cfg, &mut st, 1, timeout(), Duration::ZERO, now);
    let events = observe(&cfg, &mut st, 1, timeout(), Duration::ZERO, now);
    assert!(
        events.iter().any(|e| e.interrupt && e.node == Some(1)),
        "{events:?}"
    );
}

#[test]
fn passive_fault_takes_node_out_and_rise_brings_it_back() {
    let (cfg, mut st, now) = setup(None);
    ok(&cfg, &mut st, 0, sample_primary(100), now);
    ok(&cfg, &mut st, 1, sample_standby(100), now);
    let fault = Fault {
        kind: FaultKind::Refused,
        message: "passive: refused".into(),
    };
    let events = passive(&cfg, &mut st, 1, fault.clone(), now);
    assert_eq!(st.nodes[1].health.state, State::Down);
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("reported by a query")),
        "{events:?}"
    );
    assert!(passive(&cfg, &mut st, 1, fault, now).is_empty());
    assert_eq!(st.nodes[1].passive_faults, 2);
    ok(&cfg, &mut st, 1, sample_standby(100), now);
    assert_eq!(st.nodes[1].health.state, State::Down);
    ok(&cfg, &mut st, 1, sample_standby(100), now);
    assert_eq!(st.nodes[1].health.state, State::Up);
}

#[test]
fn over_limit_unknown_when_lag_unknown() {
    let mut cfg = cluster(&[1.0, 1.0]);
    assert_eq!(over_limit(&cfg, None, None), Some(false));
    cfg.max_lag_seconds = Some(5.0);
    assert_eq!(over_limit(&cfg, None, None), None);
    assert_eq!(over_limit(&cfg, None, Some(6.0)), Some(true));
    assert_eq!(over_limit(&cfg, None, Some(4.0)), Some(false));
}
