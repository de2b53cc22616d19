use super::*;
use std::time::Duration;

fn node(weight: f64, up: bool, now: Instant, lsn: u64) -> SnapNode {
    SnapNode {
        weight,
        eligible: up,
        live: up,
        lagging: false,
        tolerated: false,
        fresh_until: now + Duration::from_secs(3),
        visible_lsn: lsn,
    }
}

#[test]
fn retry_never_picks_a_tried_node_and_ends() {
    let now = Instant::now();
    let snap = Snapshot::new(
        vec![
            node(1.0, true, now, 10),
            node(1.0, true, now, 10),
            node(1.0, true, now, 5),
        ],
        now,
    );
    for k in 0..20 {
        let r = k as f64 / 20.0;
        let i = snap.pick_retry(now, r, 0b010, None).unwrap();
        assert_ne!(i, 1);
    }
    assert_eq!(snap.pick_retry(now, 0.5, 0b011, None), Some(2));
    assert_eq!(snap.pick_retry(now, 0.5, 0b111, None), None);
    // Read-your-writes: only nodes that replayed the token, else the primary.
    assert_eq!(snap.pick_retry(now, 0.99, 0b010, Some(8)), Some(0));
    assert_eq!(snap.pick_retry(now, 0.5, 0b011, Some(8)), None);
}

#[test]
fn retry_falls_back_to_untried_primary_even_when_down() {
    let now = Instant::now();
    let snap = Snapshot::new(vec![node(1.0, false, now, 0), node(1.0, true, now, 0)], now);
    assert_eq!(snap.pick_retry(now, 0.5, 0b10, None), Some(0));
    assert_eq!(snap.pick_retry(now, 0.5, 0b01, None), Some(1));
}

#[test]
fn without_takes_nodes_out_of_reads() {
    let now = Instant::now();
    let snap = Snapshot::new(vec![node(0.0, true, now, 0), node(1.0, true, now, 0)], now);
    assert_eq!(snap.pick(now, 0.5), (1, Reason::Weighted));
    let out = snap.without(0b10, now);
    assert_eq!(out.pick(now, 0.5), (0, Reason::DownFallback));
}
