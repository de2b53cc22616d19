use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::node::{ERROR_BYTES, N_PROBES};
use super::*;
use crate::config::tests::cluster;
use crate::engine_state::EngineState;
use crate::probe::Fault;
use crate::step::tests::{sample_primary, sample_standby};
use crate::step::{build_snapshot, observe, passive};

fn words(nodes: usize) -> Vec<AtomicU64> {
    (0..words_for(nodes)).map(|_| AtomicU64::new(0)).collect()
}

/// A primary up, a replica down for timeouts with a redacted error.
fn state() -> (crate::config::ClusterConfig, EngineState, Instant) {
    let cfg = cluster(&[1.0, 2.0]);
    let now = Instant::now();
    let mut st = EngineState::new(&cfg, now);
    observe(
        &cfg,
        &mut st,
        0,
        Ok(sample_primary(5000)),
        Duration::from_millis(3),
        now,
    );
    observe(
        &cfg,
        &mut st,
        1,
        Ok(sample_standby(4000)),
        Duration::from_millis(4),
        now,
    );
    let fault = Fault {
        kind: FaultKind::Timeout,
        message: "passive: é timed out".repeat(40),
    };
    passive(&cfg, &mut st, 1, fault, now);
    (cfg, st, now)
}

fn write(seg: &Segment<'_>, cfg: &crate::config::ClusterConfig, st: &EngineState, now: Instant) {
    let snap = build_snapshot(cfg, &st.nodes, now);
    let c = Counters {
        down_epoch: 3,
        interrupt_epoch: 2,
        applied: 7,
    };
    let rows: Vec<_> = st
        .nodes
        .iter()
        .zip(&snap.nodes)
        .map(|(n, s)| (n, s, c))
        .collect();
    seg.init_header();
    seg.write(4242, 99, &rows);
}

#[test]
fn round_trip_keeps_every_field() {
    let (cfg, st, now) = state();
    let w = words(2);
    let seg = Segment {
        words: &w,
        key: 11,
        nodes: 2,
    };
    write(&seg, &cfg, &st, now);
    let d = seg.read(cfg.fall, cfg.rise).unwrap();
    assert_eq!((d.leader_pid, d.heartbeat_ns), (4242, 99));
    assert_eq!(
        d.counters[1],
        Counters {
            down_epoch: 3,
            interrupt_epoch: 2,
            applied: 7
        }
    );
    for (a, b) in st.nodes.iter().zip(&d.nodes) {
        assert_eq!(a.health.state, b.health.state);
        assert_eq!(a.health.ok_streak, b.health.ok_streak);
        assert_eq!(a.health.fail_streak, b.health.fail_streak);
        assert_eq!(a.sample, b.sample);
        assert_eq!(a.latency, b.latency);
        assert_eq!(a.lag_bytes, b.lag_bytes);
        assert_eq!(
            (a.probes, a.failed_probes, a.passive_faults),
            (b.probes, b.failed_probes, b.passive_faults)
        );
        assert_eq!(
            a.last_error.as_ref().map(|f| f.kind),
            b.last_error.as_ref().map(|f| f.kind)
        );
    }
    let msg = &d.nodes[1].last_error.as_ref().unwrap().message;
    assert!(
        msg.len() <= ERROR_BYTES && msg.starts_with("passive: é"),
        "{msg}"
    );
    let snap = build_snapshot(&cfg, &st.nodes, now);
    assert_eq!(d.snap[0].eligible, snap.nodes[0].eligible);
    assert!(!d.snap[1].live && d.snap[0].live);
    assert_eq!(d.snap[0].visible_lsn, 5000);
    assert_eq!(d.snap[1].weight, 2.0);
}

