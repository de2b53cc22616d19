//! The queue of events (state changes, warnings) that a Python thread collects with
//! `wait_events`. One per process generation: the prober (or the follower of a shared
//! prober) pushes, Python takes. Nothing here calls Python.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::step::Event;

const MAX_EVENTS: usize = 1000;

#[derive(Default)]
pub(crate) struct Events {
    queue: Mutex<VecDeque<Event>>,
    ready: Condvar,
    closed: AtomicBool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock must not take the router down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Events {
    pub(crate) fn push(&self, event: Event) {
        let mut q = lock(&self.queue);
        if q.len() >= MAX_EVENTS {
            q.pop_front();
        }
        q.push_back(event);
        drop(q);
        self.ready.notify_all();
    }

    /// Wakes every waiter for good (the cluster is closing).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.ready.notify_all();
    }

    /// Waits up to `timeout` for events and takes them all.
    pub(crate) fn wait(&self, timeout: Duration) -> Vec<Event> {
        let mut q = lock(&self.queue);
        if q.is_empty() && !self.closed.load(Ordering::SeqCst) {
            q = match self.ready.wait_timeout(q, timeout) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        q.drain(..).collect()
    }
}
