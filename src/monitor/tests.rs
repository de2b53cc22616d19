use std::time::{Duration, Instant};

use super::*;
use crate::config::tests::cluster;
use crate::health::State;
use crate::probe::FaultKind;
use crate::step::build_snapshot;
use crate::step::tests::{sample_primary, sample_standby};

/// An engine whose thread probes nothing reachable; tests drive `apply` directly.
fn engine(max_lag_bytes: Option<u64>) -> Arc<Engine> {
    let mut cfg = cluster(&[1.0, 1.0]);
    cfg.max_lag_bytes = max_lag_bytes;
    stopped(cfg)
}

/// The engine of `cfg`, its thread stopped at once. Each node gets its own port (an
/// unroutable one on loopback: probes fail fast, and never interfere before the test
/// is done, as the interval is long) unless it already has one of 1..=9: nodes on one
/// port are one server.
fn stopped(mut cfg: crate::config::ClusterConfig) -> Arc<Engine> {
    for (i, n) in cfg.nodes.iter_mut().enumerate() {
        if n.port > 9 {
            n.port = 1 + i as u16;
        }
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

/// `default` on port 1; `replica@a` (node 1) and `replica@b` (node 2) are one
/// server on port 2, listed twice (a second alias over the same host).
fn one_server_twice() -> Arc<Engine> {
    let mut cfg = cluster(&[1.0, 1.0, 1.0]);
    cfg.nodes[0].port = 1;
    cfg.nodes[1].port = 2;
    cfg.nodes[2].port = 2;
    stopped(cfg)
}

#[test]
fn one_probe_moves_every_node_of_its_server_together() {
    let e = one_server_twice();
    assert_eq!(e.groups.members, vec![vec![0], vec![1, 2]]);
    assert_eq!(e.wake.len(), 2);
    let now = Instant::now();
    e.apply(0, Ok(sample_primary(100)), Duration::ZERO, now);
    // One probe of node 2's server: nodes 1 and 2 both count it.
    for _ in 0..2 {
        e.apply(2, Ok(sample_standby(100)), Duration::ZERO, now);
    }
    let st = e.view(false).nodes;
    assert_eq!((st[1].probes, st[2].probes), (2, 2));
    assert_eq!(
        (st[1].health.state, st[2].health.state),
        (State::Up, State::Up)
    );
    let _ = e.events.wait(Duration::ZERO);
    // FALL (2) failed probes take both down in the same step, each logged once.
    let refused = || {
        Err(Fault {
            kind: FaultKind::Refused,
            message: "refused".into(),
        })
    };
    e.apply(1, refused(), Duration::ZERO, now);
    assert_eq!(e.view(false).nodes[2].health.state, State::Up);
    e.apply(1, refused(), Duration::ZERO, now);
    let st = e.view(false).nodes;
    assert_eq!(
        (st[1].health.state, st[2].health.state),
        (State::Down, State::Down)
    );
    assert_eq!((st[1].failed_probes, st[2].failed_probes), (2, 2));
    let events = e.events.wait(Duration::ZERO);
    let downs: Vec<_> = events
        .iter()
        .filter(|ev| ev.state == Some(State::Down))
        .map(|ev| ev.node)
        .collect();
    assert_eq!(downs, vec![Some(1), Some(2)], "{events:?}");
}

#[test]
fn a_passive_fault_on_one_alias_takes_its_server_out_for_every_alias() {
    let e = one_server_twice();
    let now = Instant::now();
    e.apply(0, Ok(sample_primary(100)), Duration::ZERO, now);
    e.apply(1, Ok(sample_standby(100)), Duration::ZERO, now);
    let _ = e.events.wait(Duration::ZERO);
    let fault = Fault {
        kind: FaultKind::Refused,
        message: "passive: refused".into(),
    };
    assert!(e.report_passive(2, fault, now));
    let snap = e.shared.snapshot.load();
    for k in 0..50 {
        assert_eq!(snap.pick(now, k as f64 / 50.0).0, 0);
    }
    let st = e.view(false).nodes;
    assert_eq!(
        (st[1].health.state, st[2].health.state),
        (State::Down, State::Down)
    );
    assert_eq!((st[1].passive_faults, st[2].passive_faults), (1, 1));
    // Each node's going down is logged (and counted by Python) once, by its name.
    let events = e.events.wait(Duration::ZERO);
    let downs: Vec<_> = events
        .iter()
        .filter(|ev| ev.state == Some(State::Down))
        .map(|ev| ev.node)
        .collect();
    assert_eq!(downs, vec![Some(1), Some(2)], "{events:?}");
    // RISE good probes of the server bring both back together.
    for _ in 0..2 {
        e.apply(1, Ok(sample_standby(100)), Duration::ZERO, now);
    }
    let st = e.view(false).nodes;
    assert_eq!(
        (st[1].health.state, st[2].health.state),
        (State::Up, State::Up)
    );
}

#[test]
fn a_fault_on_the_primary_through_another_alias_moves_no_role() {
    // `default` and `replica@p` are the primary's server; `replica@s` a standby.
    let mut cfg = cluster(&[1.0, 1.0, 1.0]);
    for (n, port) in cfg.nodes.iter_mut().zip([1, 1, 2]) {
        n.port = port;
    }
    cfg.nodes[1].multi_host = true;
    cfg.nodes[2].multi_host = true;
    let e = stopped(cfg);
    assert_eq!(e.groups.members, vec![vec![0, 1], vec![2]]);
    let now = Instant::now();
    // A real probe reads the server's start time: one server under two names.
    let primary = Sample {
        started_us: Some(42),
        ..sample_primary(100)
    };
    e.apply(0, Ok(primary), Duration::ZERO, now);
    e.apply(2, Ok(sample_standby(100)), Duration::ZERO, now);
    let writer = e.shared.snapshot.load().roles.writer_node();
    assert_eq!(writer, Some(0));
    let _ = e.events.wait(Duration::ZERO);
    let fault = Fault {
        kind: FaultKind::Refused,
        message: "passive: refused".into(),
    };
    e.report_passive(1, fault, now);
    // The server is down under both names: no primary now (the gap), rather than
    // writes moving to the same dead server under its other name.
    let st = e.view(false).nodes;
    assert_eq!(
        (st[0].health.state, st[1].health.state),
        (State::Down, State::Down)
    );
    assert_eq!(e.shared.snapshot.load().roles.writer_node(), None);
    assert_eq!(e.shared.role_changes.load(Ordering::Relaxed), 0);
}

#[test]
fn a_multi_host_read_host_back_in_reads_bumps_the_role_epoch() {
    // `default` = the primary's server; `replica@1` the same server, `replica@2` a
    // standby. The standby goes down and comes back: persistent connections of
    // `replica` must be placed anew then, though no role changed.
    let mut cfg = cluster(&[1.0, 1.0, 1.0]);
    for (n, port) in cfg.nodes.iter_mut().zip([1, 1, 2]) {
        n.port = port;
    }
    cfg.nodes[1].multi_host = true;
    cfg.nodes[2].multi_host = true;
    let e = stopped(cfg);
    let now = Instant::now();
    let primary = Sample {
        started_us: Some(42),
        ..sample_primary(100)
    };
    e.apply(0, Ok(primary.clone()), Duration::ZERO, now);
    e.apply(2, Ok(sample_standby(100)), Duration::ZERO, now);
    assert!(e.shared.takes_reads(2));
    let refused = || {
        Err(Fault {
            kind: FaultKind::Refused,
            message: "refused".into(),
        })
    };
    e.apply(2, refused(), Duration::ZERO, now);
    e.apply(2, refused(), Duration::ZERO, now);
    assert!(!e.shared.takes_reads(2));
    let down = e.shared.role_epoch.load(Ordering::Acquire);
    e.apply(2, Ok(sample_standby(100)), Duration::ZERO, now);
    e.apply(2, Ok(sample_standby(100)), Duration::ZERO, now);
    assert!(e.shared.takes_reads(2));
    assert!(e.shared.role_epoch.load(Ordering::Acquire) > down);
    assert_eq!(e.shared.role_changes.load(Ordering::Relaxed), 0);
    // Nothing new: no bump (connections are not moved for nothing).
    let back = e.shared.role_epoch.load(Ordering::Acquire);
    e.apply(2, Ok(sample_standby(100)), Duration::ZERO, now);
    e.apply(0, Ok(primary), Duration::ZERO, now);
    assert_eq!(e.shared.role_epoch.load(Ordering::Acquire), back);
}
