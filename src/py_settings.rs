//! The Python face of the settings rules (`settings.rs`): Django's values in, one
//! frozen, validated `RouterSettings` out, or a `ConfigError` that carries the system
//! check id, the message (naming the key and the value) and a hint.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::PyClassInitializer;

use crate::config::ClusterConfig;
use crate::settings::SETTINGS;
use crate::settings::{build, with_table, Options, Reference, Settings, SettingsError, Value};

create_exception!(
    replica_router._core,
    ConfigError,
    PyValueError,
    "A setting that cannot work. Attributes: check_id (the system check that reports \
     it), hint; the message names the key and the value."
);

pub(crate) fn config_error(py: Python<'_>, e: SettingsError) -> PyErr {
    let err = ConfigError::new_err(e.message);
    let value = err.value(py);
    let _ = value.setattr("check_id", e.family.check_id());
    let _ = value.setattr("hint", e.hint);
    err
}

/// A Python value as a `Value` tree (dicts by string key; anything else by repr).
fn value(obj: &Bound<'_, PyAny>) -> Value {
    if obj.is_none() {
        Value::None
    } else if let Ok(b) = obj.cast::<PyBool>() {
        Value::Bool(b.is_true())
    } else if obj.is_instance_of::<PyInt>() {
        obj.extract::<i64>()
            .map_or_else(|_| Value::Other(repr(obj)), Value::Int)
    } else if let Ok(f) = obj.cast::<PyFloat>() {
        Value::Float(f.value())
    } else if let Ok(s) = obj.cast::<PyString>() {
        Value::Str(s.to_string())
    } else if let Ok(d) = obj.cast::<PyDict>() {
        Value::Dict(
            d.iter()
                .map(|(k, v)| {
                    let key = k
                        .cast::<PyString>()
                        .map_or_else(|_| repr(&k), |s| s.to_string());
                    (key, value(&v))
                })
                .collect(),
        )
    } else if let Ok(l) = obj.cast::<PyList>() {
        Value::List(l.iter().map(|v| value(&v)).collect())
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        Value::List(t.iter().map(|v| value(&v)).collect())
    } else {
        Value::Other(repr(obj))
    }
}

fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr()
        .map_or_else(|_| "<unprintable>".into(), |r| r.to_string())
}

/// Every setting of the settings table but the structural ones, each as the attribute
/// of its field's name (`RouterSettings`' base class, not in the module).
#[pyclass(
    frozen,
    subclass,
    module = "replica_router._core",
    name = "RouterOptions"
)]
pub struct PyOptions(Options);

/// The getters, one per row of the settings table.
macro_rules! getters {
    (
        structural { $( $skey:ident = $srow:expr ; )* }
        options { $( $key:ident : $field:ident : $ty:ty = $row:expr ; )* }
    ) => {
        #[pymethods]
        impl PyOptions {
            $(
                #[doc = concat!("`", stringify!($key), "`")]
                #[getter]
                fn $field(&self) -> $ty {
                    self.0.$field.clone()
                }
            )*
        }
    };
}

with_table!(getters);

/// The router's validated settings (frozen). Build it with
/// `RouterSettings(REPLICA_ROUTER or None, DATABASES, probe_databases=None)`.
#[pyclass(frozen, extends = PyOptions, module = "replica_router._core")]
pub struct RouterSettings {
    pub(crate) inner: Settings,
}

impl RouterSettings {
    pub(crate) fn cluster(&self) -> &ClusterConfig {
        &self.inner.cluster
    }

    /// `SHARE_HEALTH`: one prober per host, shared by its worker processes.
    pub(crate) fn share_health(&self) -> bool {
        self.inner.options.share_health
    }
}

/// One row of the docs' reference as a dict (`SettingInfo` in the stub).
fn reference_row<'py>(py: Python<'py>, r: &Reference) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("key", r.key)?;
    d.set_item("attribute", r.attribute.map(|(name, _)| name))?;
    d.set_item("type", r.attribute.map(|(_, ty)| ty))?;
    d.set_item("default", &r.default)?;
    d.set_item("accepts", &r.accepts)?;
    d.set_item("check_id", r.check_id)?;
    d.set_item("doc", r.doc)?;
    d.set_item("see", r.see)?;
    d.set_item("in_identity", r.in_identity)?;
    d.set_item("identity_note", r.identity_note)?;
    Ok(d)
}