#[test]
fn empty_torn_and_corrupt_segments_are_rejected() {
    let (cfg, st, now) = state();
    let w = words(2);
    let seg = Segment {
        words: &w,
        key: 11,
        nodes: 2,
    };
    assert_eq!(seg.read(2, 2).unwrap_err(), Rejected::Empty);
    write(&seg, &cfg, &st, now);
    // A writer in the middle of a write (odd sequence) is never read.
    let seq = w[H_SEQ].load(Ordering::Relaxed);
    w[H_SEQ].store(seq + 1, Ordering::Relaxed);
    assert_eq!(seg.read(2, 2).unwrap_err(), Rejected::Torn);
    w[H_SEQ].store(seq, Ordering::Relaxed);
    assert!(seg.read(2, 2).is_ok());
    // One flipped bit in a node block: the checksum catches it.
    let at = HEADER_WORDS + NODE_WORDS + N_PROBES;
    w[at].fetch_xor(1 << 5, Ordering::Relaxed);
    assert!(matches!(seg.read(2, 2), Err(Rejected::Foreign(m)) if m.contains("checksum")));
    w[at].fetch_xor(1 << 5, Ordering::Relaxed);
    assert!(seg.read(2, 2).is_ok());
    // Another configuration, layout or node count: not ours.
    let other = Segment {
        words: &w,
        key: 12,
        nodes: 2,
    };
    assert!(matches!(other.read(2, 2), Err(Rejected::Foreign(_))));
    w[H_LAYOUT].store(LAYOUT + 1, Ordering::Relaxed);
    assert!(matches!(seg.read(2, 2), Err(Rejected::Foreign(m)) if m.contains("layout")));
    // Garbage everywhere.
    for (i, x) in w.iter().enumerate() {
        x.store(
            (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            Ordering::Relaxed,
        );
    }
    assert!(matches!(seg.read(2, 2), Err(Rejected::Foreign(_))));
}

#[test]
fn a_garbage_payload_under_a_valid_header_is_rejected() {
    let (cfg, st, now) = state();
    let w = words(2);
    let seg = Segment {
        words: &w,
        key: 11,
        nodes: 2,
    };
    write(&seg, &cfg, &st, now);
    for x in &w[H_BEAT..HEADER_WORDS + 2 * NODE_WORDS] {
        x.store(0xdead_beef, Ordering::Relaxed);
    }
    assert!(matches!(seg.read(2, 2), Err(Rejected::Foreign(_))));
}

#[test]
fn mailbox_counts_and_kinds() {
    let w = words(3);
    let seg = Segment {
        words: &w,
        key: 1,
        nodes: 3,
    };
    assert_eq!(seg.mailbox(2), (0, None));
    assert_eq!(seg.post_fault(2, FaultKind::Refused), 1);
    assert_eq!(seg.post_fault(2, FaultKind::Timeout), 2);
    assert_eq!(seg.mailbox(2), (2, Some(FaultKind::Timeout)));
    assert_eq!(seg.mailbox(1), (0, None));
    // The mailboxes are outside the seqlocked payload: posting never tears a read.
    let (cfg, st, now) = state();
    let seg2 = Segment {
        words: &w[..words_for(2)],
        key: 11,
        nodes: 2,
    };
    write(&seg2, &cfg, &st, now);
    seg2.post_fault(0, FaultKind::Connection);
    assert!(seg2.read(2, 2).is_ok());
}

#[test]
fn fault_codes_round_trip() {
    for name in [
        "connection_refused",
        "timeout",
        "probe_query_failed",
        "tls_failed",
    ] {
        let k = FaultKind::from_name(name).unwrap();
        assert_ne!(k.code(), 0);
        assert_eq!(FaultKind::from_code(k.code()), Some(k));
    }
    assert_eq!(FaultKind::from_code(0), None);
    assert_eq!(FaultKind::from_code(99), None);
}

#[test]
fn concurrent_reads_see_whole_writes_or_nothing() {
    let (cfg, st, now) = state();
    let w = words(2);
    let seg = Segment {
        words: &w,
        key: 11,
        nodes: 2,
    };
    write(&seg, &cfg, &st, now);
    let snap = build_snapshot(&cfg, &st.nodes, now);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for beat in 1..20_000u64 {
                let c = Counters {
                    down_epoch: beat,
                    interrupt_epoch: beat,
                    applied: beat,
                };
                let rows: Vec<_> = st
                    .nodes
                    .iter()
                    .zip(&snap.nodes)
                    .map(|(n, s)| (n, s, c))
                    .collect();
                seg.write(1, beat, &rows);
            }
        });
        let mut whole = 0;
        while !writer.is_finished() {
            match seg.read(2, 2) {
                Ok(d) => {
                    // Every word of one read comes from the same write.
                    assert!(d
                        .counters
                        .iter()
                        .all(|c| c.down_epoch == d.heartbeat_ns || d.heartbeat_ns == 99));
                    whole += 1;
                }
                Err(Rejected::Torn) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(whole > 0);
    });
}

