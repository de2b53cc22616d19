//! The Python face of the core: one frozen class, `Cluster`, that Python holds.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::config::{seconds, ClusterConfig, NodeConfig, Role};
use crate::context::RouteState;
use crate::health::State;
use crate::monitor::{install_fork_hook, lsn_text, Engine, Shared, FORK_GENERATION};
use crate::probe::{redact, Fault, FaultKind};
use crate::select::{Reason, REASON_COUNT, REASON_NAMES};

/// Sorts the failure of a real connection or query (SQLSTATE, if any, and message)
/// by the rules probes use: the fault kind's name for a node fault, `None` for what
/// is not one (constraint violations, serialization failures, statement timeouts and
/// other application errors; configuration errors such as a wrong password).
#[pyfunction]
#[pyo3(signature = (sqlstate, message))]
pub fn classify_failure(sqlstate: Option<&str>, message: &str) -> Option<&'static str> {
    crate::probe::classify_passive(sqlstate, message).map(FaultKind::as_str)
}

create_exception!(
    replica_router._core,
    ConfigError,
    PyValueError,
    "A cluster setting that cannot work; the message names the key and the value."
);

const NOT_STARTED: u64 = u64::MAX;

/// Gives every `Cluster` an identity for the per-thread connection cache.
static NEXT_CLUSTER_ID: AtomicU64 = AtomicU64::new(1);

/// This thread's Django connection objects for a cluster's aliases, keyed by
/// (cluster id, fork generation). A sync thread keeps its connection objects for its
/// lifetime, so they are fetched from Python once per thread.
type ConnCache = Option<(u64, u64, Vec<Py<PyDict>>)>;

thread_local! {
    static CONNECTIONS: RefCell<ConnCache> = const { RefCell::new(None) };
}

thread_local! {
    /// (fork generation it was seeded in, generator). Reseeded from the OS after a fork
    /// so that sibling workers do not make the same picks in lockstep.
    static RNG: RefCell<(u64, Option<SmallRng>)> = const { RefCell::new((NOT_STARTED, None)) };
}

#[inline]
fn uniform() -> f64 {
    RNG.with(|cell| {
        let mut cell = cell.borrow_mut();
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        if cell.0 != generation || cell.1.is_none() {
            cell.1 = Some(SmallRng::from_rng(&mut rand::rng()));
            // rand's thread generator is copied by fork too; mix in what differs.
            if let Some(rng) = cell.1.as_mut() {
                let salt = u64::from(std::process::id()) ^ generation.rotate_left(32);
                let mixed = rng.random::<u64>() ^ salt;
                *rng = SmallRng::seed_from_u64(mixed);
            }
            cell.0 = generation;
        }
        cell.1.as_mut().map_or(0.5, |rng| rng.random::<f64>())
    })
}

fn config_error(msg: impl Into<String>) -> PyErr {
    ConfigError::new_err(msg.into())
}

fn get_item<'py>(d: &Bound<'py, PyDict>, key: &str, alias: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(key)?
        .ok_or_else(|| config_error(format!("node {alias:?}: missing key {key:?}")))
}

fn node_from_dict(d: &Bound<'_, PyDict>) -> PyResult<NodeConfig> {
    let alias: String = get_item(d, "alias", "?")?
        .extract()
        .map_err(|_| config_error("node alias must be a string"))?;
    let text = |key: &str| -> PyResult<String> {
        let v = get_item(d, key, &alias)?;
        if v.is_none() {
            return Ok(String::new());
        }
        v.str().map(|s| s.to_string())
    };
    let role = match text("role")?.as_str() {
        "primary" => Role::Primary,
        "replica" => Role::Replica,
        other => {
            return Err(config_error(format!(
                "node {alias:?}: role must be \"primary\" or \"replica\", got {other:?}"
            )))
        }
    };
    let port_text = text("port")?;
    let port: u16 = if port_text.is_empty() {
        5432
    } else {
        port_text.trim().parse().map_err(|_| {
            config_error(format!(
                "DATABASES[{alias:?}][\"PORT\"] must be a port number, got {port_text:?}"
            ))
        })?
    };
    let weight: f64 = get_item(d, "weight", &alias)?
        .extract()
        .map_err(|_| config_error(format!("node {alias:?}: weight must be a number")))?;
    let password = text("password")?;
    let sslmode = text("sslmode")?;
    let sslrootcert = text("sslrootcert")?;
    let host = text("host")?;
    Ok(NodeConfig {
        role,
        host: if host.is_empty() {
            "localhost".into()
        } else {
            host
        },
        port,
        dbname: text("name")?,
        user: text("user")?,
        password: (!password.is_empty()).then_some(password),
        weight,
        sslmode: (!sslmode.is_empty()).then_some(sslmode),
        sslrootcert: (!sslrootcert.is_empty()).then_some(sslrootcert),
        alias,
    })
}

