//! The one definition of a node's status: every key of `status()`, its Python type,
//! what it means, and how each consumer shows it (a Prometheus family, a column of
//! `replica_status`, a part of the status page, the staff readiness body). The
//! binding builds `status()`'s dicts from `FIELDS`, and Python reads the same table
//! at runtime (`_core.status_fields()`): adding a key is one entry here (plus its
//! line in the stub, which a fast test compares with this table).
//!
//! Also the names the core gives node states and roles, in the order the metrics
//! export them (`STATES`, `ROLES`; Python's `states` re-exports them).

use crate::config::Role;
use crate::health::State;
use crate::probe::format_lsn;

use super::{NodeReport, Probed};

/// Every node state, in the order the metrics export them.
pub(crate) const STATES: [State; 5] = [
    State::Up,
    State::Down,
    State::Lagging,
    State::Unknown,
    State::Misconfigured,
];

/// Every role, configured or observed.
pub(crate) const ROLES: [Role; 2] = [Role::Primary, Role::Replica];

/// The status page's columns, in order; each field shown names one.
pub(crate) const PAGE_COLUMNS: [&str; 10] = [
    "Alias",
    "State",
    "Role (configured / observed)",
    "Weight",
    "Lag",
    "Probe latency",
    "Failures in a row",
    "Reads by reason",
    "Last state change",
    "Last error",
];

