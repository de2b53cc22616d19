//! `REPLICA_ROUTER` and the cluster's `DATABASES` entries turned into one validated
//! configuration: every rule about settings lives here, once, and every key is declared
//! once, in the settings table (`settings/table.rs`). No Python: the binding
//! hands over the values as a `Value` tree (with Python's `repr` of each, for
//! messages), and checks, `conf.py` and the router all use what this returns.

use crate::config::{ClusterConfig, NodeConfig, Role};

/// A settings value as Python gave it; `repr` is Python's text of it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Dict(Vec<(String, Value)>),
    /// Anything else (or an int too large), by its repr.
    Other(String),
}

/// A family of settings problem, by the system check id that reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `REPLICA_ROUTER` is not a dict, or has an unknown key.
    UnknownKey,
    /// `REPLICAS` unset with more than one other PostgreSQL alias.
    AmbiguousReplicas,
    /// An alias that is not in `DATABASES`, not PostgreSQL, or listed twice.
    Alias,
    Weight,
    /// `PROBE_INTERVAL`, `PROBE_TIMEOUT`, `FALL`, `RISE`.
    Probing,
    /// `MAX_LAG_SECONDS`, `MAX_LAG_BYTES`, `LAG_CEILING_SECONDS`.
    LagLimit,
    Tls,
    /// A node's `HOST`, `PORT`, `NAME`, `USER`.
    Address,
    /// `PIN_SECONDS`, the cookie and test options.
    Option,
}

impl Family {
    pub fn check_id(self) -> &'static str {
        match self {
            Family::UnknownKey => "replica_router.E001",
            Family::AmbiguousReplicas => "replica_router.E003",
            Family::Alias => "replica_router.E005",
            Family::Weight => "replica_router.E006",
            Family::Probing => "replica_router.E007",
            Family::LagLimit => "replica_router.E008",
            Family::Tls => "replica_router.E009",
            Family::Address => "replica_router.E010",
            Family::Option => "replica_router.E011",
        }
    }
}

/// A setting that cannot work: the message names the key and the value.
#[derive(Clone, Debug, PartialEq)]
pub struct SettingsError {
    pub family: Family,
    pub message: String,
    pub hint: String,
}

fn fail<T>(family: Family, message: String, hint: &str) -> Result<T, SettingsError> {
    Err(SettingsError {
        family,
        message,
        hint: hint.to_string(),
    })
}

/// The validated settings: the cluster (primary first) and every other setting.
#[derive(Clone, Debug)]
pub struct Settings {
    pub cluster: ClusterConfig,
    /// Every key's value but the structural ones (`table.rs`).
    pub options: Options,
    /// `REPLICAS` was not set: the replica was taken by the default rule.
    pub replicas_implicit: bool,
}

/// A cluster's most nodes (the primary and its replicas): node sets are 64-bit masks.
pub const MAX_NODES: usize = 64;

/// Engines whose aliases can be cluster nodes (Python adds the names of backends
/// that subclass Django's PostgreSQL one: `conf.load`).
pub const POSTGRES_ENGINES: [&str; 4] = [
    "django.db.backends.postgresql",
    // The name before Django 1.9, which Django still maps to its PostgreSQL backend.
    "django.db.backends.postgresql_psycopg2",
    "django.contrib.gis.db.backends.postgis",
    "replica_router.backends.postgresql",
];

/// Node defaults, the same as Django's PostgreSQL backend (libpq's socket directory
/// on Debian-like systems, port 5432).
pub const DEFAULT_HOST: &str = "/var/run/postgresql";
pub const DEFAULT_PORT: u16 = 5432;
pub const DEFAULT_NAME: &str = "postgres";
const SSLMODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];
const HINT: &str = "See the settings reference in django-replica-router's docs/settings.md.";

impl Value {
    pub fn repr(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => if *b { "True" } else { "False" }.into(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => py_float(*f),
            Value::Str(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
            Value::List(items) => {
                let inner: Vec<String> = items.iter().map(Value::repr).collect();
                format!("[{}]", inner.join(", "))
            }
            Value::Dict(_) => "{...}".into(),
            Value::Other(r) => r.clone(),
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Text of a `DATABASES` field: `None` and "" are unset; numbers are accepted
    /// (Django allows `PORT: 5432`).
    fn text(&self) -> Option<String> {
        match self {
            Value::None => None,
            Value::Str(s) if s.is_empty() => None,
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            other => Some(other.repr()),
        }
    }
}

fn py_float(f: f64) -> String {
    if f.is_finite() && f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{f}")
    }
}

/// Python's repr of a list of strings.
fn py_list(items: &[&str]) -> String {
    let inner: Vec<String> = items
        .iter()
        .map(|s| Value::Str(s.to_string()).repr())
        .collect();
    format!("[{}]", inner.join(", "))
}

fn key(name: &str) -> String {
    format!("REPLICA_ROUTER[\"{name}\"]")
}

mod custom;
mod hosts;
mod kind;
mod lag;
mod reference;
mod rules;
mod table;
mod typed;
#[cfg(test)]
pub use kind::Identity;
pub use reference::Reference;
pub use rules::build;
pub(crate) use table::with_table;
pub use table::{Options, KEYS, SETTINGS};

#[cfg(test)]
pub(crate) mod table_tests;
#[cfg(test)]
mod tests;

/// The nodes of one alias: one, or one per host of a libpq multi-host alias (named
/// `alias@host:port`). `weight` is each host's read weight; the primary alias's other
/// hosts take no weighted reads of their own (the alias's reads go to its primary).
fn node(
    alias: &str,
    role: Role,
    db: &Value,
    weight: f64,
) -> Result<Vec<NodeConfig>, SettingsError> {
    let field = |name: &str| db.get(name).and_then(Value::text);
    let options = db.get("OPTIONS");
    let option = |name: &str| options.and_then(|o| o.get(name)).and_then(Value::text);
    let hosts = hosts::addresses(alias, db)?;
    hosts::check_session_attrs(alias, role, db)?;
    let sslmode = option("sslmode");
    if let Some(mode) = &sslmode {
        if !SSLMODES.contains(&mode.as_str()) {
            return fail(
                Family::Tls,
                format!(
                    "DATABASES[{alias:?}][\"OPTIONS\"][\"sslmode\"] = {mode:?} is not a libpq \
                     sslmode ({})",
                    SSLMODES.join(", ")
                ),
                "Use one of libpq's sslmode values.",
            );
        }
    }
    let multi_host = hosts.len() > 1;
    Ok(hosts
        .into_iter()
        .enumerate()
        .map(|(i, (host, port))| NodeConfig {
            alias: if multi_host {
                format!("{alias}@{host}:{port}")
            } else {
                alias.to_string()
            },
            database: alias.to_string(),
            multi_host,
            role,
            host,
            port,
            dbname: field("NAME").unwrap_or_else(|| DEFAULT_NAME.to_string()),
            user: field("USER").unwrap_or_default(),
            password: field("PASSWORD"),
            weight: if role == Role::Primary && i > 0 {
                0.0
            } else {
                weight
            },
            sslmode: sslmode.clone(),
            sslrootcert: option("sslrootcert"),
        })
        .collect())
}