/// A PostgreSQL cluster: its nodes' health, probed in the background, and read routing.
#[pyclass(frozen, module = "replica_router._core")]
pub struct Cluster {
    shared: Arc<Shared>,
    engine: ArcSwapOption<Engine>,
    started_generation: AtomicU64,
    closed: AtomicBool,
    aliases: Vec<Py<PyString>>,
    id: u64,
    /// `ContextVar.get` of the Python-side routing state (a `RouteState` or None).
    state_getter: Option<Py<PyAny>>,
    /// Returns this thread's Django connection objects, in alias order.
    thread_connections: Option<Py<PyAny>>,
}

impl Cluster {
    /// The node whose connection in this thread is inside `transaction.atomic()`.
    fn transaction_node(&self, py: Python<'_>) -> Option<usize> {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        let name = pyo3::intern!(py, "in_atomic_block").as_ptr();
        // Each connection's instance `__dict__`: a dict lookup is cheaper than a full
        // attribute lookup, which first walks the class hierarchy for descriptors.
        // Django stores a real bool there: compare with True by address instead of
        // asking Python for truthiness.
        let true_ = pyo3::types::PyBool::new(py, true).as_ptr();
        let in_tx = |dicts: &[Py<PyDict>]| {
            dicts.iter().position(|d| {
                // SAFETY: the GIL is held (`py`) and `d`, `name` are live objects; the
                // result is a borrowed reference (or NULL), only compared by address.
                let v = unsafe { pyo3::ffi::PyDict_GetItemWithError(d.as_ptr(), name) };
                if v.is_null() {
                    // Absent; a str key cannot raise, but never leave an error set.
                    let _ = PyErr::take(py);
                    return false;
                }
                v == true_
            })
        };
        let cached = CONNECTIONS.with(|c| {
            let c = c.try_borrow().ok()?;
            match c.as_ref() {
                Some((id, g, conns)) if *id == self.id && *g == generation => Some(in_tx(conns)),
                _ => None,
            }
        });
        if let Some(found) = cached {
            return found;
        }
        // First read in this thread: fetch the objects (Python code runs here, so the
        // cache is not borrowed meanwhile).
        let fetched = self.thread_connections.as_ref()?.bind(py).call0().ok()?;
        let dunder_dict = pyo3::intern!(py, "__dict__");
        let conns: Vec<Py<PyDict>> = fetched
            .try_iter()
            .ok()?
            .filter_map(|o| {
                let d = o.ok()?.getattr(dunder_dict).ok()?;
                d.cast_into::<PyDict>().ok().map(Bound::unbind)
            })
            .collect();
        let found = in_tx(&conns);
        CONNECTIONS.with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                *c = Some((self.id, generation, conns));
            }
        });
        found
    }

    /// Starts probing on first use, and again in a child after a fork. The check is two
    /// relaxed atomic loads on the hot path.
    #[inline]
    fn ensure_started(&self) {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        let current = self.started_generation.load(Ordering::Relaxed);
        if current != generation {
            self.start_slow(current, generation);
        }
    }

    #[cold]
    fn start_slow(&self, current: u64, generation: u64) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        if self
            .started_generation
            .compare_exchange(current, generation, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        if current != NOT_STARTED {
            // A forked child: the parent's thread does not exist here, and its locks may
            // have been held at the fork. Never touch (or drop) that engine again.
            if let Some(inherited) = self.engine.swap(None) {
                std::mem::forget(inherited);
            }
        }
        self.engine
            .store(Some(Engine::start(Arc::clone(&self.shared))));
    }

    /// See `read`.
    #[inline]
    fn read_impl(&self, py: Python<'_>, hint: Option<&str>) -> PyResult<Py<PyString>> {
        self.ensure_started();
        let mut min_lsn = None;
        if let Some(getter) = &self.state_getter {
            let state = getter.bind(py).call0()?;
            if let Ok(state) = state.cast::<RouteState>() {
                let state = state.get();
                if state.primary_depth > 0 {
                    return Ok(self.route(py, 0, Reason::UsePrimary));
                }
                if state.pinned_now() {
                    return Ok(self.route(py, 0, Reason::Pinned));
                }
                min_lsn = state.min_lsn;
            }
        }
        if let Some(node) = self.transaction_node(py) {
            return Ok(self.route(py, node, Reason::Transaction));
        }
        let snapshot = self.shared.snapshot.load();
        if let Some(node) = hint.and_then(|alias| self.index_of(alias)) {
            // An instance read from a node goes back to it while it may take reads, so
            // related lookups see the same data.
            if node == 0 || snapshot.is_eligible(node, Instant::now()) {
                return Ok(self.route(py, node, Reason::InstanceHint));
            }
        }
        let (node, reason) = match min_lsn {
            None => snapshot.pick_now(uniform()),
            Some(lsn) => snapshot.pick_min_lsn(Instant::now(), uniform(), lsn),
        };
        Ok(self.route(py, node, reason))
    }

    #[inline]
    fn route(&self, py: Python<'_>, node: usize, reason: Reason) -> Py<PyString> {
        if let Some(counters) = self.shared.reads.get(node) {
            // Every caller holds the GIL, so calls are serialized: a plain load and
            // store counts exactly, without a locked read-modify-write.
            let c = &counters[reason as usize];
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        self.aliases[node].clone_ref(py)
    }

    fn index_of(&self, alias: &str) -> Option<usize> {
        self.shared
            .config
            .nodes
            .iter()
            .position(|n| n.alias == alias)
    }
}

