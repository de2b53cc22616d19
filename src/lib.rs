//! django-replica-router's core: node settings, bounded background health probing,
//! per-node health state machines, and lock-free weighted read selection.
//!
//! Pure logic (`config`, `probe`, `health`, `select`, `monitor`) has no Python in it
//! and is tested with `cargo test`; `bindings` is the thin PyO3 layer.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bindings;
pub mod config;
pub mod context;
pub mod health;
pub mod monitor;
pub mod probe;
pub mod select;
pub mod tls;

use pyo3::prelude::*;

#[pymodule]
mod _core {
    #[pymodule_export]
    use crate::bindings::classify_failure;
    #[pymodule_export]
    use crate::bindings::Cluster;
    #[pymodule_export]
    use crate::bindings::ConfigError;
    #[pymodule_export]
    use crate::context::RouteState;

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("REASONS", crate::select::REASON_NAMES.to_vec())?;
        Ok(())
    }
}
