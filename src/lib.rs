//! django-replica-router's core: node settings, bounded background health probing,
//! per-node health state machines, and lock-free weighted read selection.
//!
//! Pure logic (`settings`, `config`, `probe`, `health`, `step`, `select`, `report`)
//! has no Python in it and is tested with `cargo test`. The PyO3 layer binds it:
//! `bindings` (the `Cluster` class), `router` (`ReadWriteRouter`'s native methods),
//! `py_settings` (settings in, `ConfigError` out),
//! `context` (`RouteState`), `django_conn` (Django's transaction flag), `hot` (the read
//! path's per-thread cache), with
//! `lifecycle` (the prober per process), `monitor` (its thread), `shm` (one prober
//! per host, its health shared through a segment), `events` and `rng`.
//! Modules are private: the compiler reports what nothing uses.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod bindings;
mod config;
mod context;
mod django_conn;
mod events;
mod fault;
mod health;
mod hot;
mod lag;
mod lifecycle;
mod monitor;
mod own_error;
mod probe;
mod py_settings;
mod report;
mod rng;
mod roles;
mod router;
mod select;
mod settings;
mod shm;
mod step;
mod tls;

use pyo3::prelude::*;

/// The routing counters are a plain load and store, exact because every call holds
/// the GIL: the module needs it (`gil_used`), and says so to free-threaded builds.
#[pymodule(gil_used = true)]
mod _core {
    #[pymodule_export]
    use crate::bindings::classify_failure;
    #[pymodule_export]
    use crate::bindings::Cluster;
    #[pymodule_export]
    use crate::bindings::NoPrimary;
    #[pymodule_export]
    use crate::context::RouteState;
    #[pymodule_export]
    use crate::py_settings::ConfigError;
    #[pymodule_export]
    use crate::py_settings::RouterSettings;
    #[pymodule_export]
    use crate::router::{install_router, uninstall_router};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("REASONS", crate::select::REASON_NAMES.to_vec())?;
        m.add("SETTINGS_KEYS", crate::settings::KEYS.to_vec())?;
        crate::router::add_functions(m)?;
        // Class-level defaults; each raised error sets its own.
        let config_error = m.getattr("ConfigError")?;
        config_error.setattr("check_id", "replica_router.E001")?;
        config_error.setattr("hint", "")?;
        Ok(())
    }
}
