//! `Cluster.status()` and `_core.status_fields()`: the core's per-node reports
//! (`report`) as Python dicts, key by key from the one table (`report::fields`), and
//! that table itself for the Python layer (metrics, views, `replica_status`).

use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::report::fields::{Field, Metric, Value, FIELDS, PAGE_COLUMNS, ROLES, STATES};
use crate::report::reports;

use super::Cluster;

impl Cluster {
    /// See `status` (the Python method).
    pub(super) fn status_impl<'py>(
        &self,
        py: Python<'py>,
        wait: f64,
    ) -> PyResult<Bound<'py, PyList>> {
        self.prober.ensure_started();
        if wait > 0.0 {
            py.detach(|| self.wait_probed_for(Duration::from_secs_f64(wait.min(3600.0))));
        }
        let view = self.prober.view();
        let out = PyList::empty(py);
        for r in reports(&self.shared, view.as_ref(), Instant::now()) {
            let d = PyDict::new(py);
            for f in FIELDS {
                if let Some(v) = f.value(&r) {
                    set(&d, f.name, v)?;
                }
            }
            out.append(d)?;
        }
        Ok(out)
    }
}

fn set(d: &Bound<'_, PyDict>, key: &str, v: Value) -> PyResult<()> {
    match v {
        Value::None => d.set_item(key, d.py().None()),
        Value::Bool(b) => d.set_item(key, b),
        Value::Int(i) => d.set_item(key, i),
        Value::Float(x) => d.set_item(key, x),
        Value::Text(s) => d.set_item(key, s),
        Value::Name(s) => d.set_item(key, s),
        Value::Counts(counts) => {
            let c = PyDict::new(d.py());
            for (name, n) in counts {
                c.set_item(name, n)?;
            }
            d.set_item(key, c)
        }
    }
}

/// One field's metric as a dict (`None`: not exported).
fn metric<'py>(py: Python<'py>, m: Metric) -> PyResult<Option<Bound<'py, PyDict>>> {
    let d = PyDict::new(py);
    let (kind, name, help) = match m {
        Metric::None => return Ok(None),
        Metric::Gauge(name, help, divisor) => {
            d.set_item("divisor", divisor)?;
            ("gauge", name, help.to_owned())
        }
        Metric::Flag(name, help) => ("flag", name, help.to_owned()),
        Metric::Counter(name, help) => ("counter", name, help.to_owned()),
        Metric::OneHot(name, help, label, names) => {
            let values = names.names();
            d.set_item("label", label)?;
            d.set_item("values", values.clone())?;
            ("onehot", name, help.replace("{values}", &values.join(", ")))
        }
        Metric::PerKey(name, help, label) => {
            d.set_item("label", label)?;
            ("per_key", name, help.to_owned())
        }
        Metric::Info(name, help, label) => {
            d.set_item("label", label)?;
            ("info", name, help.to_owned())
        }
    };
    d.set_item("kind", kind)?;
    d.set_item("name", name)?;
    d.set_item("help", help)?;
    Ok(Some(d))
}

fn field<'py>(py: Python<'py>, f: &Field) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", f.name)?;
    d.set_item("type", f.ty)?;
    d.set_item("doc", f.doc)?;
    d.set_item("required", f.required())?;
    d.set_item("metric", metric(py, f.metric)?)?;
    d.set_item("column", f.column)?;
    let page = match f.page {
        Some(p) => {
            let pd = PyDict::new(py);
            pd.set_item("column", p.column)?;
            pd.set_item("show", p.show)?;
            Some(pd)
        }
        None => None,
    };
    d.set_item("page", page)?;
    d.set_item("ready", f.ready)?;
    Ok(d)
}

/// The keys of a node's status, in order, and how each consumer shows them.
#[pyfunction]
pub fn status_fields(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let out = PyList::empty(py);
    for f in FIELDS {
        out.append(field(py, f)?)?;
    }
    Ok(out)
}

/// Adds the status table's function and the names of states, roles and page columns.
pub(crate) fn add_to(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(status_fields, m)?)?;
    m.add(
        "STATES",
        STATES.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    )?;
    m.add(
        "ROLES",
        ROLES.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
    )?;
    m.add("STATUS_PAGE_COLUMNS", PAGE_COLUMNS.to_vec())?;
    Ok(())
}