#[test]
fn a_reprobe_request_is_no_fault() {
    let w = words(2);
    let seg = Segment {
        words: &w,
        key: 1,
        nodes: 2,
    };
    seg.post_reprobe();
    // Counted in node 0's mailbox, with a code no fault kind has.
    assert_eq!(seg.mailbox(0), (1, None));
    assert_eq!(seg.mailbox_raw(0), (1, REPROBE));
    assert_eq!(seg.mailbox(1), (0, None));
}

/// Every key of `status()` (the one table, `report::fields::FIELDS`) reads the same
/// from a follower's decoded copy as from the leader's own record: a status field
/// that the segment does not carry fails here instead of silently dropping.
#[test]
fn every_status_field_survives_the_segment() {
    use crate::report::fields::{Value, FIELDS};
    use crate::report::{probed, NodeReport, ProberView};

    let (cfg, mut st, now) = state();
    // Every optional value set, on both nodes.
    for (i, n) in st.nodes.iter_mut().enumerate() {
        let mut sample = sample_standby(4000 + i as u64);
        sample.current_lsn = Some(6000);
        sample.receive_lsn = Some(4500);
        sample.replay_paused = true;
        sample.receiver_status = Some("streaming".into());
        sample.timeline = Some(3);
        sample.started_us = Some(1_764_750_000_000_000 + i as u64);
        n.sample = Some(sample);
        n.lag_bytes = Some(123 + i as u64);
        n.lag_seconds = Some(1.25);
        n.last_probe = Some(now);
        n.latency = Some(Duration::from_micros(1500));
        n.role_mismatch = i == 1;
        // Within ERROR_BYTES: a longer text is cut by design (tested above).
        if let Some(f) = n.last_error.as_mut() {
            f.message = "passive: é timed out".into();
        }
    }
    let w = words(2);
    let seg = Segment {
        words: &w,
        key: 11,
        nodes: 2,
    };
    write(&seg, &cfg, &st, now);
    let d = seg.read(cfg.fall, cfg.rise).unwrap();
    let view = ProberView {
        nodes: Vec::new(),
        epoch: (std::time::SystemTime::now(), now),
        prober_pid: 7,
        shared: true,
        snapshot_age: Some(0.1),
    };
    let report = |i: usize, n| NodeReport {
        cfg: &cfg,
        idx: i,
        reads_by_reason: Vec::new(),
        primary_now: false,
        connected_as: None,
        patroni: (None, None),
        probed: Some(probed(&cfg, n, &view, now)),
    };
    for i in 0..2 {
        let (a, b) = (report(i, &st.nodes[i]), report(i, &d.nodes[i]));
        for f in FIELDS {
            let (x, y) = (f.value(&a), f.value(&b));
            match (&x, &y) {
                // Instants go through CLOCK_MONOTONIC nanoseconds: equal to rounding.
                (Some(Value::Float(x)), Some(Value::Float(y))) => {
                    assert!((x - y).abs() < 1e-6, "{}: {x} != {y}", f.name)
                }
                _ => assert_eq!(x, y, "{} of node {i}", f.name),
            }
        }
    }
}
