//! Cluster and node settings, and their validation. No I/O, no Python.

use std::fmt;
use std::time::Duration;

/// The role a node is configured with (what the user said, not what we observe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// How to reach one node, taken from its Django `DATABASES` entry.
#[derive(Clone)]
pub struct NodeConfig {
    /// The node's name: its Django alias, or for a host of a libpq multi-host alias
    /// `alias@host:port` (unique, stable; what status, metrics and logs show).
    pub alias: String,
    /// The Django alias whose connections this node serves (`alias` unless the alias
    /// lists several hosts).
    pub database: String,
    /// One host of a multi-host alias: its role is observed, never "configured".
    pub multi_host: bool,
    pub role: Role,
    /// A host name, an IP address, or a directory holding the Unix socket.
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
    /// Read weight; 0 means the node never takes part in weighted picks.
    pub weight: f64,
    /// libpq-style options from `DATABASES[alias]["OPTIONS"]` that the prober honours.
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
}

// Hand-written so that a password can never reach a log line through `{:?}`.
impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("alias", &self.alias)
            .field("database", &self.database)
            .field("multi_host", &self.multi_host)
            .field("role", &self.role)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("weight", &self.weight)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .finish()
    }
}

impl NodeConfig {
    /// Whether probing `self` and `other` is one and the same probe: everything the
    /// prober connects with (`Prober::new`) is equal. Such nodes (one server listed
    /// by two aliases) share one probe loop and one connection. Host names are
    /// compared as written (no DNS): `localhost` and `127.0.0.1` stay two targets.
    /// A different user, password or database stays separate: another login can see
    /// other things (a refused login, a hidden WAL receiver).
    pub fn same_probe_target(&self, other: &NodeConfig) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.dbname == other.dbname
            && self.user == other.user
            && self.password == other.password
            && self.sslmode == other.sslmode
            && self.sslrootcert == other.sslrootcert
    }
}

/// The nodes grouped by probe target (`NodeConfig::same_probe_target`): one probe
/// loop per group, whose every outcome is applied to all the group's nodes at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeGroups {
    /// Per group, its nodes in ascending order (the first one's settings connect).
    pub members: Vec<Vec<usize>>,
    /// Per node, the index of its group in `members`.
    pub group_of: Vec<usize>,
}

impl ProbeGroups {
    /// Groups `nodes`; groups are ordered by their first node.
    pub fn of(nodes: &[NodeConfig]) -> ProbeGroups {
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut group_of = Vec::with_capacity(nodes.len());
        for (idx, node) in nodes.iter().enumerate() {
            let found = members.iter().position(|m| {
                m.first()
                    .and_then(|&f| nodes.get(f))
                    .is_some_and(|f| f.same_probe_target(node))
            });
            match found {
                Some(g) => {
                    members[g].push(idx);
                    group_of.push(g);
                }
                None => {
                    group_of.push(members.len());
                    members.push(vec![idx]);
                }
            }
        }
        ProbeGroups { members, group_of }
    }

    /// The nodes probed together with node `idx` (`idx` included; empty for a node
    /// that does not exist).
    pub fn with(&self, idx: usize) -> &[usize] {
        self.group_of
            .get(idx)
            .and_then(|&g| self.members.get(g))
            .map_or(&[], Vec::as_slice)
    }
}

/// Everything the core needs to know about one cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Node 0 is the primary; the others are replicas.
    pub nodes: Vec<NodeConfig>,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub fall: u32,
    pub rise: u32,
    pub max_lag_seconds: Option<f64>,
    pub max_lag_bytes: Option<u64>,
    /// While every replica is over a limit, the least-lagged ones keep serving reads
    /// that need no fresh data up to this lag; `None`: such reads go to the primary.
    pub lag_ceiling_seconds: Option<f64>,
    /// The settings' part of the shared-health identity (`shm/key.rs`): every setting
    /// the settings table puts in it, by key and value (built by `settings::build`).
    pub identity: String,
}

impl ClusterConfig {
    /// The window after which a node whose last good probe is older counts as down:
    /// `FALL x PROBE_INTERVAL + PROBE_TIMEOUT`.
    pub fn staleness_window(&self) -> Duration {
        self.probe_interval * self.fall + self.probe_timeout
    }

    /// Whether any lag limit is on: then unknown lag keeps a replica out of reads, and
    /// a standby that stopped replaying or streaming is over the limit.
    pub fn has_lag_limit(&self) -> bool {
        self.max_lag_seconds.is_some() || self.max_lag_bytes.is_some()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn node(alias: &str, role: Role, weight: f64) -> NodeConfig {
        NodeConfig {
            alias: alias.into(),
            database: alias.into(),
            multi_host: false,
            role,
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "postgres".into(),
            user: "postgres".into(),
            password: Some("s3cret".into()),
            weight,
            sslmode: None,
            sslrootcert: None,
        }
    }

    pub fn cluster(weights: &[f64]) -> ClusterConfig {
        let mut nodes = vec![node("default", Role::Primary, weights[0])];
        for (i, w) in weights.iter().enumerate().skip(1) {
            nodes.push(node(&format!("replica{i}"), Role::Replica, *w));
        }
        ClusterConfig {
            nodes,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            fall: 2,
            rise: 2,
            max_lag_seconds: None,
            max_lag_bytes: None,
            lag_ceiling_seconds: None,
            identity: String::new(),
        }
    }

    #[test]
    fn debug_hides_password() {
        let n = node("default", Role::Primary, 1.0);
        let s = format!("{n:?}");
        assert!(!s.contains("s3cret"), "{s}");
    }

    #[test]
    fn staleness_window_is_fall_intervals_plus_timeout() {
        let c = cluster(&[1.0, 1.0]);
        assert_eq!(c.staleness_window(), Duration::from_secs(3));
    }
}

#[cfg(test)]
mod groups_tests;
