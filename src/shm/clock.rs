//! `Instant` to CLOCK_MONOTONIC nanoseconds and back. On Linux `Instant` is
//! CLOCK_MONOTONIC, which is one timeline for every process of the host, so an
//! instant written by one process means the same moment in another.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn base() -> (Instant, u64) {
    static BASE: OnceLock<(Instant, u64)> = OnceLock::new();
    *BASE.get_or_init(|| (Instant::now(), now_ns()))
}

pub(crate) fn now_ns() -> u64 {
    crate::clock::clock_ns(libc::CLOCK_MONOTONIC)
}

/// Nanoseconds of CLOCK_MONOTONIC at `t` (at least 1: 0 means "none" in the segment).
pub(crate) fn to_ns(t: Instant) -> u64 {
    let (b, b_ns) = base();
    let ns = if t >= b {
        b_ns.saturating_add((t - b).as_nanos() as u64)
    } else {
        b_ns.saturating_sub((b - t).as_nanos() as u64)
    };
    ns.max(1)
}

/// The `Instant` of a CLOCK_MONOTONIC reading (clamped to what `Instant` can hold).
pub(crate) fn from_ns(ns: u64) -> Instant {
    let (b, b_ns) = base();
    if ns >= b_ns {
        let d = Duration::from_nanos(ns - b_ns);
        b.checked_add(d).unwrap_or(b)
    } else {
        let d = Duration::from_nanos(b_ns - ns);
        b.checked_sub(d).unwrap_or(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_within_a_microsecond() {
        let now = Instant::now();
        for t in [
            now,
            now + Duration::from_secs(3),
            now - Duration::from_millis(5),
        ] {
            let back = from_ns(to_ns(t));
            let diff = if back > t { back - t } else { t - back };
            assert!(diff < Duration::from_micros(1), "{diff:?}");
        }
        let d = now_ns().abs_diff(to_ns(Instant::now()));
        assert!(d < 50_000_000, "{d}");
    }
}
