use std::time::{Duration, Instant};

use super::*;
use crate::config::tests::cluster;
use crate::engine_state::EngineState;
use crate::probe::{Fault, FaultKind, Sample};
use crate::select::Reason;
use crate::step::tests::{sample_primary, sample_standby};
use crate::step::{build_snapshot, observe, passive};

fn primary_on(tl: u32, started: u64) -> Sample {
    Sample {
        timeline: Some(tl),
        started_us: Some(started),
        ..sample_primary(100)
    }
}

fn standby_on(tl: u32, started: u64) -> Sample {
    Sample {
        timeline: Some(tl),
        started_us: Some(started),
        ..sample_standby(100)
    }
}

fn state(samples: &[Sample]) -> (ClusterConfig, EngineState, Instant) {
    let weights: Vec<f64> = samples.iter().map(|_| 1.0).collect();
    let cfg = cluster(&weights);
    let now = Instant::now();
    let mut st = EngineState::new(&cfg, now);
    for (i, s) in samples.iter().enumerate() {
        observe(&cfg, &mut st, i, Ok(s.clone()), Duration::ZERO, now);
    }
    (cfg, st, now)
}

#[test]
fn the_configured_primary_takes_writes_while_it_is_primary() {
    let (cfg, st, now) = state(&[primary_on(1, 1), standby_on(1, 2)]);
    let r = observe_roles(&cfg, &st.nodes, now);
    assert_eq!(r.writer, Writer::Known(0));
    assert_eq!(r.targets, vec![0, 1]);
}

#[test]
fn a_promoted_replica_on_a_newer_timeline_takes_writes_and_swaps_aliases() {
    let (cfg, st, now) = state(&[primary_on(1, 1), primary_on(2, 2), standby_on(2, 3)]);
    let r = observe_roles(&cfg, &st.nodes, now);
    assert_eq!(r.writer, Writer::Known(1));
    // The primary alias goes to node 1; replica1's alias to node 0 (the old primary).
    assert_eq!(r.targets, vec![1, 0, 2]);
    assert_eq!(r.stale, vec![0]);
    assert_eq!(r.timeline, Some(2));
    // The old primary, not in recovery, is no replica: reads skip its alias.
    let snap = build_snapshot(&cfg, &st.nodes, now);
    for k in 0..50 {
        assert_ne!(snap.pick(now, f64::from(k) / 50.0).0, 1);
    }
}

#[test]
fn a_demoted_primary_serves_reads_through_the_swapped_alias() {
    let (cfg, st, now) = state(&[standby_on(2, 1), primary_on(2, 2)]);
    let r = observe_roles(&cfg, &st.nodes, now);
    assert_eq!(r.writer, Writer::Known(1));
    let snap = build_snapshot(&cfg, &st.nodes, now);
    // Alias 1 ("replica1") describes node 0, a standby: eligible for reads.
    assert!(snap.is_eligible(1, now));
    assert!(snap.is_eligible(0, now));
}

#[test]
fn no_primary_known_when_the_primary_is_down() {
    let (cfg, mut st, now) = state(&[primary_on(1, 1), standby_on(1, 2)]);
    let fault = Fault {
        kind: FaultKind::Refused,
        message: "Connection refused".into(),
    };
    passive(&cfg, &mut st, 0, fault, now);
    let r = observe_roles(&cfg, &st.nodes, now);
    assert_eq!(r.writer, Writer::Unknown);
    // Reads go to the standby, never to the primary alias (whose connects wait).
    let snap = build_snapshot(&cfg, &st.nodes, now);
    for k in 0..50 {
        assert_eq!(snap.pick(now, f64::from(k) / 50.0), (1, Reason::Weighted));
    }
}

#[test]
fn an_old_primary_behind_a_standby_on_a_newer_timeline_takes_no_writes() {
    let (cfg, st, now) = state(&[primary_on(1, 1), standby_on(2, 2)]);
    let r = observe_roles(&cfg, &st.nodes, now);
    assert_eq!(r.writer, Writer::Unknown);
    assert_eq!(r.stale, vec![0]);
}

#[test]
fn two_servers_on_one_timeline_are_a_split_brain() {
    let (cfg, st, now) = state(&[primary_on(1, 1), primary_on(1, 2)]);
    assert_eq!(
        observe_roles(&cfg, &st.nodes, now).writer,
        Writer::Split(vec![0, 1])
    );
}

#[test]
fn two_aliases_reaching_one_server_through_a_proxy_are_one_primary() {
    let (cfg, mut st, now) = state(&[primary_on(1, 7), primary_on(1, 7)]);
    assert_eq!(observe_roles(&cfg, &st.nodes, now).writer, Writer::Known(0));
    // Nor is it ever reported as two primaries, however long it lasts.
    let later = now + cfg.staleness_window() * 2;
    let events = observe(
        &cfg,
        &mut st,
        1,
        Ok(primary_on(1, 7)),
        Duration::ZERO,
        later,
    );
    assert!(
        events
            .iter()
            .all(|e| !e.message.contains("claim to be primary")),
        "{events:?}"
    );
}

#[test]
fn a_change_of_primary_is_logged_and_counted_once() {
    let (cfg, mut st, now) = state(&[primary_on(1, 1), standby_on(1, 2)]);
    let events = observe(&cfg, &mut st, 1, Ok(primary_on(2, 2)), Duration::ZERO, now);
    assert_eq!(st.role_changes, 1);
    assert!(
        events.iter().any(
            |e| e.message.contains("the primary is now") && e.message.contains("role change 1")
        ),
        "{events:?}"
    );
    let events = observe(&cfg, &mut st, 1, Ok(primary_on(2, 2)), Duration::ZERO, now);
    assert_eq!(st.role_changes, 1);
    assert!(events
        .iter()
        .all(|e| !e.message.contains("the primary is now")));
}