/// One key's value, before it becomes a Python object.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(u64),
    Float(f64),
    Text(String),
    Name(&'static str),
    /// A dict of counts (`reads_by_reason`).
    Counts(Vec<(&'static str, u64)>),
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(u64::from(v))
    }
}
impl From<u16> for Value {
    fn from(v: u16) -> Value {
        Value::Int(u64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&'static str> for Value {
    fn from(v: &'static str) -> Value {
        Value::Name(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::None, Into::into)
    }
}

/// Where a key's value comes from, which also says when the key is present.
#[derive(Clone, Copy)]
pub(crate) enum Get {
    /// In every node's dict.
    Always(fn(&NodeReport<'_>) -> Value),
    /// Once the prober started in this process (the stub's `total=False` keys).
    Probed(fn(&Probed<'_>) -> Value),
}

/// The names a one-hot family has a series for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Names {
    States,
    Roles,
}

impl Names {
    pub fn names(self) -> Vec<&'static str> {
        match self {
            Names::States => STATES.iter().map(|s| s.as_str()).collect(),
            Names::Roles => ROLES.iter().map(|r| r.as_str()).collect(),
        }
    }
}

/// How a key is exported to Prometheus (`replica_router_<name>`, labelled `alias`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Metric {
    None,
    /// The value divided by the last number (a unit change; no sample while `None`).
    Gauge(&'static str, &'static str, f64),
    /// 1 when the value is true, else 0.
    Flag(&'static str, &'static str),
    /// A counter of the value.
    Counter(&'static str, &'static str),
    /// One series per name, labelled `label`: 1 for the value, 0 for the others.
    /// `{values}` in the help is the list of names.
    OneHot(&'static str, &'static str, &'static str, Names),
    /// A counter per key of the dict, labelled `label`.
    PerKey(&'static str, &'static str, &'static str),
    /// An info family (always 1) with the value as label `label`.
    Info(&'static str, &'static str, &'static str),
}

/// Where the status page shows a key: a column, and how (a formatter of `views`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Page {
    pub column: &'static str,
    pub show: &'static str,
}

/// One key of a node's status.
#[derive(Clone, Copy)]
pub(crate) struct Field {
    pub name: &'static str,
    /// Its Python type, as the stub's `NodeStatus` spells it.
    pub ty: &'static str,
    pub doc: &'static str,
    pub get: Get,
    pub metric: Metric,
    /// Its column's heading in `replica_status`'s table.
    pub column: Option<&'static str>,
    pub page: Option<Page>,
    /// Staff see it in the readiness view's body (never a host or an error text).
    pub ready: bool,
}

impl Field {
    const fn new(name: &'static str, ty: &'static str, get: Get, doc: &'static str) -> Field {
        Field {
            name,
            ty,
            doc,
            get,
            metric: Metric::None,
            column: None,
            page: None,
            ready: false,
        }
    }
    const fn metric(self, metric: Metric) -> Field {
        Field { metric, ..self }
    }
    const fn column(self, heading: &'static str) -> Field {
        Field {
            column: Some(heading),
            ..self
        }
    }
    const fn page(self, column: &'static str, show: &'static str) -> Field {
        Field {
            page: Some(Page { column, show }),
            ..self
        }
    }
    const fn ready(self) -> Field {
        Field {
            ready: true,
            ..self
        }
    }

    /// The key's value for one node; `None` when the key is absent.
    pub fn value(&self, r: &NodeReport<'_>) -> Option<Value> {
        match self.get {
            Get::Always(get) => Some(get(r)),
            Get::Probed(get) => r.probed.as_ref().map(get),
        }
    }

    /// Whether every node's dict has the key.
    pub fn required(&self) -> bool {
        matches!(self.get, Get::Always(_))
    }
}

use Get::{Always, Probed as P};

/// Every key of a node's status, in `replica_status`'s column order (the page's
/// columns are `PAGE_COLUMNS`; within a column, parts come in this order).
#[rustfmt::skip]
pub(crate) const FIELDS: &[Field] = &[
    Field::new("alias", "str", Always(|r| r.node().alias.clone().into()),
        "The node's name: its Django alias, or `alias@host:port` for a host of a multi-host alias.")
        .column("alias").page("Alias", "text").ready(),
    Field::new("configured_role", "Role", Always(|r| r.node().role.as_str().into()),
        "The role the settings give the node.")
        .column("role").page("Role (configured / observed)", "text").ready()
        .metric(Metric::Info("node", "Configuration of a node: its configured role.", "configured_role")),
    Field::new("observed_role", "Role | None",
        P(|p| p.sample().map(|s| if s.in_recovery { Role::Replica } else { Role::Primary }.as_str()).into()),
        "The role the last probe saw (replica: in recovery); `None` while no probe answered.")
        .column("seen as").page("Role (configured / observed)", "slash").ready()
        .metric(Metric::OneHot("node_observed_role",
            "1 for the role the last probe saw (primary: not in recovery; replica: in recovery), 0 for the other; both 0 while no probe answered.",
            "role", Names::Roles)),
    Field::new("state", "State", Always(|r| r.probed.as_ref().map_or(State::Unknown, Probed::state).as_str().into()),
        "The node's health state (`unknown` until the prober started).")
        .column("state").page("State", "badge").ready()
        .metric(Metric::OneHot("node_state", "1 for the node's current state ({values}), 0 for the others.", "state", Names::States)),
    Field::new("stale", "bool", P(|p| (p.stale && p.own.is_none()).into()),
        "A live state whose last good probe is older than the staleness window.")
        .page("State", "flag"),
    Field::new("weight", "float", Always(|r| r.node().weight.into()), "Configured read weight.")
        .column("weight").page("Weight", "text")
        .metric(Metric::Gauge("node_weight", "Configured read weight of the node.", 1.0)),
    Field::new("lag_bytes", "int | None", P(|p| p.st.lag_bytes.into()), "Replication lag in bytes of WAL.")
        .column("lag B").page("Lag", "bytes").ready()
        .metric(Metric::Gauge("node_lag_bytes", "Replication lag in bytes of WAL (absent while unknown, e.g. primary down).", 1.0)),
    Field::new("lag_seconds", "float | None", P(|p| p.st.lag_seconds.into()), "Replication lag in seconds.")
        .column("lag s").page("Lag", "seconds").ready()
        .metric(Metric::Gauge("node_lag_seconds", "Replication lag in seconds (absent while unknown).", 1.0)),
    Field::new("latency_ms", "float | None", P(|p| p.st.latency.map(|l| l.as_secs_f64() * 1000.0).into()),
        "Latency of the last probe, in milliseconds.")
        .column("probe ms").page("Probe latency", "ms")
        .metric(Metric::Gauge("node_probe_latency_seconds", "Latency of the node's last probe.", 1000.0)),
    Field::new("consecutive_failures", "int", P(|p| p.st.health.fail_streak.into()), "Failed probes in a row.")
        .column("fails").page("Failures in a row", "count")
        .metric(Metric::Gauge("node_consecutive_failures", "Failed probes in a row since the last good one.", 1.0)),
    Field::new("reads_routed", "int", Always(|r| r.reads_by_reason.iter().map(|(_, v)| v).sum::<u64>().into()),
        "Reads routed to the node in this process.")
        .column("reads").page("Reads by reason", "text"),
    Field::new("error_class", "str | None", P(|p| p.error().map(|f| f.kind.as_str()).into()),
        "The kind of the last error (`connection_refused`, `timeout`, ...).")
        .page("Last error", "strong"),
    Field::new("last_error", "str | None", P(|p| p.error().map(|f| f.message.clone()).into()),
        "The last error's text (password redacted).")
        .column("last error").page("Last error", "error"),
    Field::new("lag_reason", "str | None",
        P(|p| if p.stale { Value::None } else { crate::lag::cause(p.cfg, &p.st).into() }),
        "Why a lagging node is out of weighted reads (replay paused, over a limit, ...).")
        .column("why lagging").page("State", "reason").ready(),
    Field::new("host", "str", Always(|r| r.node().host.clone().into()), "The node's host.")
        .page("Alias", "address"),
    Field::new("port", "int", Always(|r| r.node().port.into()), "The node's port."),
    Field::new("reads_by_reason", "dict[str, int]", Always(|r| Value::Counts(r.reads_by_reason.clone())),
        "Reads routed to the node in this process, by reason.")
        .page("Reads by reason", "reasons")
        .metric(Metric::PerKey("reads", "Reads routed to the node, by reason of the decision.", "reason")),
    Field::new("passive_faults", "int", P(|p| p.st.passive_faults.into()),
        "Failures of real connections or queries reported by the database backend.")
        .page("Reads by reason", "note")
        .metric(Metric::Counter("passive_faults", "Faults of the node seen on the request path (passive health).")),
    Field::new("primary_now", "bool", Always(|r| r.primary_now.into()),
        "This node is the primary now (observed, whatever it was configured as).")
        .page("Role (configured / observed)", "badge_up")
        .metric(Metric::Flag("node_primary_now", "1 for the node that is the primary now (observed: writes go to it), else 0.")),
    Field::new("role_mismatch", "bool", P(|p| p.st.role_mismatch.into()),
        "The observed role differs from the configured one (a promoted replica).")
        .page("Role (configured / observed)", "mismatch")
        .metric(Metric::Flag("node_role_mismatch", "1 when the observed role differs from the configured one (a promoted replica).")),
    Field::new("connected_as", "str | None", Always(|r| r.connected_as.clone().into()),
        "The alias whose new connections go to this node now (`None`: none).")
        .page("Role (configured / observed)", "connections"),
    Field::new("patroni_role", "str | None", Always(|r| r.patroni.0.clone().into()),
        "The node's role in Patroni's last answer (`leader`, `replica`, ...; `None` without `PATRONI_URLS`)."),
    Field::new("patroni_state", "str | None", Always(|r| r.patroni.1.clone().into()),
        "The node's state in Patroni's last answer (`running`, `streaming`, ...; `None` without `PATRONI_URLS`)."),
    Field::new("timeline", "int | None", P(|p| p.sample().and_then(|s| s.timeline).into()),
        "The node's timeline."),
    Field::new("replay_paused", "bool | None", P(|p| p.sample().map(|s| s.replay_paused).into()),
        "WAL replay is paused (`pg_wal_replay_pause()`)."),
    Field::new("wal_receiver_status", "str | None", P(|p| p.sample().and_then(|s| s.receiver_status.clone()).into()),
        "`pg_stat_wal_receiver.status` (`hidden`: the probe user may not see it)."),
    Field::new("current_lsn", "str | None", P(|p| p.sample().and_then(|s| s.current_lsn).map(format_lsn).into()),
        "`pg_current_wal_lsn()` on a primary."),
    Field::new("receive_lsn", "str | None", P(|p| p.sample().and_then(|s| s.receive_lsn).map(format_lsn).into()),
        "The last WAL position a standby received."),
    Field::new("replay_lsn", "str | None", P(|p| p.sample().and_then(|s| s.replay_lsn).map(format_lsn).into()),
        "The last WAL position a standby replayed."),
    Field::new("consecutive_successes", "int", P(|p| p.st.health.ok_streak.into()), "Good probes in a row."),
    Field::new("probes", "int", P(|p| p.st.probes.into()), "Probes of the node.")
        .metric(Metric::Counter("node_probes", "Probes of the node in this process.")),
    Field::new("failed_probes", "int", P(|p| p.st.failed_probes.into()), "Failed probes of the node.")
        .metric(Metric::Counter("node_probe_failures", "Failed probes of the node in this process.")),
    Field::new("last_state_change", "float", P(|p| p.unix(p.st.health.last_change).into()),
        "Unix time of the node's last state change.")
        .page("Last state change", "when")
        .metric(Metric::Gauge("node_last_state_change_timestamp_seconds", "Unix time of the node's last state change.", 1.0)),
    Field::new("last_probe", "float | None", P(|p| p.st.last_probe.map(|t| p.unix(t)).into()),
        "Unix time of the node's last probe."),
    Field::new("last_good_probe_age", "float | None",
        P(|p| p.st.health.last_good.map(|t| p.now.saturating_duration_since(t).as_secs_f64()).into()),
        "Seconds since the node last answered a probe.")
        .metric(Metric::Gauge("node_last_good_probe_age_seconds", "Seconds since the node last answered a probe (absent before its first answer).", 1.0)),
    Field::new("server_started", "float | None", P(|p| p.sample().and_then(|s| s.started_us).map(|us| us as f64 / 1e6).into()),
        "Unix time the node's server started (`pg_postmaster_start_time()`): a change is a restart.")
        .metric(Metric::Gauge("node_server_start_timestamp_seconds", "Unix time the node's server started (a change: a restart).", 1.0)),
    Field::new("prober_pid", "int", P(|p| p.prober_pid.into()),
        "The process that probes: this one, or (`shared`) the host's elected worker."),
    Field::new("shared", "bool", P(|p| p.shared.into()),
        "Health is shared between the host's worker processes (`SHARE_HEALTH`)."),
    Field::new("snapshot_age", "float | None", P(|p| p.snapshot_age.into()),
        "Seconds since the prober last published; `None` before its first publish."),
];

#[cfg(test)]
#[path = "fields_tests.rs"]
mod tests;
