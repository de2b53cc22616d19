//! The host's clocks, read without calling Python: the fine and the coarse
//! monotonic clock (one timeline with `Instant` and `time.monotonic()` on Linux).

pub(crate) fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec on our stack.
    unsafe {
        libc::clock_gettime(clock, &mut ts);
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// `time.monotonic()` (CLOCK_MONOTONIC on Linux), read without calling Python.
pub fn monotonic() -> f64 {
    clock_ns(libc::CLOCK_MONOTONIC) as f64 * 1e-9
}

/// CLOCK_MONOTONIC_COARSE in nanoseconds: the same timeline as `Instant`, at the
/// kernel tick's resolution (a few ms), read for a fraction of the fine clock's cost.
#[inline]
pub fn coarse_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}
