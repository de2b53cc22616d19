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
    pub alias: String,
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
}

/// A setting that cannot work, naming the key and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: String) -> Result<T, ConfigError> {
    Err(ConfigError(msg))
}

/// Parses a timeout or interval in seconds, naming `key` on failure.
pub fn seconds(key: &str, value: f64) -> Result<Duration, ConfigError> {
    if !value.is_finite() || value <= 0.0 || value > 86_400.0 {
        return err(format!(
            "REPLICA_ROUTER[{key:?}] must be a number of seconds > 0 and <= 86400, got {value}"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

impl ClusterConfig {
    /// The window after which a node whose last good probe is older counts as down:
    /// `FALL x PROBE_INTERVAL + PROBE_TIMEOUT`.
    pub fn staleness_window(&self) -> Duration {
        self.probe_interval * self.fall + self.probe_timeout
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let Some(primary) = self.nodes.first() else {
            return err("REPLICA_ROUTER: the cluster has no primary".into());
        };
        if primary.role != Role::Primary {
            return err(format!(
                "REPLICA_ROUTER[\"PRIMARY\"]: node {:?} must come first with role primary",
                primary.alias
            ));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if i > 0 && node.role != Role::Replica {
                return err(format!(
                    "REPLICA_ROUTER: only one primary is allowed, {:?} is a second one",
                    node.alias
                ));
            }
            if node.alias.is_empty() {
                return err("REPLICA_ROUTER: a node has an empty alias".into());
            }
            if self.nodes[..i].iter().any(|n| n.alias == node.alias) {
                return err(format!(
                    "REPLICA_ROUTER: alias {:?} is listed twice",
                    node.alias
                ));
            }
            if !node.weight.is_finite() || node.weight < 0.0 {
                let key = if i == 0 {
                    "REPLICA_ROUTER[\"PRIMARY_READ_WEIGHT\"]".to_string()
                } else {
                    format!("REPLICA_ROUTER[\"REPLICAS\"][{:?}][\"WEIGHT\"]", node.alias)
                };
                return err(format!("{key} must be a number >= 0, got {}", node.weight));
            }
            if node.host.is_empty() {
                return err(format!("DATABASES[{:?}][\"HOST\"] is empty", node.alias));
            }
            if let Some(mode) = &node.sslmode {
                if !matches!(
                    mode.as_str(),
                    "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full"
                ) {
                    return err(format!(
                        "DATABASES[{:?}][\"OPTIONS\"][\"sslmode\"] = {mode:?} is not a libpq \
                         sslmode (disable, allow, prefer, require, verify-ca, verify-full)",
                        node.alias
                    ));
                }
            }
        }
        if self.nodes.iter().all(|n| n.weight == 0.0) {
            return err(
                "REPLICA_ROUTER: every read weight is 0 (PRIMARY_READ_WEIGHT and every replica \
                 WEIGHT); at least one must be > 0"
                    .into(),
            );
        }
        if self.fall == 0 || self.fall > 1000 {
            return err(format!(
                "REPLICA_ROUTER[\"FALL\"] must be an integer from 1 to 1000, got {}",
                self.fall
            ));
        }
        if self.rise == 0 || self.rise > 1000 {
            return err(format!(
                "REPLICA_ROUTER[\"RISE\"] must be an integer from 1 to 1000, got {}",
                self.rise
            ));
        }
        if let Some(s) = self.max_lag_seconds {
            if !s.is_finite() || s <= 0.0 {
                return err(format!(
                    "REPLICA_ROUTER[\"MAX_LAG_SECONDS\"] must be a number > 0 or None, got {s}"
                ));
            }
        }
        if self.max_lag_bytes == Some(0) {
            return err(
                "REPLICA_ROUTER[\"MAX_LAG_BYTES\"] must be an integer > 0 or None, got 0".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn node(alias: &str, role: Role, weight: f64) -> NodeConfig {
        NodeConfig {
            alias: alias.into(),
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
        }
    }

    #[test]
    fn valid_defaults() {
        assert_eq!(cluster(&[1.0, 1.0]).validate(), Ok(()));
        assert_eq!(cluster(&[0.0, 1.0]).validate(), Ok(()));
    }

    #[test]
    fn rejects_negative_weight_naming_the_key() {
        let e = cluster(&[1.0, -1.0]).validate().unwrap_err().0;
        assert!(
            e.contains("[\"REPLICAS\"][\"replica1\"][\"WEIGHT\"]"),
            "{e}"
        );
        assert!(e.contains("-1"), "{e}");
        let e = cluster(&[-2.0, 1.0]).validate().unwrap_err().0;
        assert!(e.contains("PRIMARY_READ_WEIGHT"), "{e}");
    }

    #[test]
    fn rejects_all_zero_weights() {
        let e = cluster(&[0.0, 0.0]).validate().unwrap_err().0;
        assert!(e.contains("every read weight is 0"), "{e}");
    }

    #[test]
    fn rejects_nan_weight_and_bad_fall_rise() {
        assert!(cluster(&[1.0, f64::NAN]).validate().is_err());
        let mut c = cluster(&[1.0, 1.0]);
        c.fall = 0;
        assert!(c.validate().unwrap_err().0.contains("FALL"));
        let mut c = cluster(&[1.0, 1.0]);
        c.rise = 0;
        assert!(c.validate().unwrap_err().0.contains("RISE"));
    }

    #[test]
    fn rejects_duplicate_alias_and_unsupported_sslmode() {
        let mut c = cluster(&[1.0, 1.0]);
        c.nodes[1].alias = "default".into();
        assert!(c.validate().unwrap_err().0.contains("listed twice"));
        let mut c = cluster(&[1.0, 1.0]);
        c.nodes[1].sslmode = Some("verify-everything".into());
        assert!(c.validate().unwrap_err().0.contains("sslmode"));
        c.nodes[1].sslmode = Some("verify-full".into());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn seconds_names_the_key() {
        assert!(seconds("PROBE_INTERVAL", 0.5).is_ok());
        let e = seconds("PROBE_INTERVAL", -1.0).unwrap_err().0;
        assert!(e.contains("PROBE_INTERVAL") && e.contains("-1"), "{e}");
        assert!(seconds("PROBE_TIMEOUT", f64::INFINITY).is_err());
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
