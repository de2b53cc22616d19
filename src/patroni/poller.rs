//! The poller: one thread per cluster and process (every worker decides its roles
//! with its own view, as it routes with its own snapshot), started, stopped and
//! abandoned after `fork()` with the prober (`lifecycle`). Every `PROBE_INTERVAL` it
//! GETs `/cluster` from the URL that answered last, else from the others in order,
//! each bounded by `PROBE_TIMEOUT`; it polls again at once (at most every 20 ms)
//! when woken: on the events that re-probe every node (a failed write connect, a
//! `25006`, a write waiting for a primary). Nothing on the request path waits for it.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::events::{lock, Events};
use crate::events::{Event, Severity};
use crate::shared::Shared;

use super::{fetch, View};

/// The least time between two polls, however often the poller is woken.
const MIN_GAP: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Flags {
    wake: bool,
    stop: bool,
}

#[derive(Default)]
struct Signal {
    flags: Mutex<Flags>,
    cond: Condvar,
}

/// What a change of Patroni's view must do: decide the roles again (the prober's
/// `refresh`).
pub(crate) type Refresh = Box<dyn Fn() + Send + 'static>;

/// This process's poller of one cluster (one per fork generation).
pub(crate) struct Poller {
    signal: Arc<Signal>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Poller {
    /// Starts polling, if `PATRONI_URLS` is set (`None` otherwise, or if the thread
    /// cannot start: said in the log, and roles come from PostgreSQL alone).
    pub(crate) fn start(
        shared: &Arc<Shared>,
        events: &Arc<Events>,
        refresh: Refresh,
    ) -> Option<Poller> {
        shared.patroni.as_ref()?;
        let signal = Arc::new(Signal::default());
        let (s, sh, ev) = (Arc::clone(&signal), Arc::clone(shared), Arc::clone(events));
        let spawned = std::thread::Builder::new()
            .name("replica-router-patroni".into())
            .spawn(move || run(&sh, &s, &ev, &refresh));
        match spawned {
            Ok(handle) => Some(Poller {
                signal,
                thread: Mutex::new(Some(handle)),
            }),
            Err(e) => {
                events.push(Event::cluster(
                    Severity::Error,
                    format!(
                        "could not start the Patroni poller thread ({e}): roles come from \
                         PostgreSQL alone"
                    ),
                ));
                None
            }
        }
    }

    /// Polls again now (or 20 ms after the last poll began).
    pub(crate) fn wake(&self) {
        lock(&self.signal.flags).wake = true;
        self.signal.cond.notify_all();
    }

    /// Stops the thread and waits for it (bounded by one GET, `PROBE_TIMEOUT`).
    pub(crate) fn stop(&self) {
        lock(&self.signal.flags).stop = true;
        self.signal.cond.notify_all();
        if let Some(h) = lock(&self.thread).take() {
            let _ = h.join();
        }
    }
}

/// Waits until a poll is due (the interval since `last`, or a wake 20 ms after it);
/// false once stopping.
fn wait_due(signal: &Signal, last: Option<Instant>, interval: Duration) -> bool {
    let mut flags = lock(&signal.flags);
    loop {
        if flags.stop {
            return false;
        }
        let now = Instant::now();
        let (due, soonest) = match last {
            None => (now, now),
            Some(t) => (t + interval, t + MIN_GAP),
        };
        if now >= due || (flags.wake && now >= soonest) {
            flags.wake = false;
            return true;
        }
        let until = if flags.wake { soonest } else { due };
        flags = match signal.cond.wait_timeout(flags, until - now) {
            Ok((g, _)) => g,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}

fn stopping(signal: &Signal) -> bool {
    lock(&signal.flags).stop
}

fn run(shared: &Shared, signal: &Signal, events: &Events, refresh: &Refresh) {
    let Some(watch) = shared.patroni.as_ref() else {
        return;
    };
    let cfg = &shared.config;
    let window = cfg.staleness_window();
    // The URL that answered last is asked first: a dead node's URL costs a timeout
    // once, not at every poll.
    let mut first = 0usize;
    let mut last_start = None;
    while wait_due(signal, last_start, cfg.probe_interval) {
        last_start = Some(Instant::now());
        let n = watch.urls.len();
        let mut errors = Vec::new();
        let mut answer = None;
        for k in 0..n {
            if k > 0 && stopping(signal) {
                return;
            }
            let i = (first + k) % n;
            let url = &watch.urls[i];
            match fetch::cluster(url, cfg.probe_timeout) {
                Ok(members) => {
                    first = i;
                    answer = Some((url.text.clone(), members));
                    break;
                }
                Err(e) => errors.push(format!("{}: {e}", url.text)),
            }
        }
        let now = Instant::now();
        let old = watch.view();
        let mut view = View {
            polls: old.polls + 1,
            ..(*old).clone()
        };
        match answer {
            Some((url, members)) => {
                view.members = members;
                view.url = Some(url);
                view.answered = Some(now);
                view.error = None;
            }
            None => {
                view.failed_polls += 1;
                view.error = Some(errors.join("; "));
            }
        }
        if let Some(event) = reach_event(&old, &view, window) {
            events.push(event);
        }
        if watch.store(view) {
            refresh();
        }
    }
}

/// The log record of Patroni answering for the first time, no more, or again.
fn reach_event(old: &View, new: &View, window: Duration) -> Option<Event> {
    let was_ok = old.polls > 0 && old.error.is_none();
    match &new.error {
        None if !was_ok => {
            let leader = new.leader().map_or("none".into(), |m| {
                format!("{:?} at {}:{}", m.name, m.host, fmt_port(m.port))
            });
            let again = if old.polls > 0 { " again" } else { "" };
            Some(Event::cluster(
                Severity::Info,
                format!(
                    "Patroni answers{again} at {}: a node takes writes only while PostgreSQL \
                     says it is the primary and Patroni calls it leader (leader: {leader})",
                    new.url.as_deref().unwrap_or("?")
                ),
            ))
        }
        Some(e) if was_ok || old.polls == 0 => Some(Event::cluster(
            Severity::Warning,
            format!(
                "Patroni answers at none of PATRONI_URLS ({e}): {:.1} s after its last \
                 answer, writes follow PostgreSQL's roles alone, until it answers again",
                window.as_secs_f64()
            ),
        )),
        _ => None,
    }
}

pub(crate) fn fmt_port(port: Option<u16>) -> String {
    port.map_or("?".into(), |p| p.to_string())
}
