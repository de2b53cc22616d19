//! The Python face of the core: one frozen class, `Cluster`, that Python holds. It
//! only binds: the read decision's parts live in `select` (pick), `django_conn`
//! (transaction check), `context` (pins), `lifecycle` (prober per process) and
//! `report` (status).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::context::StateSource;
use crate::health::State;
use crate::lifecycle::Lifecycle;
use crate::monitor::Shared;
use crate::probe::{redact, Fault, FaultKind};
use crate::py_settings::RouterSettings;
use crate::rng::uniform;
use crate::select::{Reason, REASON_NAMES};
use crate::step::{Event, Severity};

pyo3::create_exception!(
    _core,
    NoPrimary,
    pyo3::exceptions::PyException,
    "No node can take writes now: none is primary (within the wait), or two are."
);

mod read;
mod roles;
mod status;

/// Gives every `Cluster` an identity for the per-thread connection cache.
static NEXT_CLUSTER_ID: AtomicU64 = AtomicU64::new(1);

/// Sorts the failure of a real connection or query (SQLSTATE, if any, and message)
/// by the rules probes use: the fault kind's name for a node fault, `None` for what
/// is not one (constraint violations, serialization failures, statement timeouts and
/// other application errors; configuration errors such as a wrong password).
#[pyfunction]
#[pyo3(signature = (sqlstate, message))]
pub fn classify_failure(sqlstate: Option<&str>, message: &str) -> Option<&'static str> {
    crate::fault::classify_passive(sqlstate, message).map(FaultKind::as_str)
}

/// Python's `logging` level of an event.
fn level(severity: Severity) -> u8 {
    match severity {
        Severity::Silent => 0,
        Severity::Info => 20,
        Severity::Warning => 30,
        Severity::Error => 40,
    }
}

/// A PostgreSQL cluster: its nodes' health, probed in the background, and read routing.
#[pyclass(frozen, module = "replica_router._core")]
pub struct Cluster {
    shared: Arc<Shared>,
    prober: Lifecycle,
    aliases: Vec<Py<PyString>>,
    id: u64,
    /// The Python-side routing state (a `RouteState` or None): where to read it.
    state: Option<StateSource>,
    /// Returns this thread's Django connection objects, in alias order.
    thread_connections: Option<Py<PyAny>>,
}

impl Cluster {
    /// The node of a Python alias: by identity first (Django hands back the strings
    /// this core returned), else by value.
    #[inline]
    pub(crate) fn node_of(&self, alias: &Bound<'_, PyString>) -> Option<usize> {
        let ptr = alias.as_ptr();
        if let Some(node) = self.aliases.iter().position(|a| a.as_ptr() == ptr) {
            return Some(node);
        }
        self.index_of(alias.to_str().ok()?)
    }

    /// The primary's alias, counting a write.
    pub(crate) fn write_alias(&self, py: Python<'_>) -> Py<PyString> {
        self.prober.ensure_started();
        self.shared.writes.fetch_add(1, Ordering::Relaxed);
        self.aliases[0].clone_ref(py)
    }
}

#[pymethods]
impl Cluster {
    #[new]
    #[pyo3(signature = (settings, *, state_getter=None, thread_connections=None))]
    fn new(
        py: Python<'_>,
        settings: &RouterSettings,
        state_getter: Option<Py<PyAny>>,
        thread_connections: Option<Py<PyAny>>,
    ) -> Cluster {
        let config = settings.cluster().clone();
        let aliases = config
            .nodes
            .iter()
            .map(|n| PyString::intern(py, &n.database).unbind())
            .collect();
        let shared = Arc::new(Shared::new(config));
        Cluster {
            prober: Lifecycle::new(Arc::clone(&shared), settings.share_health()),
            shared,
            aliases,
            id: NEXT_CLUSTER_ID.fetch_add(1, Ordering::Relaxed),
            state: state_getter.map(|g| StateSource::new(py, g)),
            thread_connections,
        }
    }

