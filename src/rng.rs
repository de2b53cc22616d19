//! The per-thread random numbers of weighted picks, reseeded after a fork so that
//! sibling workers do not make the same picks in lockstep.

use std::cell::RefCell;
use std::sync::atomic::Ordering;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::fork::FORK_GENERATION;

const NOT_SEEDED: u64 = u64::MAX;

thread_local! {
    /// (fork generation it was seeded in, generator).
    static RNG: RefCell<(u64, Option<SmallRng>)> = const { RefCell::new((NOT_SEEDED, None)) };
}

/// A uniform number in [0, 1).
#[inline]
pub(crate) fn uniform() -> f64 {
    RNG.with(|cell| {
        let mut cell = cell.borrow_mut();
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        if cell.0 != generation || cell.1.is_none() {
            cell.1 = Some(SmallRng::from_rng(&mut rand::rng()));
            // rand's thread generator is copied by fork too; mix in what differs.
            if let Some(rng) = cell.1.as_mut() {
                let salt = u64::from(std::process::id()) ^ generation.rotate_left(32);
                let mixed = rng.random::<u64>() ^ salt;
                *rng = SmallRng::seed_from_u64(mixed);
            }
            cell.0 = generation;
        }
        cell.1.as_mut().map_or(0.5, |rng| rng.random::<f64>())
    })
}
