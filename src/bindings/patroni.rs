//! `Cluster`'s Patroni parts for Python (`PATRONI_URLS`): the `patroni` entry of
//! `roles()` and each node's `patroni_role` / `patroni_state` in `status()`.

use std::time::{Instant, SystemTime};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::patroni::rule::member_of;
use crate::patroni::Word;

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

    /// `(patroni_role, patroni_state)` of node `i`: its member in Patroni's last
    /// answer, matched by host:port (`None`s without `PATRONI_URLS` or a match).
    pub(super) fn patroni_member(&self, i: usize) -> (Option<String>, Option<String>) {
        let (Some(view), Some(node)) =
            (self.shared.patroni_view(), self.shared.config.nodes.get(i))
        else {
            return (None, None);
        };
        member_of(&view, node).map_or((None, None), |m| {
            (Some(m.role.clone()), Some(m.state.clone()))
        })
    }
}