    /// The whole read decision in one call: `use_primary`, a pin after a write, an open
    /// transaction, a read-your-writes token, else a weighted pick. No I/O, no lock.
    fn read(&self, py: Python<'_>) -> PyResult<Py<PyString>> {
        crate::hot::with(|hot| self.read_node(py, None, hot.map(|h| &mut h.read)))
    }

    /// `read()` for an object loaded from `alias` (Django's `instance` hint).
    fn read_hinted(&self, py: Python<'_>, alias: &str) -> PyResult<Py<PyString>> {
        let hint = self.index_of(alias);
        crate::hot::with(|hot| self.read_node(py, hint, hot.map(|h| &mut h.read)))
    }

    /// The primary's alias, counting a read as `test_primary`: under a test runner
    /// without `TEST_REPLICA_READS`, every read goes there (see `testing.readers`).
    fn read_test_primary(&self, py: Python<'_>) -> Py<PyString> {
        self.route(py, 0, Reason::TestPrimary)
    }

    /// Where to run a read again after node faults on every alias in `tried`; `None`
    /// when nothing is left. Counted as reason `retried`.
    fn retry(&self, py: Python<'_>, tried: Vec<String>) -> PyResult<Option<Py<PyString>>> {
        self.prober.ensure_started();
        let mask = self.alias_mask(&tried);
        let mut min_lsn = None;
        if let Some(state) = self.state(py)? {
            let state = state.get();
            if state.primary_depth > 0 || state.pinned_now() {
                return Ok((mask & 1 == 0).then(|| self.route(py, 0, Reason::Retried)));
            }
            min_lsn = state.min_lsn;
        }
        let snapshot = self.shared.snapshot.load();
        Ok(snapshot
            .pick_retry(Instant::now(), uniform(), mask, min_lsn)
            .map(|i| self.route(py, i, Reason::Retried)))
    }

    /// A real connection or query on `alias` failed for a node fault of `kind` (see
    /// `classify_failure`): the node leaves reads now and is re-probed at once. For a
    /// configuration error of this process (authentication, missing database or
    /// privilege) the node leaves this process's reads only. Returns whether the node
    /// was taking reads until now. `node`: the node the connection went to
    /// (`connect_target`); by default, where the alias connects now.
    #[pyo3(signature = (alias, kind, message, node=None))]
    fn report_fault(&self, alias: &str, kind: &str, message: &str, node: Option<usize>) -> bool {
        self.prober.ensure_started();
        let (Some(slot), Some(kind)) = (self.index_of(alias), FaultKind::from_name(kind)) else {
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
            // shared prober, where it would take the node out for every process.
            let was_in_reads = self.shared.takes_reads(idx);
            let text = format!(
                "{:?} is misconfigured for this process ({}); it takes no reads from it",
                self.shared.config.nodes[idx].alias, fault.message
            );
            if self.shared.own_error(idx, fault, now) {
                if let Some(events) = self.prober.events() {
                    let mut e = Event::about(Severity::Error, text, idx);
                    e.state = Some(State::Misconfigured);
                    events.push(e);
                }
            }
            return was_in_reads;
        }
        self.prober.report_passive(idx, fault, now)
    }

    /// Where a new connection of `alias` goes now: `(node, host, port)`. For the primary
    /// alias, the node that is primary now (never `avoid`, a node that just failed a
    /// write): while none is known it re-probes every node and waits (GIL released)
    /// up to `wait` seconds, then raises `NoPrimary`; two primaries on the newest
    /// timeline raise `NoPrimary` at once, naming both. Other aliases never wait.
    /// `fallback`: instead of failing (no wait left), the last primary known (or the
    /// configured one) unless it is `avoid`; two primaries still raise.
    #[pyo3(signature = (alias, wait=0.0, avoid=None, fallback=false))]
    fn connect_target(
        &self,
        py: Python<'_>,
        alias: &str,
        wait: f64,
        avoid: Option<usize>,
        fallback: bool,
    ) -> PyResult<(usize, String, u16)> {
        self.connect_target_impl(py, alias, wait, avoid, fallback)
    }

