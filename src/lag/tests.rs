use std::time::{Duration, Instant};

use super::*;
use crate::config::tests::cluster;
use crate::engine_state::EngineState;
use crate::events::Event;
use crate::probe::{Fault, FaultKind};
use crate::select::Reason;
use crate::step::tests::{sample_primary, sample_standby};
use crate::step::{build_snapshot, observe};

fn defaults(weights: &[f64]) -> ClusterConfig {
    let mut cfg = cluster(weights);
    cfg.max_lag_seconds = Some(5.0);
    cfg.max_lag_bytes = Some(64 << 20);
    cfg.lag_ceiling_seconds = Some(30.0);
    cfg
}

fn ok(cfg: &ClusterConfig, st: &mut EngineState, i: usize, s: Sample, now: Instant) -> Vec<Event> {
    observe(cfg, st, i, Ok(s), Duration::ZERO, now)
}

fn paused(replayed: u64) -> Sample {
    Sample {
        replay_paused: true,
        ..sample_standby(replayed)
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn stopped_names_paused_replay_and_a_receiver_that_is_not_streaming() {
    assert_eq!(stopped(&sample_standby(1)), None);
    assert_eq!(stopped(&paused(1)).as_deref(), Some("replay paused"));
    let mut s = sample_standby(1);
    s.receiver_status = None;
    assert_eq!(stopped(&s).as_deref(), Some("no WAL receiver"));
    s.receiver_status = Some("waiting".into());
    assert_eq!(stopped(&s).as_deref(), Some("WAL receiver waiting"));
    // A probe user without pg_read_all_stats cannot tell: not counted as stopped.
    s.receiver_status = Some(RECEIVER_HIDDEN.into());
    assert_eq!(stopped(&s), None);
    assert_eq!(stopped(&sample_primary(1)), None);
}

#[test]
fn a_stopped_standby_is_over_once_the_primary_moved_on_and_never_for_an_idle_primary() {
    let cfg = defaults(&[1.0, 1.0]);
    // Behind by a few bytes for a fraction of a second: far under both limits.
    assert_eq!(
        over_limit(&cfg, &paused(100), Some(8), Some(0.1)),
        Some(true)
    );
    assert_eq!(
        over_limit(&cfg, &sample_standby(100), Some(8), Some(0.1)),
        Some(false)
    );
    // The primary is idle at what the standby replayed.
    assert_eq!(
        over_limit(&cfg, &paused(100), Some(0), Some(0.0)),
        Some(false)
    );
    // Unknown lag with a limit on is not "within the limit".
    assert_eq!(over_limit(&cfg, &sample_standby(100), None, None), None);
    // With every limit off, nothing is over, stopped or not.
    let mut off = cfg.clone();
    off.max_lag_seconds = None;
    off.max_lag_bytes = None;
    assert_eq!(over_limit(&off, &paused(100), Some(8), None), Some(false));
}

#[test]
fn paused_replay_leaves_reads_at_the_next_probe_and_says_why() {
    let cfg = defaults(&[1.0, 1.0]);
    let mut st = EngineState::new(&cfg, Instant::now());
    let t = Instant::now();
    ok(&cfg, &mut st, 0, sample_primary(1000), t);
    ok(&cfg, &mut st, 1, paused(1000), t);
    assert_eq!(
        st.nodes[1].health.state,
        State::Up,
        "idle primary: caught up"
    );
    ok(&cfg, &mut st, 0, sample_primary(1200), t + secs(1.0));
    let events = ok(&cfg, &mut st, 1, paused(1000), t + secs(1.1));
    assert_eq!(st.nodes[1].health.state, State::Lagging);
    let why = cause(&cfg, &st.nodes[1]).unwrap();
    assert!(why.starts_with("replay paused, 200 bytes"), "{why}");
    assert!(
        events.iter().any(|e| e.message.contains("replay paused")),
        "{events:?}"
    );
    assert_eq!(cause(&cfg, &st.nodes[0]), None);
}

#[test]
fn cold_start_waits_for_the_primary_instead_of_trusting_unknown_lag() {
    let cfg = defaults(&[1.0, 1.0]);
    let t = Instant::now();
    let mut st = EngineState::new(&cfg, t);
    ok(&cfg, &mut st, 1, sample_standby(1000), t);
    assert_eq!(st.nodes[1].health.state, State::Unknown);
    let snap = build_snapshot(&cfg, &st.nodes, t);
    assert_eq!(snap.pick(t, 0.99).0, 0, "reads go to the primary meanwhile");
    ok(&cfg, &mut st, 0, sample_primary(1000), t + secs(0.01));
    ok(&cfg, &mut st, 1, sample_standby(1000), t + secs(0.02));
    assert_eq!(st.nodes[1].health.state, State::Up, "no RISE wait at start");
}

#[test]
fn with_the_primary_down_a_standby_of_unknown_lag_serves_as_fallback() {
    let cfg = defaults(&[1.0, 1.0]);
    let t = Instant::now();
    let mut st = EngineState::new(&cfg, t);
    let refused = || {
        Err(Fault {
            kind: FaultKind::Refused,
            message: "refused".into(),
        })
    };
    observe(&cfg, &mut st, 0, refused(), Duration::ZERO, t);
    observe(&cfg, &mut st, 0, refused(), Duration::ZERO, t);
    ok(&cfg, &mut st, 1, sample_standby(1000), t);
    assert_eq!(st.nodes[1].health.state, State::Lagging);
    assert!(cause(&cfg, &st.nodes[1])
        .unwrap()
        .starts_with("lag unknown"));
    let snap = build_snapshot(&cfg, &st.nodes, t);
    assert_eq!(snap.pick(t, 0.5), (1, Reason::DownFallback));
}

/// A primary writing steadily from `t`, and replicas whose replay stopped at the
/// given seconds after `t`; probed at `t + at`.
fn lagging_cluster(stops: &[f64], at: f64) -> (ClusterConfig, EngineState, Instant, Instant) {
    let mut weights = vec![1.0];
    weights.extend(stops.iter().map(|_| 1.0));
    let cfg = defaults(&weights);
    let t = Instant::now();
    let mut st = EngineState::new(&cfg, t);
    for k in 0..=(at * 10.0) as u64 {
        let when = t + secs(k as f64 / 10.0);
        ok(&cfg, &mut st, 0, sample_primary(1000 + k), when);
        for (i, stop) in stops.iter().enumerate() {
            let replayed = 1000 + k.min((stop * 10.0) as u64);
            let sample = if replayed < 1000 + k {
                paused(replayed)
            } else {
                sample_standby(replayed)
            };
            ok(&cfg, &mut st, i + 1, sample, when);
        }
    }
    (cfg, st, t, t + secs(at))
}

#[test]
fn every_replica_lagging_keeps_the_least_lagged_ones_serving_plain_reads() {
    // Replica 1 stopped at 2 s, replica 2 at 4 s, replica 3 at 0.5 s; now is 10 s.
    let (cfg, st, _, now) = lagging_cluster(&[2.0, 4.0, 0.5], 10.0);
    assert!(st
        .nodes
        .iter()
        .skip(1)
        .all(|n| n.health.state == State::Lagging));
    // Lags are about 8, 6 and 9.5 s: all within MAX_LAG_SECONDS (5) of the best.
    assert_eq!(
        tolerated(&cfg, &st.nodes, now),
        vec![false, true, true, true]
    );
    assert_eq!(st.herd, Herd::Tolerating);
    let snap = build_snapshot(&cfg, &st.nodes, now);
    // The primary keeps its own share (weight 1 of 4); replicas serve the rest.
    assert_eq!(snap.pick(now, 0.1), (0, Reason::Weighted));
    assert_eq!(snap.pick(now, 0.9).1, Reason::LagTolerated);
    assert_eq!(snap.pick_now(0.9).1, Reason::LagTolerated);
    // Reads that must see a write still go where it is visible.
    assert_eq!(snap.pick_min_lsn(now, 0.9, 1100).0, 0);
}

#[test]
fn a_tolerated_replica_serves_less_the_staler_it_is() {
    let cfg = defaults(&[1.0, 1.0]);
    let share = |s: f64| tolerated_share(&cfg, Some(s));
    assert_eq!(
        share(0.5),
        1.0,
        "stopped, but not yet over the seconds limit"
    );
    assert_eq!(share(5.0), 1.0);
    assert!((share(17.5) - 0.5).abs() < 1e-9);
    assert_eq!(share(30.0), 0.0);
    assert_eq!(share(40.0), 0.0);
    assert_eq!(tolerated_share(&cfg, None), 0.0);
    // The snapshot's weights follow: at about 17.5 s the replica weighs half.
    let (cfg, st, _, now) = lagging_cluster(&[0.5], 18.0);
    let snap = build_snapshot(&cfg, &st.nodes, now);
    let w = snap.nodes[1].weight;
    assert!(w > 0.4 && w < 0.6, "{w}");
}

#[test]
fn only_replicas_near_the_least_lagged_serve() {
    let (cfg, st, _, now) = lagging_cluster(&[9.0, 1.0], 16.0);
    // Lags about 7 s and 15 s: the second is more than 5 s behind the first.
    assert_eq!(tolerated(&cfg, &st.nodes, now), vec![false, true, false]);
}

#[test]
fn over_the_ceiling_reads_go_to_the_primary_and_the_change_is_logged_once() {
    let (cfg, mut st, t, _) = lagging_cluster(&[1.0], 20.0);
    assert_eq!(st.herd, Herd::Tolerating);
    let mut logged = Vec::new();
    for k in 201..=330u64 {
        let when = t + secs(k as f64 / 10.0);
        logged.extend(ok(&cfg, &mut st, 0, sample_primary(1000 + k), when));
        logged.extend(ok(&cfg, &mut st, 1, paused(1010), when));
    }
    let now = t + secs(33.0);
    assert_eq!(st.herd, Herd::Primary);
    let herd_logs: Vec<_> = logged.iter().filter(|e| e.node.is_none()).collect();
    assert_eq!(herd_logs.len(), 1, "{herd_logs:?}");
    assert!(herd_logs[0].message.contains("LAG_CEILING_SECONDS"));
    let snap = build_snapshot(&cfg, &st.nodes, now);
    assert_eq!(snap.pick(now, 0.9), (0, Reason::LagFallback));
    // Replay resumes: the replica comes back after RISE probes, logged once.
    let mut back = Vec::new();
    for k in 331..=335u64 {
        let when = t + secs(k as f64 / 10.0);
        back.extend(ok(&cfg, &mut st, 0, sample_primary(1000 + k), when));
        back.extend(ok(&cfg, &mut st, 1, sample_standby(1000 + k), when));
    }
    assert_eq!(st.nodes[1].health.state, State::Up);
    assert_eq!(st.herd, Herd::Normal);
    // Caught up but inside RISE, it serves as the least-lagged first; then it is up.
    let herd_logs: Vec<&str> = back
        .iter()
        .filter(|e| e.node.is_none())
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(herd_logs.len(), 2, "{herd_logs:?}");
    assert!(herd_logs[0].contains("least-lagged replica(s) \"replica1\""));
    assert!(herd_logs[1].starts_with("replicas take reads again"));
}

#[test]
fn a_lower_bound_of_lag_is_never_tolerated() {
    // Right after start-up the standby is behind everything the prober remembers:
    // its seconds are a lower bound (the bytes limit takes it out).
    let cfg = defaults(&[1.0, 1.0]);
    let t = Instant::now();
    let mut st = EngineState::new(&cfg, t);
    ok(&cfg, &mut st, 0, sample_primary(1 << 30), t);
    ok(&cfg, &mut st, 1, sample_standby(1000), t);
    assert_eq!(st.nodes[1].health.state, State::Lagging);
    assert!(!st.nodes[1].lag_exact);
    assert_eq!(tolerated(&cfg, &st.nodes, t), vec![false, false]);
    assert_eq!(st.herd, Herd::Primary);
}

#[test]
fn no_ceiling_means_every_read_goes_to_the_primary() {
    let (mut cfg, st, _, now) = lagging_cluster(&[2.0], 10.0);
    cfg.lag_ceiling_seconds = None;
    assert_eq!(tolerated(&cfg, &st.nodes, now), vec![false, false]);
    assert_eq!(
        build_snapshot(&cfg, &st.nodes, now).pick(now, 0.9),
        (0, Reason::LagFallback)
    );
}
