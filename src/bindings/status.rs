//! `Cluster.status()`: the core's per-node reports (`report`) as Python dicts.

use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::report::reports;

use super::Cluster;

impl Cluster {
    /// See `status` (the Python method).
    pub(super) fn status_impl<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.prober.ensure_started();
        let view = self.prober.view();
        let out = PyList::empty(py);
        let roles = Arc::clone(&self.shared.snapshot.load().roles);
        for (i, r) in reports(&self.shared, view.as_ref(), Instant::now())
            .into_iter()
            .enumerate()
        {
            let d = PyDict::new(py);
            d.set_item("primary_now", self.is_primary_now(&roles, i))?;
            d.set_item("connected_as", self.connected_as(&roles, i))?;
            // [s3-patroni] Patroni's member of this node (None without PATRONI_URLS).
            let (patroni_role, patroni_state) = self.patroni_member(i);
            d.set_item("patroni_role", patroni_role)?;
            d.set_item("patroni_state", patroni_state)?;
            d.set_item("alias", r.alias)?;
            d.set_item("configured_role", r.configured_role)?;
            d.set_item("weight", r.weight)?;
            d.set_item("host", r.host)?;
            d.set_item("port", r.port)?;
            d.set_item("reads_routed", r.reads_routed)?;
            let by_reason = PyDict::new(py);
            for (name, v) in r.reads_by_reason {
                by_reason.set_item(name, v)?;
            }
            d.set_item("reads_by_reason", by_reason)?;
            let Some(p) = r.probed else {
                d.set_item("state", "unknown")?;
                out.append(d)?;
                continue;
            };
            d.set_item("state", p.state)?;
            d.set_item("stale", p.stale)?;
            d.set_item("observed_role", p.observed_role)?;
            d.set_item("role_mismatch", p.role_mismatch)?;
            d.set_item("timeline", p.timeline)?;
            d.set_item("lag_bytes", p.lag_bytes)?;
            d.set_item("lag_seconds", p.lag_seconds)?;
            d.set_item("replay_paused", p.replay_paused)?;
            d.set_item("lag_reason", p.lag_reason)?;
            d.set_item("wal_receiver_status", p.wal_receiver_status)?;
            d.set_item("current_lsn", p.current_lsn)?;
            d.set_item("receive_lsn", p.receive_lsn)?;
            d.set_item("replay_lsn", p.replay_lsn)?;
            d.set_item("latency_ms", p.latency_ms)?;
            d.set_item("consecutive_failures", p.consecutive_failures)?;
            d.set_item("consecutive_successes", p.consecutive_successes)?;
            d.set_item("probes", p.probes)?;
            d.set_item("failed_probes", p.failed_probes)?;
            d.set_item("passive_faults", p.passive_faults)?;
            d.set_item("last_error", p.last_error)?;
            d.set_item("error_class", p.error_class)?;
            d.set_item("last_state_change", p.last_state_change)?;
            d.set_item("last_probe", p.last_probe)?;
            d.set_item("last_good_probe_age", p.last_good_probe_age)?;
            d.set_item("prober_pid", p.prober_pid)?;
            d.set_item("shared", p.shared)?;
            d.set_item("snapshot_age", p.snapshot_age)?;
            out.append(d)?;
        }
        Ok(out)
    }
}

impl Cluster {
    /// Whether node `i` is the primary now: the writer, or the same server reached
    /// through another alias (a multi-host replica alias lists the primary too).
    fn is_primary_now(&self, roles: &crate::roles::Roles, i: usize) -> bool {
        let nodes = &self.shared.config.nodes;
        roles.writer_node().is_some_and(|w| {
            w == i
                || nodes.get(w).zip(nodes.get(i)).is_some_and(|(a, b)| {
                    a.host == b.host && a.port == b.port && a.dbname == b.dbname
                })
        })
    }

    /// The alias whose new connections go to node `i` now, if any: the alias of the
    /// slot that describes it, except a spare host of a multi-host primary alias (its
    /// connections go to the primary only).
    fn connected_as(&self, roles: &crate::roles::Roles, i: usize) -> Option<String> {
        let nodes = &self.shared.config.nodes;
        let slot = roles.slot_of(i)?;
        let n = nodes.get(slot)?;
        if slot != 0 && n.database == nodes[0].database {
            return None;
        }
        Some(n.database.clone())
    }
}
