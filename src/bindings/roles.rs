//! `Cluster`'s side of roles that change: where a new connection goes (waiting for a
//! primary through a switchover), and the observed roles for Python.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::rng::uniform;
use crate::roles::Writer;

use super::{Cluster, NoPrimary};

/// How often a connection waiting for a primary re-probes every node.
const GAP_PULSE: Duration = Duration::from_millis(50);

thread_local! {
    /// The node (slot) this thread's last read was routed to: a multi-host replica
    /// alias connects there, so the pick's health, lag and weights decide the host.
    static LAST_PICK: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Notes where this thread's read or write was just routed.
#[inline]
pub(super) fn note_pick(slot: usize) {
    LAST_PICK.set(Some(slot));
}

impl Cluster {
    /// The node alias index `slot` connects to now.
    pub(super) fn target_of(&self, slot: usize) -> usize {
        self.shared
            .snapshot
            .load()
            .roles
            .targets
            .get(slot)
            .copied()
            .unwrap_or(slot)
    }

    /// A node for messages: its address and the alias it was configured for.
    pub(super) fn node_name(&self, i: usize) -> String {
        let n = &self.shared.config.nodes[i];
        format!("{}:{} ({:?})", n.host, n.port, n.alias)
    }

    /// The first node (slot) of a Django alias.
    pub(super) fn index_of(&self, alias: &str) -> Option<usize> {
        self.shared
            .config
            .nodes
            .iter()
            .position(|n| n.database == alias)
    }

    /// Every node (a bit each) of the aliases in `tried`: all the hosts of a
    /// multi-host one.
    pub(super) fn alias_mask(&self, tried: &[String]) -> u64 {
        self.shared
            .config
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| *i < 64 && tried.contains(&n.database))
            .fold(0u64, |m, (i, _)| m | (1u64 << i))
    }

    /// See `connect_target` (the Python method).
    pub(super) fn connect_target_impl(
        &self,
        py: Python<'_>,
        alias: &str,
        wait: f64,
        avoid: Option<usize>,
        fallback: bool,
    ) -> PyResult<(usize, String, u16)> {
        self.prober.ensure_started();
        let Some(slot) = self.index_of(alias) else {
            return Err(pyo3::exceptions::PyKeyError::new_err(alias.to_string()));
        };
        let place = |i: usize| {
            let n = &self.shared.config.nodes[i];
            (i, n.host.clone(), n.port)
        };
        if slot != 0 {
            return Ok(place(self.target_of(self.read_slot(alias, slot))));
        }
        let wait = Duration::from_secs_f64(if wait.is_finite() {
            wait.clamp(0.0, 3600.0)
        } else {
            0.0
        });
        // The server that refused the last connect, under whichever of its names (a
        // host listed by two multi-host aliases is two nodes of one server).
        let nodes = &self.shared.config.nodes;
        let avoided = |w: usize| {
            avoid.is_some_and(|a| {
                a == w
                    || nodes
                        .get(a)
                        .zip(nodes.get(w))
                        .is_some_and(|(a, w)| a.host == w.host && a.port == w.port)
            })
        };
        let started = Instant::now();
        loop {
            let epoch = self.shared.role_epoch.load(Ordering::Acquire);
            let roles = Arc::clone(&self.shared.snapshot.load().roles);
            match &roles.writer {
                Writer::Known(w) if !avoided(*w) => return Ok(place(*w)),
                // A proxy endpoint that failed this connection stays the place to go
                // (the proxy picks the server): once a probe since says it is primary.
                Writer::Known(w) if roles.proxies.contains(w) && self.probed_since(*w, started) => {
                    return Ok(place(*w))
                }
                Writer::Split(nodes) => {
                    let names: Vec<String> = nodes.iter().map(|&i| self.node_name(i)).collect();
                    return Err(NoPrimary::new_err(format!(
                        "writes refused: {} servers claim to be primary on timeline {}: {}",
                        nodes.len(),
                        roles.timeline.map_or("unknown".into(), |t| t.to_string()),
                        names.join(" and ")
                    )));
                }
                _ => {}
            }
            let waited = started.elapsed();
            if waited >= wait && fallback {
                // The statement is not known yet (it may be a read): the last primary
                // known, or the configured one; a write it rejects waits then.
                let last = self.shared.last_writer().unwrap_or(0);
                // Never a node on an older timeline than another primary (a primary
                // Patroni does not name leader can leave one behind). [s3-patroni]
                if !avoided(last) && !roles.stale.contains(&last) {
                    return Ok(place(last));
                }
            }
            if waited >= wait {
                let nodes: Vec<String> = (0..self.shared.config.nodes.len())
                    .map(|i| self.node_name(i))
                    .collect();
                // [s3-patroni] Why none is, when Patroni disagrees with PostgreSQL.
                let why = match &roles.patroni {
                    crate::roles::Word::Holds { primary, leader } => format!(
                        "; PostgreSQL's primary {} is not Patroni's leader ({})",
                        self.node_name(*primary),
                        leader.as_deref().unwrap_or("none")
                    ),
                    _ => String::new(),
                };
                return Err(NoPrimary::new_err(format!(
                    "no primary is known for {alias:?} after waiting {:.1} s \
                     (PRIMARY_WAIT_TIMEOUT); nodes: {}{why}",
                    waited.as_secs_f64(),
                    nodes.join(", ")
                )));
            }
            let slice = (wait - waited).min(GAP_PULSE);
            self.prober.reprobe();
            py.detach(|| self.shared.wait_roles(epoch, slice));
        }
    }

    /// Whether node `w` answered a probe after `since` (by the published view).
    fn probed_since(&self, w: usize, since: Instant) -> bool {
        let snapshot = self.shared.snapshot.load();
        let window = self.shared.config.staleness_window();
        snapshot
            .roles
            .slot_of(w)
            .and_then(|slot| snapshot.nodes.get(slot))
            .is_some_and(|n| n.fresh_until >= since + window)
    }

    /// The slot a new connection of read alias `alias` (first slot `first`) takes:
    /// for a multi-host alias, the host this thread's last read was routed to while it
    /// takes reads, else a weighted pick among the alias's hosts by the usual health,
    /// lag and weights, else its first host.
    fn read_slot(&self, alias: &str, first: usize) -> usize {
        let nodes = &self.shared.config.nodes;
        if !nodes[first].multi_host {
            return first;
        }
        let snapshot = self.shared.snapshot.load();
        let own = |i: usize| nodes.get(i).is_some_and(|n| n.database == alias);
        if let Some(last) = LAST_PICK.get() {
            if own(last) && snapshot.is_eligible_now(last) {
                return last;
            }
        }
        let others = (0..nodes.len().min(64))
            .filter(|&i| !own(i))
            .fold(0u64, |m, i| m | (1u64 << i));
        snapshot
            .pick_retry(Instant::now(), uniform(), others, None)
            .filter(|&i| own(i))
            .unwrap_or(first)
    }

    /// See `roles` (the Python method).
    pub(super) fn roles_impl<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.prober.ensure_started();
        let roles = Arc::clone(&self.shared.snapshot.load().roles);
        let nodes = &self.shared.config.nodes;
        let d = PyDict::new(py);
        let (state, primary) = match &roles.writer {
            Writer::Known(w) => ("known", Some(*w)),
            Writer::Unknown => ("unknown", None),
            Writer::Split(_) => ("split", None),
        };
        d.set_item("state", state)?;
        d.set_item("primary_node", primary.map(|w| nodes[w].alias.clone()))?;
        d.set_item("primary_host", primary.map(|w| nodes[w].host.clone()))?;
        d.set_item("primary_port", primary.map(|w| nodes[w].port))?;
        let split: Vec<String> = match &roles.writer {
            Writer::Split(v) => v.iter().map(|&i| nodes[i].alias.clone()).collect(),
            _ => Vec::new(),
        };
        d.set_item("split", split)?;
        let stale: Vec<String> = roles
            .stale
            .iter()
            .map(|&i| nodes[i].alias.clone())
            .collect();
        d.set_item("stale_primaries", stale)?;
        d.set_item("timeline", roles.timeline)?;
        d.set_item(
            "role_changes",
            self.shared.role_changes.load(Ordering::Relaxed),
        )?;
        let targets = PyDict::new(py);
        for (slot, n) in nodes.iter().enumerate() {
            let t = roles.targets.get(slot).copied().unwrap_or(slot);
            targets.set_item(&n.alias, nodes[t].alias.clone())?;
        }
        d.set_item("connects_to", targets)?;
        // [s3-patroni] Patroni's view (None without PATRONI_URLS).
        d.set_item("patroni", self.patroni_roles(py, &roles.patroni)?)?;
        let proxies: Vec<String> = roles
            .proxies
            .iter()
            .map(|&i| nodes[i].alias.clone())
            .collect();
        d.set_item("proxies", proxies)?;
        d.set_item("primary_server", roles.writer_server.clone())?;
        Ok(d)
    }
}
