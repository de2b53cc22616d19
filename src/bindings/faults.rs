//! The failures of real connections and queries that the database backend reports:
//! sorted by the rules probes use and, for a node fault, reported to the prober in
//! the same call (one crossing from Python, no fault kind passed back and forth).

use std::time::Instant;

use pyo3::prelude::*;

use crate::events::{Event, Severity};
use crate::health::State;
use crate::probe::{redact, Fault, FaultKind};

use super::Cluster;

/// Sorts the failure of a real connection or query (SQLSTATE, if any, and message)
/// by the rules probes use: the fault kind's name for a node fault, `None` for what
/// is not one (constraint violations, serialization failures, statement timeouts and
/// other application errors; configuration errors such as a wrong password).
#[pyfunction]
#[pyo3(signature = (sqlstate, message))]
pub fn classify_failure(sqlstate: Option<&str>, message: &str) -> Option<&'static str> {
    crate::fault::classify_passive(sqlstate, message).map(FaultKind::as_str)
}

impl Cluster {
    /// `report_failure`: classifies, then reports a node fault.
    pub(super) fn classify_and_report(
        &self,
        alias: &str,
        sqlstate: Option<&str>,
        message: &str,
        node: Option<usize>,
        connecting: bool,
    ) -> (Option<&'static str>, bool) {
        let Some(mut kind) = crate::fault::classify_passive(sqlstate, message) else {
            return (None, false);
        };
        if connecting && kind == FaultKind::Timeout {
            // A connect that timed out (through a proxy retrying a dead backend, say)
            // says nothing of the alias's open connections: a connect failure, which
            // takes the node out of reads but interrupts nothing (the prober's own
            // timeouts do, for a frozen node).
            kind = FaultKind::Connection;
        }
        (Some(kind.as_str()), self.report(alias, kind, message, node))
    }

    /// A node fault of `kind` on `alias`: the node, and every node probed with it
    /// (`ProbeGroups`: the same server under another alias), leaves reads now and is
    /// re-probed at once. For a configuration error of this process (authentication,
    /// missing database or privilege) they leave this process's reads only. Returns
    /// whether one of them was taking reads until now.
    fn report(&self, alias: &str, kind: FaultKind, message: &str, node: Option<usize>) -> bool {
        self.prober.ensure_started();
        let Some(slot) = self.index_of(alias) else {
            return false;
        };
        let idx = match node {
            Some(n) if n < self.shared.config.nodes.len() => n,
            _ => self.target_of(slot),
        };
        let password = self.shared.config.nodes[idx].password.as_deref();
        let fault = Fault {
            kind,
            message: format!("passive: {}", redact(message.trim(), password)),
        };
        let now = Instant::now();
        if kind.is_config_error() {
            // This process's credentials, not the node: never told to the host's
            // shared prober, where it would take the node out for every process. The
            // nodes probed with this one (the same login to the same server, under
            // another alias) would refuse it just as well.
            let group = self.shared.probe_groups.with(idx);
            let was_in_reads = group.iter().any(|&j| self.shared.takes_reads(j));
            for &j in group {
                let text = format!(
                    "{:?} is misconfigured for this process ({}); it takes no reads from it",
                    self.shared.config.nodes[j].alias, fault.message
                );
                if self.shared.own_error(j, fault.clone(), now) {
                    if let Some(events) = self.prober.events() {
                        let mut e = Event::about(Severity::Error, text, j);
                        e.state = Some(State::Misconfigured);
                        events.push(e);
                    }
                }
            }
            return was_in_reads;
        }
        self.prober.report_passive(idx, fault, now)
    }
}
