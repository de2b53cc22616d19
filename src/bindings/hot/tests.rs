use std::time::Instant;

use super::*;
use crate::config::tests::cluster;

fn shared() -> Arc<Shared> {
    Arc::new(Shared::new(cluster(&[1.0, 1.0])))
}

/// Publishes a new snapshot, as the prober does (`store`) or a passive fault (`rcu`).
fn publish(shared: &Shared, via_rcu: bool) {
    let now = Instant::now();
    if via_rcu {
        shared.snapshot.rcu(|s| Arc::new(s.without(0b10, now)));
    } else {
        shared
            .snapshot
            .store(Arc::new(Snapshot::cold(&[1.0, 1.0], now)));
    }
}

#[test]
fn the_cached_snapshot_is_the_published_one_until_the_next_publish() {
    let s = shared();
    let mut cache = ReadCache::EMPTY;
    let first = Arc::clone(cache.snapshot(1, &s));
    assert!(Arc::ptr_eq(&first, &s.snapshot.load_full()));
    // Unchanged: the very same Arc, not a new load.
    assert!(Arc::ptr_eq(&first, cache.snapshot(1, &s)));
    for via_rcu in [false, true, false] {
        publish(&s, via_rcu);
        let now = s.snapshot.load_full();
        assert!(!Arc::ptr_eq(&first, &now));
        assert!(Arc::ptr_eq(cache.snapshot(1, &s), &now), "rcu: {via_rcu}");
    }
}

#[test]
fn another_cluster_replaces_the_cached_one() {
    let (a, b) = (shared(), shared());
    let mut cache = ReadCache::EMPTY;
    assert!(Arc::ptr_eq(cache.snapshot(1, &a), &a.snapshot.load_full()));
    assert!(Arc::ptr_eq(cache.snapshot(2, &b), &b.snapshot.load_full()));
    // Back to the first: its current snapshot, also after it published meanwhile.
    publish(&a, false);
    assert!(Arc::ptr_eq(cache.snapshot(1, &a), &a.snapshot.load_full()));
}

#[test]
fn a_cached_snapshot_is_never_mistaken_for_a_new_one_at_its_address() {
    // The cache holds the old Arc, so its memory cannot be reused by the next
    // publish: the address comparison cannot see a stale snapshot as current.
    let s = shared();
    let mut cache = ReadCache::EMPTY;
    let held = Arc::as_ptr(cache.snapshot(1, &s));
    for _ in 0..100 {
        publish(&s, false);
        assert_ne!(Arc::as_ptr(&s.snapshot.load_full()), held);
    }
}

#[test]
fn a_read_inside_a_read_works_without_the_cache() {
    let outer = with(|hot| {
        assert!(hot.is_some());
        with(|inner| inner.is_none())
    });
    assert!(outer, "the nested call got None");
    assert!(with(|hot| hot.is_some()), "free again afterwards");
}
