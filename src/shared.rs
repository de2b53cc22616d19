//! What lives as long as the Python object: the cluster's configuration, the
//! snapshot the pick path reads, the routing counters and the published roles. The
//! prober (`monitor`, or the host's shared one through `shm`) writes it; the
//! bindings read it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::{ClusterConfig, ProbeGroups};
use crate::events::lock;
use crate::own_error::OwnErrors;
use crate::probe::Fault;
use crate::roles::Roles;
use crate::select::{Snapshot, REASON_COUNT};

/// What lives as long as the Python object: config, the published snapshot, counters.
pub struct Shared {
    pub config: ClusterConfig,
    /// The nodes by probe target (one server under several aliases), computed once.
    pub probe_groups: ProbeGroups,
    pub snapshot: ArcSwap<Snapshot>,
    /// Reads routed, per node and per reason.
    pub reads: Vec<[AtomicU64; REASON_COUNT]>,
    pub writes: AtomicU64,
    /// This process's own configuration errors (never shared; see `own_error`).
    pub(crate) own: OwnErrors,
    /// Bumped whenever the published roles change (which node an alias connects to,
    /// or who takes writes): a connection opened before is checked before reuse.
    pub role_epoch: AtomicU64,
    /// Changes of primary seen by this process.
    pub role_changes: AtomicU64,
    /// What the last publish showed (`RolesSeen`), and a condition for those waiting
    /// for a primary.
    roles_seen: Mutex<RolesSeen>,
    roles_changed: Condvar,
    /// `PATRONI_URLS` and Patroni's latest view (`None` without).
    pub patroni: Option<crate::patroni::Watch>,
}

/// What `note_roles` compares a publish with.
struct RolesSeen {
    /// The roles last published.
    roles: Arc<Roles>,
    /// The last primary known (kept through a gap).
    writer: Option<usize>,
    /// The server the last primary's probe reached.
    writer_server: Option<String>,
    /// The hosts of multi-host aliases that took weighted reads (`read_hosts`).
    read_hosts: u64,
}

impl Shared {
    /// Whether node `idx` takes reads (or is a fallback) in the published snapshot.
    pub(crate) fn takes_reads(&self, idx: usize) -> bool {
        let snapshot = self.snapshot.load();
        snapshot
            .roles
            .slot_of(idx)
            .and_then(|slot| snapshot.nodes.get(slot))
            .is_some_and(|n| n.eligible || n.live)
    }

    /// After a publish: if the roles changed, bump the epoch, count a change of
    /// primary, and wake those waiting for one.
    ///
    /// A host of a multi-host alias that takes reads again (a demoted primary that
    /// streams now, a standby back up) bumps the epoch too: persistent connections of
    /// that alias are placed anew at their next request (each on its thread's
    /// weighted pick), or the host would get reads only from connections opened after
    /// it came back.
    pub(crate) fn note_roles(&self) {
        let snapshot = self.snapshot.load();
        let roles = Arc::clone(&snapshot.roles);
        let read_hosts = self.read_hosts(&snapshot);
        let mut seen = lock(&self.roles_seen);
        let host_back = read_hosts & !seen.read_hosts != 0;
        seen.read_hosts = read_hosts;
        if seen.roles.writer == roles.writer
            && seen.roles.targets == roles.targets
            && seen.roles.writer_server == roles.writer_server
            && !host_back
        {
            return;
        }
        if let Some(new) = roles.writer_node() {
            // Through a proxy the node stays; the server behind it is what changes.
            let moved = roles.proxies.contains(&new)
                && seen.writer_server.is_some()
                && roles.writer_server.is_some()
                && seen.writer_server != roles.writer_server;
            if seen.writer.is_some_and(|last| last != new) || moved {
                self.role_changes.fetch_add(1, Ordering::Relaxed);
            }
            seen.writer = Some(new);
            if roles.writer_server.is_some() {
                seen.writer_server.clone_from(&roles.writer_server);
            }
        }
        seen.roles = roles;
        self.role_epoch.fetch_add(1, Ordering::Release);
        drop(seen);
        self.roles_changed.notify_all();
    }

    /// The hosts of multi-host aliases (a bit each, the first 64 nodes) that take
    /// weighted reads in `snapshot`.
    fn read_hosts(&self, snapshot: &Snapshot) -> u64 {
        let nodes = &self.config.nodes;
        (0..nodes.len().min(64))
            .filter(|&i| nodes[i].multi_host && snapshot.nodes.get(i).is_some_and(|n| n.eligible))
            .fold(0u64, |m, i| m | (1u64 << i))
    }

    /// The last node known as primary (kept through a gap).
    pub(crate) fn last_writer(&self) -> Option<usize> {
        lock(&self.roles_seen).writer
    }

    /// Waits (at most `timeout`) for the published roles to change from `epoch`.
    pub(crate) fn wait_roles(&self, epoch: u64, timeout: Duration) {
        let guard = lock(&self.roles_seen);
        if self.role_epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        let _ = self.roles_changed.wait_timeout(guard, timeout);
    }

    /// Takes node `idx` out of reads in the published snapshot now (a passive fault),
    /// until the prober publishes what it made of it.
    pub(crate) fn exclude(&self, idx: usize, now: Instant) {
        let bit = if idx < 64 { 1u64 << idx } else { 0 };
        self.snapshot.rcu(|s| Arc::new(s.without(bit, now)));
    }

    /// Node `idx` refused this process's login: out of this process's reads now and
    /// `misconfigured` in its `status()`. True when newly so (log it once).
    pub(crate) fn own_error(&self, idx: usize, fault: Fault, now: Instant) -> bool {
        let new = self.own.mark(idx, fault, now);
        self.exclude(idx, now);
        new
    }

    pub fn new(config: ClusterConfig) -> Shared {
        let weights: Vec<f64> = config.nodes.iter().map(|n| n.weight).collect();
        let reads = config
            .nodes
            .iter()
            .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            .collect();
        let n = config.nodes.len();
        Shared {
            probe_groups: ProbeGroups::of(&config.nodes),
            snapshot: ArcSwap::from_pointee(Snapshot::cold(&weights, Instant::now())),
            own: OwnErrors::new(config.nodes.len()),
            config,
            reads,
            writes: AtomicU64::new(0),
            role_epoch: AtomicU64::new(0),
            role_changes: AtomicU64::new(0),
            roles_seen: Mutex::new(RolesSeen {
                roles: Arc::new(Roles::initial(n)),
                writer: None,
                writer_server: None,
                read_hosts: 0,
            }),
            roles_changed: Condvar::new(),
            patroni: None,
        }
    }

    /// With `PATRONI_URLS` (empty: not used).
    pub fn with_patroni(mut self, urls: Vec<crate::patroni::Url>) -> Shared {
        self.patroni = (!urls.is_empty()).then(|| crate::patroni::Watch::new(urls));
        self
    }

    /// Patroni's latest view, when `PATRONI_URLS` is set.
    pub(crate) fn patroni_view(&self) -> Option<Arc<crate::patroni::View>> {
        self.patroni.as_ref().map(crate::patroni::Watch::view)
    }

    pub fn weights(&self) -> Vec<f64> {
        self.config.nodes.iter().map(|n| n.weight).collect()
    }
}
