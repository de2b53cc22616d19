//! `Cluster`'s Patroni parts for Python (`PATRONI_URLS`): the `patroni` entry of
//! `roles()` (each node's `patroni_role` / `patroni_state` in `status()` are
//! entries of the status table, `report::fields`).

use std::time::{Instant, SystemTime};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::roles::Word;

use super::Cluster;

impl Cluster {
    /// `roles()["patroni"]`: `None` without `PATRONI_URLS`.
    pub(super) fn patroni_roles<'py>(
        &self,
        py: Python<'py>,
        word: &Word,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(watch) = &self.shared.patroni else {
            return Ok(None);
        };
        let view = watch.view();
        let d = PyDict::new(py);
        let urls: Vec<&str> = watch.urls.iter().map(|u| u.text.as_str()).collect();
        d.set_item("urls", urls)?;
        d.set_item("url", view.url.clone())?;
        let (now, wall) = (Instant::now(), SystemTime::now());
        let unix = |t: Instant| {
            (wall - now.saturating_duration_since(t))
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        d.set_item("answered_at", view.answered.map(unix))?;
        d.set_item("error", view.error.clone())?;
        d.set_item("word", word.as_str())?;
        d.set_item("leader", view.leader().map(|m| m.name.clone()))?;
        d.set_item("polls", view.polls)?;
        d.set_item("failed_polls", view.failed_polls)?;
        let members = PyList::empty(py);
        for m in &view.members {
            let md = PyDict::new(py);
            md.set_item("name", &m.name)?;
            md.set_item("host", &m.host)?;
            md.set_item("port", m.port)?;
            md.set_item("role", &m.role)?;
            md.set_item("state", &m.state)?;
            md.set_item("timeline", m.timeline)?;
            md.set_item("lag", m.lag)?;
            members.append(md)?;
        }
        d.set_item("members", members)?;
        Ok(Some(d))
    }
}
