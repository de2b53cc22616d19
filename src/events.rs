//! The queue of events (state changes, warnings) that a Python thread collects with
//! `wait_events`. One per process generation: the prober (or the follower of a shared
//! prober) pushes, Python takes. Nothing here calls Python.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::health::State;

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

/// How loud an event is; the binding maps it to a Python logging level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Not logged: what another process's prober already logged, passed on so that
    /// this process acts on it (closes connections, interrupts queries).
    Silent,
    Info,
    Warning,
    Error,
}

/// A state change for Python's `logging`, handed over by `wait_events`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub severity: Severity,
    pub message: String,
    /// The node it is about, if one.
    pub node: Option<usize>,
    /// The node's new state, for a state change.
    pub state: Option<State>,
    /// The node was declared down for timeouts (frozen, blackholed): connections in
    /// flight to it will not answer and should be interrupted.
    pub interrupt: bool,
}

impl Event {
    pub(crate) fn about(severity: Severity, message: String, node: usize) -> Event {
        Event {
            severity,
            message,
            node: Some(node),
            state: None,
            interrupt: false,
        }
    }

    pub(crate) fn cluster(severity: Severity, message: String) -> Event {
        Event {
            severity,
            message,
            node: None,
            state: None,
            interrupt: false,
        }
    }
}

pub(crate) fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "unknown".into(), |v| v.to_string())
}