    /// Re-probes every node now (a write met a read-only node, or the primary failed).
    fn reprobe(&self) {
        self.prober.ensure_started();
        self.prober.reprobe();
    }

    /// Changes whenever the roles change: a connection made at another epoch is
    /// checked with `connect_target` before it is reused.
    #[getter]
    fn role_epoch(&self) -> u64 {
        self.shared.role_epoch.load(Ordering::Acquire)
    }

    /// The observed roles: who is primary now, where each alias connects, changes.
    fn roles<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.roles_impl(py)
    }

    /// Starts the prober if it is not running in this process (idempotent).
    fn start(&self) {
        self.prober.ensure_started();
    }

    /// The primary's alias, counting a write.
    fn write(&self, py: Python<'_>) -> Py<PyString> {
        self.write_alias(py)
    }

    /// The primary's alias.
    #[getter]
    fn primary(&self, py: Python<'_>) -> Py<PyString> {
        self.aliases[0].clone_ref(py)
    }

    /// Every node's alias, primary first.
    #[getter]
    fn aliases(&self, py: Python<'_>) -> Vec<Py<PyString>> {
        self.aliases.iter().map(|a| a.clone_ref(py)).collect()
    }

    /// Whether this process has a running prober.
    #[getter]
    fn running(&self) -> bool {
        self.prober.running()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.prober.closed()
    }

    /// Reads routed since start, by reason, plus writes.
    fn decisions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (i, name) in REASON_NAMES.iter().enumerate() {
            let total: u64 = self
                .shared
                .reads
                .iter()
                .map(|c| c[i].load(Ordering::Relaxed))
                .sum();
            d.set_item(*name, total)?;
        }
        d.set_item("writes", self.shared.writes.load(Ordering::Relaxed))?;
        Ok(d)
    }

    /// One dict per node, primary first; see `_core.pyi` (`NodeStatus`).
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.status_impl(py)
    }

    /// Waits up to `timeout` seconds (GIL released) for state-change events; returns
    /// `[(level, message, alias or None, new state or None, interrupt), ...]`, empty on
    /// timeout or once closed. Level 0: not to be logged (a follower passing on what
    /// the shared prober logged). `interrupt`: the node was declared down for timeouts,
    /// so connections in flight to it should be interrupted.
    #[allow(clippy::type_complexity)]
    fn wait_events(
        &self,
        py: Python<'_>,
        timeout: f64,
    ) -> Vec<(u8, String, Option<Py<PyString>>, Option<&'static str>, bool)> {
        let Some(queue) = self.prober.events() else {
            return Vec::new();
        };
        let timeout = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let events = py.detach(|| queue.wait(timeout));
        events
            .into_iter()
            .map(|e| {
                let alias = e
                    .node
                    .and_then(|i| self.aliases.get(i))
                    .map(|a| a.clone_ref(py));
                let state = e.state.map(crate::health::State::as_str);
                (level(e.severity), e.message, alias, state, e.interrupt)
            })
            .collect()
    }

    /// Stops probing in this process and waits for the prober to exit (bounded by one
    /// probe at most). Reads keep working on the last snapshot until it goes stale,
    /// then go to the primary.
    fn close(&self, py: Python<'_>) {
        if let Some(current) = self.prober.close() {
            py.detach(|| current.close());
        }
    }

    fn __repr__(&self) -> String {
        let nodes: Vec<String> = self
            .shared
            .config
            .nodes
            .iter()
            .map(|n| format!("{}={}:{}", n.alias, n.host, n.port))
            .collect();
        format!("<replica_router._core.Cluster {}>", nodes.join(" "))
    }
}
