//! The per-thread random numbers of weighted picks, reseeded after a fork so that
//! sibling workers do not make the same picks in lockstep.
//!
//! A pick needs one uniform number, not a cryptographic or even a long-period
//! generator: wyrand (one addition and one 64x64->128 multiplication per draw) keeps
//! its whole state in one `u64`, so it lives in a `Cell` (no borrow flag, no
//! destructor) or inside the read path's per-thread cache (`hot`).

use std::cell::Cell;
use std::sync::atomic::Ordering;

use rand::RngExt;

use crate::fork::FORK_GENERATION;

/// wyrand's increment and mixing constants.
const WY_ADD: u64 = 0xa076_1d64_78bd_642f;
const WY_XOR: u64 = 0xe703_7ed1_a0b4_28db;

/// One generator: the fork generation it was seeded in, and its state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rng {
    generation: u64,
    state: u64,
}

impl Rng {
    /// Not seeded yet: the first draw seeds it.
    pub(crate) const UNSEEDED: Rng = Rng {
        generation: u64::MAX,
        state: 0,
    };

    /// A uniform number in [0, 1), reseeding first if the process forked since the
    /// generator was seeded (`generation`: `FORK_GENERATION` now).
    #[inline]
    pub(crate) fn uniform(&mut self, generation: u64) -> f64 {
        if self.generation != generation {
            self.reseed(generation);
        }
        self.state = self.state.wrapping_add(WY_ADD);
        let t = u128::from(self.state) * u128::from(self.state ^ WY_XOR);
        let x = ((t >> 64) as u64) ^ (t as u64);
        // The top 53 bits, as f64's mantissa holds them: exactly uniform in [0, 1).
        (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    #[cold]
    fn reseed(&mut self, generation: u64) {
        // rand's thread generator is copied by fork too; mix in what differs.
        let salt = u64::from(std::process::id()) ^ generation.rotate_left(32);
        self.state = rand::rng().random::<u64>() ^ salt;
        self.generation = generation;
    }
}

thread_local! {
    /// The generator of picks made outside the read path's cache (retries, roles).
    static RNG: Cell<Rng> = const { Cell::new(Rng::UNSEEDED) };
}

/// A uniform number in [0, 1).
#[inline]
pub(crate) fn uniform() -> f64 {
    RNG.with(|cell| {
        let mut rng = cell.get();
        let r = rng.uniform(FORK_GENERATION.load(Ordering::Relaxed));
        cell.set(rng);
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_in_unit_interval() {
        let mut rng = Rng::UNSEEDED;
        let n = 100_000;
        let mut sum = 0.0;
        let mut below_tenth = 0;
        for _ in 0..n {
            let r = rng.uniform(0);
            assert!((0.0..1.0).contains(&r));
            sum += r;
            below_tenth += usize::from(r < 0.1);
        }
        let mean = sum / f64::from(n);
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert!(
            (9_000..11_000).contains(&below_tenth),
            "{below_tenth} below 0.1"
        );
    }

    #[test]
    fn a_fork_reseeds() {
        // The same state copied into a "child" (a new fork generation) and kept in
        // the "parent": after the child's first draw they no longer agree.
        let mut parent = Rng::UNSEEDED;
        parent.uniform(0);
        let mut child = parent;
        let same: Vec<f64> = (0..4)
            .map(|_| {
                let mut copy = parent;
                copy.uniform(0)
            })
            .collect();
        assert!(
            same.windows(2).all(|w| w[0] == w[1]),
            "a copy draws the same"
        );
        let p: Vec<f64> = (0..8).map(|_| parent.uniform(0)).collect();
        let c: Vec<f64> = (0..8).map(|_| child.uniform(1)).collect();
        assert_ne!(p, c, "the child reseeded in its generation");
        assert_eq!(child.generation, 1);
    }
}
