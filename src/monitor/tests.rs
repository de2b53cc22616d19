use std::time::{Duration, Instant};

use super::*;
use crate::config::tests::cluster;
use crate::health::State;
use crate::step::build_snapshot;
use crate::step::tests::{sample_primary, sample_standby};

/// An engine whose thread probes nothing reachable; tests drive `apply` directly.
fn engine(max_lag_bytes: Option<u64>) -> Arc<Engine> {
    let mut cfg = cluster(&[1.0, 1.0]);
    cfg.max_lag_bytes = max_lag_bytes;
    // An unroutable port on loopback: probes fail fast and never interfere before the
    // test is done (interval is long).
    for n in &mut cfg.nodes {
        n.port = 1;
    }
    cfg.probe_interval = Duration::from_secs(3600);
    let shared = Arc::new(Shared::new(cfg));
    let e = Engine::start(shared, Arc::new(Events::default()), None, None);
    e.stop();
    e
}

#[test]
fn passive_fault_takes_node_out_now_and_rise_brings_it_back() {
    let e = engine(None);
    let now = Instant::now();
    e.apply(0, Ok(sample_primary(100)), Duration::ZERO, now);
    e.apply(1, Ok(sample_standby(100)), Duration::ZERO, now);
    let _ = e.events.wait(Duration::ZERO);
    let fault = Fault {
        kind: FaultKind::Timeout,
        message: "passive: connection timeout expired".into(),
    };
    assert!(e.report_passive(1, fault, now));
    // Out of reads at once, and in status (the prober held no lock here).
    let snap = e.shared.snapshot.load();
    for k in 0..50 {
        assert_eq!(snap.pick(now, k as f64 / 50.0).0, 0);
    }
    let st = e.view(false).nodes;
    assert_eq!(st[1].health.state, State::Down);
    assert_eq!(st[1].passive_faults, 1);
    let events = e.events.wait(Duration::ZERO);
    assert!(
        events.iter().any(|ev| ev.node == Some(1)
            && ev.interrupt
            && ev.message.contains("reported by a query")),
        "{events:?}"
    );
    // A second report while down is counted, and logs nothing.
    let again = Fault {
        kind: FaultKind::Refused,
        message: "passive: refused".into(),
    };
    assert!(!e.report_passive(1, again, now));
    assert_eq!(e.view(false).nodes[1].passive_faults, 2);
    assert!(e.events.wait(Duration::ZERO).is_empty());
    // Back only after RISE (2) good probes.
    e.apply(1, Ok(sample_standby(100)), Duration::ZERO, now);
    assert_eq!(e.view(false).nodes[1].passive_faults, 2);
    assert_eq!(e.view(false).nodes[1].health.state, State::Down);
    e.apply(1, Ok(sample_standby(100)), Duration::ZERO, now);
    assert_eq!(e.view(false).nodes[1].health.state, State::Up);
    assert_eq!(e.shared.snapshot.load().pick(now, 0.99).0, 1);
}

#[test]
fn a_report_racing_with_a_publish_is_not_lost() {
    let e = engine(None);
    let now = Instant::now();
    e.apply(0, Ok(sample_primary(100)), Duration::ZERO, now);
    e.apply(1, Ok(sample_standby(100)), Duration::ZERO, now);
    // The prober holds its lock while a report arrives: the report waits for
    // nothing, and the prober's next publish keeps the node out.
    let guard = e.state.lock().unwrap();
    let fault = Fault {
        kind: FaultKind::Refused,
        message: "passive: refused".into(),
    };
    assert!(e.report_passive(1, fault, now));
    let stale = build_snapshot(&e.shared.config, &guard.nodes, now);
    drop(guard);
    e.publish(stale, now);
    assert_eq!(e.shared.snapshot.load().pick(now, 0.99).0, 0);
    assert_eq!(e.view(false).nodes[1].health.state, State::Up);
    e.apply(0, Ok(sample_primary(100)), Duration::ZERO, now);
    assert_eq!(e.view(false).nodes[1].health.state, State::Down);
}
