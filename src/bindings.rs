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
use crate::events::Severity;
use crate::lifecycle::Lifecycle;
use crate::py_settings::RouterSettings;
use crate::rng::uniform;
use crate::select::{Reason, REASON_NAMES};
use crate::shared::Shared;

pyo3::create_exception!(
    _core,
    NoPrimary,
    pyo3::exceptions::PyException,
    "No node can take writes now: none is primary (within the wait), or two are."
);

mod faults;
pub(crate) mod hot;
mod patroni;
mod read;
mod roles;
pub(crate) mod status;
mod wait;

pub use faults::classify_failure;

/// Gives every `Cluster` an identity for the per-thread connection cache.
static NEXT_CLUSTER_ID: AtomicU64 = AtomicU64::new(1);

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
        // [s3-patroni] PATRONI_URLS were validated by the settings rule.
        let urls = settings.inner.options.patroni_urls.iter();
        let urls = urls
            .filter_map(|u| crate::patroni::Url::parse(u).ok())
            .collect();
        let shared = Arc::new(Shared::new(config).with_patroni(urls));
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
        hot::with(|hot| self.read_node(py, None, hot.map(|h| &mut h.read)))
    }

    /// `read()` for an object loaded from `alias` (Django's `instance` hint).
    fn read_hinted(&self, py: Python<'_>, alias: &str) -> PyResult<Py<PyString>> {
        let hint = self.index_of(alias);
        hot::with(|hot| self.read_node(py, hint, hot.map(|h| &mut h.read)))
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

    /// A real connection or query on `alias` failed (its SQLSTATE, if any, and
    /// message): sorted by the rules probes use (`classify_failure`) and, for a node
    /// fault, reported in the same step (see `bindings/faults.rs`). Returns the fault
    /// kind's name (`None`: not a node fault, nothing reported) and whether the node
    /// was taking reads until now. `node`: the node the connection went to
    /// (`connect_target`); by default, where the alias connects now. `connecting`: the
    /// failure was a connect's, whose timeout is a connect failure (it says nothing of
    /// the alias's open connections, so it interrupts none).
    #[pyo3(signature = (alias, sqlstate, message, node=None, *, connecting=false))]
    fn report_failure(
        &self,
        alias: &str,
        sqlstate: Option<&str>,
        message: &str,
        node: Option<usize>,
        connecting: bool,
    ) -> (Option<&'static str>, bool) {
        self.classify_and_report(alias, sqlstate, message, node, connecting)
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

    /// Starts the prober if needed and waits (GIL released) until no node is
    /// `unknown` in `status()` (each answered, or failed FALL probes), at most
    /// `timeout` seconds (default: PROBE_INTERVAL + 2 x PROBE_TIMEOUT). Returns
    /// whether every node's state is known.
    #[pyo3(signature = (timeout=None))]
    fn wait_probed(&self, py: Python<'_>, timeout: Option<f64>) -> bool {
        let bound = match timeout {
            // NaN and negative: no wait; beyond what a `Duration` holds: no bound.
            Some(t) if t > 0.0 => Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX),
            Some(_) => Duration::ZERO,
            None => self.probe_round(),
        };
        py.detach(|| self.wait_probed_for(bound))
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

    /// One dict per node, primary first; see `_core.pyi` (`NodeStatus`). With `wait`,
    /// first waits up to that many seconds (GIL released) until no node is `unknown`.
    #[pyo3(signature = (wait = 0.0))]
    fn status<'py>(&self, py: Python<'py>, wait: f64) -> PyResult<Bound<'py, PyList>> {
        self.status_impl(py, wait)
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
