use super::*;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::time::Duration;

fn up(weight: f64, now: Instant, lsn: u64) -> SnapNode {
    SnapNode {
        weight,
        eligible: true,
        live: true,
        lagging: false,
        tolerated: false,
        fresh_until: now + Duration::from_secs(3),
        visible_lsn: lsn,
    }
}

fn lagging(weight: f64, now: Instant, lsn: u64) -> SnapNode {
    SnapNode {
        eligible: false,
        lagging: true,
        tolerated: false,
        ..up(weight, now, lsn)
    }
}

fn shares(snap: &Snapshot, now: Instant, n: usize) -> Vec<f64> {
    let mut rng = SmallRng::seed_from_u64(42);
    let mut counts = vec![0usize; snap.nodes.len()];
    for _ in 0..n {
        let (i, reason) = snap.pick(now, rng.random::<f64>());
        assert_eq!(reason, Reason::Weighted);
        counts[i] += 1;
    }
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

#[test]
fn weighted_pick_follows_weights() {
    let now = Instant::now();
    let snap = Snapshot::new(vec![up(1.0, now, 0), up(3.0, now, 0), up(2.0, now, 0)], now);
    let s = shares(&snap, now, 120_000);
    assert!((s[0] - 1.0 / 6.0).abs() < 0.01, "{s:?}");
    assert!((s[1] - 3.0 / 6.0).abs() < 0.01, "{s:?}");
    assert!((s[2] - 2.0 / 6.0).abs() < 0.01, "{s:?}");
}

#[test]
fn zero_weight_is_never_picked() {
    let now = Instant::now();
    let snap = Snapshot::new(vec![up(0.0, now, 0), up(1.0, now, 0), up(0.0, now, 0)], now);
    let s = shares(&snap, now, 10_000);
    assert_eq!(s, vec![0.0, 1.0, 0.0]);
    // The edges of [0, 1) too.
    assert_eq!(snap.pick(now, 0.0).0, 1);
    assert_eq!(snap.pick(now, 0.999_999_999).0, 1);
}

#[test]
fn cold_start_reads_go_to_primary() {
    let now = Instant::now();
    let snap = Snapshot::cold(&[1.0, 1.0], now);
    assert_eq!(snap.pick(now, 0.5), (0, Reason::DownFallback));
}

#[test]
fn every_replica_lagging_goes_to_primary_as_lag_fallback() {
    let now = Instant::now();
    let snap = Snapshot::new(vec![up(0.0, now, 100), lagging(1.0, now, 50)], now);
    assert_eq!(snap.pick(now, 0.5), (0, Reason::LagFallback));
}

#[test]
fn primary_with_weight_serves_fallback_reads_counted_as_fallback() {
    let now = Instant::now();
    let snap = Snapshot::new(vec![up(1.0, now, 100), lagging(1.0, now, 50)], now);
    assert_eq!(snap.pick(now, 0.1), (0, Reason::LagFallback));
    let mut down = up(1.0, now, 0);
    down.eligible = false;
    down.live = false;
    let snap = Snapshot::new(vec![up(1.0, now, 100), down], now);
    assert_eq!(snap.pick(now, 0.9), (0, Reason::DownFallback));
    // A cluster with no replica at all reads from the primary by weight.
    let snap = Snapshot::new(vec![up(1.0, now, 100)], now);
    assert_eq!(snap.pick(now, 0.5), (0, Reason::Weighted));
}

#[test]
fn primary_down_goes_to_least_lagging_live_replica() {
    let now = Instant::now();
    let mut primary = up(1.0, now, 100);
    primary.eligible = false;
    primary.live = false;
    let snap = Snapshot::new(
        vec![
            primary,
            lagging(1.0, now, 50),
            lagging(1.0, now, 80),
            lagging(1.0, now, 60),
        ],
        now,
    );
    assert_eq!(snap.pick(now, 0.1), (2, Reason::DownFallback));
}

#[test]
fn nothing_live_goes_to_primary() {
    let now = Instant::now();
    let mut nodes = vec![SnapNode::unknown(1.0, now), SnapNode::unknown(1.0, now)];
    nodes[1].fresh_until = now;
    let snap = Snapshot::new(nodes, now);
    assert_eq!(snap.pick(now, 0.1), (0, Reason::DownFallback));
}

#[test]
fn stale_snapshot_stops_using_nodes_whose_last_good_probe_is_too_old() {
    let now = Instant::now();
    let mut replica = up(1.0, now, 0);
    replica.fresh_until = now + Duration::from_millis(10);
    let snap = Snapshot::new(vec![up(1.0, now, 0), replica], now);
    let later = now + Duration::from_millis(20);
    for k in 0..100 {
        let (i, _) = snap.pick(later, k as f64 / 100.0);
        assert_eq!(i, 0);
    }
    // Everything stale: the primary, as the last resort.
    let much_later = now + Duration::from_secs(10);
    assert_eq!(snap.pick(much_later, 0.7), (0, Reason::DownFallback));
}

#[test]
fn pick_now_agrees_with_pick_and_expires() {
    let now = Instant::now();
    let snap = Snapshot::new(vec![up(1.0, now, 0), up(3.0, now, 0)], now);
    for k in 0..100 {
        let r = k as f64 / 100.0;
        assert_eq!(snap.pick_now(r), snap.pick(Instant::now(), r));
    }
    // A snapshot whose nodes went stale 1 ms after it was built: after that,
    // pick_now must not use them (the coarse margin only errs on the safe side).
    let mut stale = up(1.0, now, 0);
    stale.fresh_until = now + Duration::from_millis(1);
    let snap = Snapshot::new(vec![up(0.0, now, 0), stale], now);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(snap.pick_now(0.5).0, 0);
}

#[test]
fn min_lsn_pick_only_uses_caught_up_replicas() {
    let now = Instant::now();
    let snap = Snapshot::new(
        vec![up(0.0, now, 1000), up(1.0, now, 500), up(1.0, now, 900)],
        now,
    );
    for k in 0..100 {
        let r = k as f64 / 100.0;
        assert_eq!(snap.pick_min_lsn(now, r, 800), (2, Reason::ReadYourWrites));
        assert_eq!(snap.pick_min_lsn(now, r, 950), (0, Reason::ReadYourWrites));
    }
    let both: std::collections::HashSet<usize> = (0..100)
        .map(|k| snap.pick_min_lsn(now, k as f64 / 100.0, 400).0)
        .collect();
    assert_eq!(both, [1usize, 2].into_iter().collect());
}

#[test]
fn reason_indices_match_names() {
    assert_eq!(REASON_NAMES[Reason::DownFallback as usize], "down_fallback");
    assert_eq!(REASON_NAMES[Reason::Retried as usize], "retried");
    assert_eq!(REASON_NAMES[Reason::TestPrimary as usize], "test_primary");
    assert_eq!(Reason::TestPrimary as usize, REASON_COUNT - 2);
    assert_eq!(REASON_NAMES[Reason::LagTolerated as usize], "lag_tolerated");
    assert_eq!(Reason::LagTolerated as usize, REASON_COUNT - 1);
}

#[test]
fn eligibility_now_agrees_with_the_fine_clock() {
    let now = Instant::now();
    let stale = SnapNode {
        fresh_until: now - Duration::from_millis(1),
        ..up(1.0, now, 0)
    };
    let nodes = vec![
        up(1.0, now, 0),
        up(0.0, now, 0),
        lagging(1.0, now, 0),
        stale,
        up(2.0, now, 0),
    ];
    let snap = Snapshot::new(nodes, now);
    for i in 0..6 {
        assert_eq!(
            snap.is_eligible_now(i),
            snap.is_eligible(i, Instant::now()),
            "node {i}"
        );
    }
    assert!(snap.is_eligible_now(4) && !snap.is_eligible_now(3) && !snap.is_eligible_now(2));
    // Past `valid_until` the fine clock decides again: the node has gone stale.
    let built = Instant::now();
    let brief = SnapNode {
        fresh_until: built + Duration::from_millis(30),
        ..up(1.0, built, 0)
    };
    let snap = Snapshot::new(vec![up(1.0, built, 0), brief], built);
    std::thread::sleep(Duration::from_millis(60));
    assert!(!snap.is_eligible_now(1) && !snap.is_eligible(1, Instant::now()));
    // A cold snapshot: nothing eligible.
    let cold = Snapshot::cold(&[1.0, 1.0], now);
    assert!(!cold.is_eligible_now(0) && !cold.is_eligible_now(1));
}
