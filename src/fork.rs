//! Which fork generation this process is: bumped in the child after every `fork()`,
//! so that what a parent started (threads, locks, shared-file claims) is known as
//! inherited and started again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// Bumped in the child after every `fork()`.
pub(crate) static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    // Only an atomic add: nothing else is async-signal-safe here.
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

pub(crate) fn install_fork_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registering a handler that only touches an atomic.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}