#[pymethods]
impl RouterSettings {
    #[new]
    #[pyo3(signature = (router, databases, probe_databases=None))]
    fn new(
        py: Python<'_>,
        router: &Bound<'_, PyAny>,
        databases: &Bound<'_, PyAny>,
        probe_databases: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassInitializer<RouterSettings>> {
        let probe = probe_databases.map(value);
        let inner = build(&value(router), &value(databases), probe.as_ref())
            .map_err(|e| config_error(py, e))?;
        Ok(PyClassInitializer::from(PyOptions(inner.options.clone()))
            .add_subclass(RouterSettings { inner }))
    }

    /// Every key of `REPLICA_ROUTER`, in the settings table's order: the docs'
    /// reference (`make docs` renders it into docs/settings.md).
    #[staticmethod]
    fn reference<'py>(py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        SETTINGS
            .iter()
            .map(|s| reference_row(py, &s.reference()))
            .collect()
    }

    /// The primary's alias.
    #[getter]
    fn primary(&self) -> &str {
        &self.cluster().nodes[0].database
    }

    /// Replica alias -> read weight, in configured order (a new dict each time).
    #[getter]
    fn replicas<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let primary = &self.cluster().nodes[0].database;
        for n in &self.cluster().nodes[1..] {
            if &n.database != primary && !d.contains(&n.database)? {
                d.set_item(&n.database, n.weight)?;
            }
        }
        Ok(d)
    }

    /// Every alias of the cluster, primary first (each once, multi-host or not).
    #[getter]
    fn aliases<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let mut out: Vec<&str> = Vec::new();
        for n in &self.cluster().nodes {
            if !out.contains(&n.database.as_str()) {
                out.push(&n.database);
            }
        }
        PyTuple::new(py, out)
    }

    /// Per node (primary alias's first node first), the alias it serves: an alias
    /// appears once per host of a multi-host alias.
    #[getter]
    fn node_aliases<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.cluster().nodes.iter().map(|n| n.database.as_str()))
    }

    /// The aliases that list several hosts (libpq's multi-host form).
    #[getter]
    fn multi_host_aliases<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let mut out: Vec<&str> = Vec::new();
        for n in self.cluster().nodes.iter().filter(|n| n.multi_host) {
            if !out.contains(&n.database.as_str()) {
                out.push(&n.database);
            }
        }
        PyTuple::new(py, out)
    }

    /// Each node's connection settings as the prober uses them (primary first): alias
    /// (the node's name: `alias@host:port` for a host of a multi-host alias),
    /// database (the Django alias it serves), role, host, port, name, user, sslmode, sslrootcert, weight, and whether a
    /// password is set (never the password).
    #[getter]
    fn nodes<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.cluster()
            .nodes
            .iter()
            .map(|n| {
                let d = PyDict::new(py);
                d.set_item("alias", &n.alias)?;
                d.set_item("database", &n.database)?;
                d.set_item("role", n.role.as_str())?;
                d.set_item("host", &n.host)?;
                d.set_item("port", n.port)?;
                d.set_item("name", &n.dbname)?;
                d.set_item("user", &n.user)?;
                d.set_item("sslmode", n.sslmode.as_deref())?;
                d.set_item("sslrootcert", n.sslrootcert.as_deref())?;
                d.set_item("weight", n.weight)?;
                d.set_item("password_set", n.password.is_some())?;
                Ok(d)
            })
            .collect()
    }

    /// `REPLICAS` was not set: the replica was taken by the default rule.
    #[getter]
    fn replicas_implicit(&self) -> bool {
        self.inner.replicas_implicit
    }

    fn __repr__(&self) -> String {
        let nodes: Vec<String> = self
            .cluster()
            .nodes
            .iter()
            .map(|n| format!("{}={}:{} (weight {})", n.alias, n.host, n.port, n.weight))
            .collect();
        format!("<RouterSettings {}>", nodes.join(", "))
    }
}
