//! One prober per host: the worker processes of one OS user with the same cluster
//! configuration elect one leader (a POSIX record lock on `<key>.lock`), which probes
//! as a lone process would and publishes every node's health into `<key>.shm`. The
//! others follow: a small thread reads the segment every few ms, validates it and
//! publishes it as the local `Snapshot` (so the read path is unchanged), turns the
//! leader's down counters into local events, and tries to take the lock every
//! PROBE_INTERVAL so that a dead leader is replaced within one interval.
//!
//! Anything wrong (no private directory, a foreign or corrupt segment) makes the
//! process probe on its own, with one logged warning.

pub(crate) mod clock;
mod files;
mod follow;
mod housekeeping;
mod key;
mod probing;
mod publish;
mod segment;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::events::{lock, Event, Events, Severity};
use crate::probe::{Fault, FaultKind};
use crate::report::ProberView;
use crate::shared::Shared;

pub(crate) use probing::Probing;
pub(crate) use publish::Publisher;

use files::Files;
use segment::{Counters, Decoded, Segment, MAX_NODES};

/// Why sharing is off for this cluster in this process.
pub(crate) enum Off {
    /// Worth a warning: sharing was asked for and cannot work.
    Warn(String),
    /// Expected: another `Cluster` of this process has the same configuration (it
    /// holds the process's one lock fd), or too many clusters are shared.
    Quiet,
}

/// Keys claimed by this process (per fork generation): one lock fd per file and
/// process, since closing any fd of a file drops the process's record locks on it.
static CLAIMS: [AtomicU64; 32] = [const { AtomicU64::new(0) }; 32];

