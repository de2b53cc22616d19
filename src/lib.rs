//! django-replica-router's core: node settings, bounded background health probing,
//! per-node health state machines, and lock-free weighted read selection.
//!
//! Three layers, each using only its own and those below (docs/architecture.md,
//! "Layers"; checked by tests/fast/test_rust_layout.py):
//! - pure logic, no PyO3 and no threads, tested with `cargo test`: `config`,
//!   `settings`, `fault`, `probe` and `tls` (one bounded probe), `health`,
//!   `node_status`, `lag`, `roles`, `select`, `clock`, `events`, `engine_state`,
//!   `step`, `own_error`;
//! - the runtime, no PyO3: `shared` (what the bindings and the prober share),
//!   `report` (status), `fork`, `rng`, `monitor` (the prober thread), `shm` (one
//!   prober per host, its health shared through a segment), `lifecycle` (the prober
//!   per process);
//! - the PyO3 layer: `bindings` (the `Cluster` class), `router` (`ReadWriteRouter`'s
//!   native methods), `py_settings` (settings in, `ConfigError` out), `context`
//!   (`RouteState`), `django_conn` (Django's transaction flag), `bindings::hot` (the
//!   read path's per-thread cache).
//!
//! Modules are private: the compiler reports what nothing uses.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod bindings;
mod clock;
mod config;
mod context;
mod django_conn;
mod engine_state;
mod events;
mod fault;
mod fork;
mod health;
mod lag;
mod lifecycle;
mod monitor;
mod node_status;
mod own_error;
mod patroni;
mod probe;
mod py_settings;
mod report;
mod rng;
mod roles;
mod router;
mod select;
mod settings;
mod shared;
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
        crate::bindings::status::add_to(m)?;
        // Class-level defaults; each raised error sets its own.
        let config_error = m.getattr("ConfigError")?;
        config_error.setattr("check_id", "replica_router.E001")?;
        config_error.setattr("hint", "")?;
        Ok(())
    }
}