#[pymethods]
impl Cluster {
    #[new]
    #[pyo3(signature = (nodes, *, probe_interval, probe_timeout, fall, rise, max_lag_seconds=None, max_lag_bytes=None, state_getter=None, thread_connections=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        nodes: &Bound<'_, PyList>,
        probe_interval: f64,
        probe_timeout: f64,
        fall: u32,
        rise: u32,
        max_lag_seconds: Option<f64>,
        max_lag_bytes: Option<u64>,
        state_getter: Option<Py<PyAny>>,
        thread_connections: Option<Py<PyAny>>,
    ) -> PyResult<Cluster> {
        let mut parsed = Vec::with_capacity(nodes.len());
        for item in nodes.iter() {
            let d = item
                .cast::<PyDict>()
                .map_err(|_| config_error("each node must be a dict"))?;
            parsed.push(node_from_dict(d)?);
        }
        let config = ClusterConfig {
            nodes: parsed,
            probe_interval: seconds("PROBE_INTERVAL", probe_interval)
                .map_err(|e| config_error(e.0))?,
            probe_timeout: seconds("PROBE_TIMEOUT", probe_timeout)
                .map_err(|e| config_error(e.0))?,
            fall,
            rise,
            max_lag_seconds,
            max_lag_bytes,
        };
        config.validate().map_err(|e| config_error(e.0))?;
        install_fork_hook();
        let aliases = config
            .nodes
            .iter()
            .map(|n| PyString::intern(py, &n.alias).unbind())
            .collect();
        Ok(Cluster {
            shared: Arc::new(Shared::new(config)),
            engine: ArcSwapOption::empty(),
            started_generation: AtomicU64::new(NOT_STARTED),
            closed: AtomicBool::new(false),
            aliases,
            id: NEXT_CLUSTER_ID.fetch_add(1, Ordering::Relaxed),
            state_getter,
            thread_connections,
        })
    }

    /// The whole read decision in one call: `use_primary`, a pin after a write, an open
    /// transaction, the node an instance came from (`hint`), a read-your-writes token,
    /// else a weighted pick. No I/O and no lock.
    fn read(&self, py: Python<'_>) -> PyResult<Py<PyString>> {
        self.read_impl(py, None)
    }

    /// `read()` for an object loaded from `alias` (Django's `instance` hint): the
    /// read goes back to that node while it may take reads, unless a rule above
    /// the hint (use_primary, pin, transaction) sends it to the primary.
    fn read_hinted(&self, py: Python<'_>, alias: &str) -> PyResult<Py<PyString>> {
        self.read_impl(py, Some(alias))
    }

    /// Starts the prober if it is not running in this process (idempotent).
    fn start(&self) {
        self.ensure_started();
    }

    /// The primary's alias, counting a write.
    fn write(&self, py: Python<'_>) -> Py<PyString> {
        self.ensure_started();
        self.shared.writes.fetch_add(1, Ordering::Relaxed);
        self.aliases[0].clone_ref(py)
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
        !self.closed.load(Ordering::SeqCst)
            && self.started_generation.load(Ordering::SeqCst)
                == FORK_GENERATION.load(Ordering::SeqCst)
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

    /// One dict per node; see `_core.pyi` for the keys.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.ensure_started();
        let engine = self.engine.load_full();
        let statuses = engine.as_ref().map(|e| e.node_statuses());
        let cfg = &self.shared.config;
        let window = cfg.staleness_window();
        let now = Instant::now();
        let out = PyList::empty(py);
        for (i, node) in cfg.nodes.iter().enumerate() {
            let d = PyDict::new(py);
            d.set_item("alias", &node.alias)?;
            d.set_item("configured_role", node.role.as_str())?;
            d.set_item("weight", node.weight)?;
            d.set_item("host", &node.host)?;
            d.set_item("port", node.port)?;
            let reads = &self.shared.reads[i];
            let by_reason = PyDict::new(py);
            let mut total = 0u64;
            for (r, name) in REASON_NAMES.iter().enumerate().take(REASON_COUNT) {
                let v = reads[r].load(Ordering::Relaxed);
                total += v;
                by_reason.set_item(*name, v)?;
            }
            d.set_item("reads_routed", total)?;
            d.set_item("reads_by_reason", by_reason)?;
            let st = statuses.as_ref().and_then(|s| s.get(i));
            let (Some(st), Some(engine)) = (st, engine.as_ref()) else {
                d.set_item("state", State::Unknown.as_str())?;
                out.append(d)?;
                continue;
            };
            let fresh = st.health.is_fresh(now, window);
            // A live state whose last good probe is too old counts as down.
            let state = if st.health.state.is_live() && !fresh {
                "down"
            } else {
                st.health.state.as_str()
            };
            d.set_item("state", state)?;
            d.set_item("stale", st.health.state.is_live() && !fresh)?;
            let sample = st.sample.as_ref();
            d.set_item(
                "observed_role",
                sample.map(|s| if s.in_recovery { "replica" } else { "primary" }),
            )?;
            d.set_item("role_mismatch", st.role_mismatch)?;
            d.set_item("timeline", sample.and_then(|s| s.timeline))?;
            d.set_item("lag_bytes", st.lag_bytes)?;
            d.set_item("lag_seconds", st.lag_seconds)?;
            d.set_item("replay_paused", sample.map(|s| s.replay_paused))?;
            d.set_item(
                "wal_receiver_status",
                sample.and_then(|s| s.receiver_status.clone()),
            )?;
            d.set_item("current_lsn", lsn_text(sample.and_then(|s| s.current_lsn)))?;
            d.set_item("receive_lsn", lsn_text(sample.and_then(|s| s.receive_lsn)))?;
            d.set_item("replay_lsn", lsn_text(sample.and_then(|s| s.replay_lsn)))?;
            d.set_item("latency_ms", st.latency.map(|l| l.as_secs_f64() * 1000.0))?;
            d.set_item("consecutive_failures", st.health.fail_streak)?;
            d.set_item("consecutive_successes", st.health.ok_streak)?;
            d.set_item("probes", st.probes)?;
            d.set_item("failed_probes", st.failed_probes)?;
            d.set_item("passive_faults", st.passive_faults)?;
            d.set_item(
                "last_error",
                st.last_error.as_ref().map(|f| f.message.clone()),
            )?;
            d.set_item(
                "error_class",
                st.last_error.as_ref().map(|f| f.kind.as_str()),
            )?;
            d.set_item("last_state_change", engine.unix_time(st.health.last_change))?;
            d.set_item("last_probe", st.last_probe.map(|t| engine.unix_time(t)))?;
            d.set_item(
                "last_good_probe_age",
                st.health
                    .last_good
                    .map(|t| now.saturating_duration_since(t).as_secs_f64()),
            )?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Waits up to `timeout` seconds (GIL released) for state-change events; returns
    /// `[(level, message, alias or None, new state or None, interrupt), ...]`, empty on
    /// timeout or once closed. `interrupt`: the node was declared down for timeouts, so
    /// connections in flight to it should be interrupted.
    #[allow(clippy::type_complexity)]
    fn wait_events(
        &self,
        py: Python<'_>,
        timeout: f64,
    ) -> Vec<(u8, String, Option<Py<PyString>>, Option<&'static str>, bool)> {
        let Some(engine) = self.engine.load_full() else {
            return Vec::new();
        };
        let timeout = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let events = py.detach(|| engine.wait_events(timeout));
        events
            .into_iter()
            .map(|e| {
                let alias = e
                    .node
                    .and_then(|i| self.aliases.get(i))
                    .map(|a| a.clone_ref(py));
                (
                    e.level,
                    e.message,
                    alias,
                    e.state.map(State::as_str),
                    e.interrupt,
                )
            })
            .collect()
    }

    /// A real connection or query on `alias` failed for a node fault of `kind` (see
    /// `classify_failure`): the node leaves reads now and is re-probed at once; it
    /// comes back after RISE good probes. No I/O, no waiting on a lock. Returns whether
    /// the node was taking reads until now (False for an alias outside the cluster).
    fn report_fault(&self, alias: &str, kind: &str, message: &str) -> bool {
        self.ensure_started();
        let (Some(idx), Some(kind)) = (self.index_of(alias), FaultKind::from_name(kind)) else {
            return false;
        };
        let Some(engine) = self.engine.load_full() else {
            return false;
        };
        let password = self.shared.config.nodes[idx].password.as_deref();
        let fault = Fault {
            kind,
            message: format!("passive: {}", redact(message.trim(), password)),
        };
        engine.report_passive(idx, fault, Instant::now())
    }

    /// Where to run a read again after it failed on every alias in `tried` because of
    /// node faults: the same rules as `read()` (use_primary and pins keep it on the
    /// primary, a read-your-writes token on nodes that replayed it), never a tried
    /// node. `None` when nothing is left. Counted as reason `retried`.
    fn retry(&self, py: Python<'_>, tried: Vec<String>) -> PyResult<Option<Py<PyString>>> {
        self.ensure_started();
        let mask = tried
            .iter()
            .filter_map(|a| self.index_of(a))
            .filter(|&i| i < 64)
            .fold(0u64, |m, i| m | (1u64 << i));
        let mut min_lsn = None;
        if let Some(getter) = &self.state_getter {
            let state = getter.bind(py).call0()?;
            if let Ok(state) = state.cast::<RouteState>() {
                let state = state.get();
                if state.primary_depth > 0 || state.pinned_now() {
                    return Ok((mask & 1 == 0).then(|| self.route(py, 0, Reason::Retried)));
                }
                min_lsn = state.min_lsn;
            }
        }
        let snapshot = self.shared.snapshot.load();
        Ok(snapshot
            .pick_retry(Instant::now(), uniform(), mask, min_lsn)
            .map(|i| self.route(py, i, Reason::Retried)))
    }

    /// Stops probing in this process and waits for the prober to exit (bounded by one
    /// probe at most). Reads keep working on the last snapshot until it goes stale,
    /// then go to the primary.
    fn close(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::SeqCst);
        let generation = FORK_GENERATION.load(Ordering::SeqCst);
        if self.started_generation.load(Ordering::SeqCst) != generation {
            return; // nothing of ours runs in this process
        }
        if let Some(engine) = self.engine.load_full() {
            py.detach(|| engine.stop());
        }
    }

    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
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

impl Drop for Cluster {
    fn drop(&mut self) {
        let generation = FORK_GENERATION.load(Ordering::SeqCst);
        if self.started_generation.load(Ordering::SeqCst) == generation {
            if let Some(engine) = self.engine.load_full() {
                engine.stop();
            }
        } else if let Some(inherited) = self.engine.swap(None) {
            std::mem::forget(inherited);
        }
    }
}