fn claim_value(key: u64) -> u64 {
    let generation = crate::fork::FORK_GENERATION.load(Ordering::SeqCst);
    (key ^ generation.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1
}

/// Whether a cluster of this process (this fork generation) uses the files of `key`.
fn claimed_here(key: u64) -> bool {
    let v = claim_value(key);
    CLAIMS.iter().any(|c| c.load(Ordering::SeqCst) == v)
}

fn claim(key: u64) -> Result<usize, Off> {
    let v = claim_value(key);
    if CLAIMS.iter().any(|c| c.load(Ordering::SeqCst) == v) {
        return Err(Off::Quiet);
    }
    CLAIMS
        .iter()
        .position(|c| {
            c.compare_exchange(0, v, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        })
        .ok_or(Off::Quiet)
}

/// This process's side of the shared health of one cluster (one per fork generation).
pub(crate) struct Sharing<E: Probing> {
    shared: Arc<Shared>,
    events: Arc<Events>,
    files: Arc<Files>,
    key: u64,
    slot: usize,
    /// The prober, once this process leads (or probes alone after a bad segment).
    engine: ArcSwapOption<E>,
    publisher: ArcSwapOption<Publisher>,
    /// The segment was rejected: this process probes on its own, for good.
    solo: AtomicBool,
    /// The leader's state as last read (followers).
    view: Mutex<Option<Decoded>>,
    /// Per node: the mailbox count of our last passive fault (followers).
    posted: Vec<AtomicU64>,
    /// Per node: the mailbox counts the leader has applied (the leader's thread).
    mail_seen: Mutex<Vec<u64>>,
    /// The generation of Patroni's view the followed roles were decided with. [s3-patroni]
    patroni_seen: AtomicU64,
    stop: Mutex<bool>,
    stopped: AtomicBool,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<E: Probing> Sharing<E> {
    /// Opens the shared files and leads or follows; `Err` when sharing cannot work.
    pub(crate) fn start(shared: Arc<Shared>, events: Arc<Events>) -> Result<Arc<Sharing<E>>, Off> {
        let n = shared.config.nodes.len();
        if n > MAX_NODES {
            return Err(Off::Warn(format!("more than {MAX_NODES} nodes")));
        }
        let (dir, dir_path) = files::open_dir().map_err(Off::Warn)?;
        let secret = housekeeping::secret(&dir, &dir_path).map_err(Off::Warn)?;
        let (name, key) = key::key(&shared.config, &secret).map_err(Off::Warn)?;
        let slot = claim(key)?;
        let files = match Files::open(&dir, &dir_path, &name, segment::words_for(n)) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                CLAIMS[slot].store(0, Ordering::SeqCst);
                return Err(Off::Warn(e));
            }
        };
        // Our files are in use now; those of configurations nobody uses go.
        housekeeping::sweep(&dir, &dir_path, &claimed_here);
        let sharing = Arc::new(Sharing {
            shared,
            events,
            files,
            key,
            slot,
            engine: ArcSwapOption::empty(),
            publisher: ArcSwapOption::empty(),
            solo: AtomicBool::new(false),
            view: Mutex::new(None),
            posted: (0..n).map(|_| AtomicU64::new(0)).collect(),
            mail_seen: Mutex::new(vec![0; n]),
            patroni_seen: AtomicU64::new(0),
            stop: Mutex::new(false),
            stopped: AtomicBool::new(false),
            wake: Condvar::new(),
            thread: Mutex::new(None),
        });
        if sharing.files.try_lead() {
            sharing.lead();
        } else {
            sharing.follow_or_go_solo();
        }
        let runner = Arc::clone(&sharing);
        let spawned = std::thread::Builder::new()
            .name("replica-router-share".into())
            .spawn(move || runner.run());
        match spawned {
            Ok(h) => *lock(&sharing.thread) = Some(h),
            Err(e) => {
                sharing.warn(format!("could not start the follower thread ({e})"));
                sharing.go_solo();
            }
        }
        Ok(sharing)
    }

    fn segment(&self) -> Segment<'_> {
        Segment {
            words: self.files.words(),
            key: self.key,
            nodes: self.shared.config.nodes.len(),
        }
    }

    fn warn(&self, why: String) {
        self.events.push(Event::cluster(
            Severity::Warning,
            format!("shared health: {why}; this process probes on its own"),
        ));
    }

    /// Becomes the leader: carries on from the last state read, and probes.
    fn lead(&self) {
        let n = self.shared.config.nodes.len();
        let last = lock(&self.view).take();
        let counters = last
            .as_ref()
            .map_or_else(|| vec![Counters::default(); n], |d| d.counters.clone());
        let seg = self.segment();
        let mut seen = lock(&self.mail_seen);
        for (i, s) in seen.iter_mut().enumerate() {
            *s = seg.mailbox(i).0;
        }
        drop(seen);
        let publisher = Arc::new(Publisher::new(
            Arc::clone(&self.files),
            self.key,
            n,
            counters,
        ));
        for (i, c) in lock(&self.mail_seen).iter().enumerate() {
            publisher.set_applied(i, *c);
        }
        self.publisher.store(Some(Arc::clone(&publisher)));
        let engine = E::start(
            Arc::clone(&self.shared),
            Arc::clone(&self.events),
            Some(publisher),
            last.map(|d| d.nodes),
        );
        self.engine.store(Some(engine));
    }

    /// Probes without the segment from now on.
    fn go_solo(&self) {
        if self.solo.swap(true, Ordering::SeqCst) || self.engine.load().is_some() {
            return;
        }
        let engine = E::start(
            Arc::clone(&self.shared),
            Arc::clone(&self.events),
            None,
            None,
        );
        self.engine.store(Some(engine));
    }

    fn follow_or_go_solo(&self) {
        if let Err(why) = self.follow_once() {
            self.warn(format!("ignoring {} ({why})", self.files.path.display()));
            self.go_solo();
        }
    }

    fn stopping(&self, wait: Duration) -> bool {
        let guard = lock(&self.stop);
        if *guard {
            return true;
        }
        match self.wake.wait_timeout(guard, wait) {
            Ok((g, _)) => *g,
            Err(e) => *e.into_inner().0,
        }
    }

    fn run(self: Arc<Self>) {
        let interval = self.shared.config.probe_interval;
        let poll = (interval / 10).clamp(Duration::from_millis(1), Duration::from_millis(20));
        let mut next_try = Instant::now() + interval;
        while !self.stopping(poll) {
            if self.solo.load(Ordering::SeqCst) {
                return;
            }
            if self.publisher.load().is_some() {
                self.poll_mailbox();
                continue;
            }
            let now = Instant::now();
            if now >= next_try {
                next_try = now + interval;
                if self.files.try_lead() {
                    self.lead();
                    continue;
                }
            }
            self.follow_or_go_solo();
        }
    }

    /// The leader applies passive faults that followers posted.
    fn poll_mailbox(&self) {
        let (Some(engine), Some(publisher)) = (self.engine.load_full(), self.publisher.load_full())
        else {
            return;
        };
        let seg = self.segment();
        let mut seen = lock(&self.mail_seen);
        for (i, s) in seen.iter_mut().enumerate() {
            let (count, code) = seg.mailbox_raw(i);
            if count == *s {
                continue;
            }
            *s = count;
            publisher.set_applied(i, count);
            if code == segment::REPROBE {
                engine.reprobe();
            } else if let Some(kind) = FaultKind::from_code(code) {
                let fault = Fault {
                    kind,
                    message: format!("passive: {} (reported by another worker)", kind.as_str()),
                };
                engine.report_passive(i, fault, Instant::now());
            }
        }
    }

    /// A passive fault seen by this process; see `Engine::report_passive`.
    /// Re-probes every node: here if this process probes, else by asking the host's
    /// prober through the segment.
    pub(crate) fn reprobe(&self) {
        if let Some(engine) = self.engine.load_full() {
            engine.reprobe();
        } else {
            self.segment().post_reprobe();
        }
    }

    /// Patroni's view changed: the prober decides the roles again now; a follower's
    /// thread does at its next read of the segment (within 20 ms). [s3-patroni]
    pub(crate) fn refresh(&self) {
        if let Some(engine) = self.engine.load_full() {
            engine.refresh();
        }
    }

    pub(crate) fn report_passive(&self, idx: usize, fault: Fault, now: Instant) -> bool {
        if let Some(engine) = self.engine.load_full() {
            return engine.report_passive(idx, fault, now);
        }
        let Some(posted) = self.posted.get(idx) else {
            return false;
        };
        // The leader applies the fault to every node probed with this one (the same
        // server under another alias): they leave this process's reads now too.
        let group = self.shared.probe_groups.with(idx);
        let was_in_reads = group.iter().any(|&j| self.shared.takes_reads(j));
        posted.store(self.segment().post_fault(idx, fault.kind), Ordering::SeqCst);
        for &j in group {
            self.shared.exclude(j, now);
        }
        was_in_reads
    }

    /// What `status()` reports.
    pub(crate) fn view(&self) -> Option<ProberView> {
        if let Some(engine) = self.engine.load_full() {
            let mut view = engine.view(!self.solo.load(Ordering::SeqCst));
            if let Some(p) = self.publisher.load_full() {
                let beat = p.last_beat();
                view.snapshot_age =
                    (beat != 0).then(|| clock::now_ns().saturating_sub(beat) as f64 * 1e-9);
            }
            return Some(view);
        }
        let guard = lock(&self.view);
        let d = guard.as_ref()?;
        Some(ProberView {
            nodes: d.nodes.clone(),
            epoch: (std::time::SystemTime::now(), Instant::now()),
            prober_pid: d.leader_pid,
            shared: true,
            snapshot_age: Some(clock::now_ns().saturating_sub(d.heartbeat_ns) as f64 * 1e-9),
        })
    }

    /// Stops following or probing, and gives the lead up.
    pub(crate) fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        *lock(&self.stop) = true;
        self.wake.notify_all();
        if let Some(h) = lock(&self.thread).take() {
            let _ = h.join();
        }
        if let Some(engine) = self.engine.load_full() {
            engine.stop();
        }
        self.files.close_lock();
        CLAIMS[self.slot].store(0, Ordering::SeqCst);
    }

    /// In a child after `fork()`: frees what was inherited without touching any lock
    /// or thread of the parent's (they do not exist here), and never drops it.
    pub(crate) fn abandon_in_child(this: Arc<Sharing<E>>) {
        CLAIMS[this.slot].store(0, Ordering::SeqCst);
        // SAFETY: `this` is forgotten right below and nothing in this process uses it
        // again (its threads were not forked; the engine is forgotten with it).
        unsafe { this.files.close_inherited() };
        std::mem::forget(this);
    }
}
