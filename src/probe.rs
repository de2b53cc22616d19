//! One probe of one node: a persistent connection, one status query, an observation.
//!
//! The deadline is not applied here but by the caller (`monitor`), around connect and
//! query together: tokio-postgres bounds only the TCP connect with `connect_timeout`,
//! so the startup/auth exchange with a silent server would otherwise wait forever.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

use crate::config::NodeConfig;
pub(crate) use crate::fault::{classify_sqlstate, Fault, FaultKind};
use crate::tls;

/// What one successful probe saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub in_recovery: bool,
    /// `pg_current_wal_lsn()` on a primary.
    pub current_lsn: Option<u64>,
    pub receive_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
    pub replay_paused: bool,
    /// `pg_stat_wal_receiver.status`; `None` when there is no receiver, `"hidden"`
    /// (`lag::RECEIVER_HIDDEN`) when the probe user may not see it.
    pub receiver_status: Option<String>,
    pub timeline: Option<u32>,
    /// `pg_postmaster_start_time()` in microseconds since the epoch: tells two
    /// connections to one server (through a proxy) from two servers.
    pub started_us: Option<u64>,
    /// `inet_server_addr()` and `inet_server_port()`: the address the server itself
    /// accepted the connection on (`None` over a Unix socket). Through a proxy or
    /// pooler it is the backend's, not the alias's, and it changes when the proxy
    /// sends the connection to another server.
    pub server_addr: Option<String>,
    pub server_port: Option<u16>,
}

impl Sample {
    /// The newest WAL position this node can serve reads at.
    pub fn visible_lsn(&self) -> Option<u64> {
        if self.in_recovery {
            self.replay_lsn
        } else {
            self.current_lsn
        }
    }
}

/// One status query that works on a primary and on a standby. Every value comes back
/// as text (simple query protocol), so no type mapping can fail.
/// The timeline of a primary comes from its current WAL file name (first 8 hex digits),
/// which is current right after promotion, unlike `pg_control_checkpoint()`.
const PROBE_SQL: &str = "SELECT pg_is_in_recovery(), \
 CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END, \
 pg_last_wal_receive_lsn(), \
 pg_last_wal_replay_lsn(), \
 CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END, \
 (SELECT coalesce(status, 'hidden') FROM pg_stat_wal_receiver LIMIT 1), \
 CASE WHEN pg_is_in_recovery() \
   THEN (SELECT received_tli FROM pg_stat_wal_receiver LIMIT 1) \
   ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END, \
 (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint, \
 host(inet_server_addr()), inet_server_port()";

/// Parses PostgreSQL's `X/Y` LSN text.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
        return None;
    }
    Some((hi << 32) | lo)
}

/// Formats an LSN the way PostgreSQL prints it.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Removes every occurrence of `secret` from `text`.
pub fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, "********"),
        _ => text.to_string(),
    }
}

struct Connection {
    client: Client,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    // Aborting the driver task closes the socket at once; waiting for a graceful
    // shutdown is what makes the sync client hang on a silent server.
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A node's prober: its connection settings and its persistent connection.
pub struct Prober {
    config: Config,
    password: Option<String>,
    conn: Option<Connection>,
    /// The TLS connector, or why TLS cannot be set up (reported on every probe).
    tls: Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, String>,
}

impl Prober {
    pub fn new(node: &NodeConfig, timeout: Duration) -> Prober {
        let mut config = Config::new();
        if node.host.starts_with('/') {
            config.host_path(&node.host);
        } else {
            config.host(&node.host);
        }
        config
            .port(node.port)
            .dbname(&node.dbname)
            .user(&node.user)
            .application_name("replica_router probe")
            .connect_timeout(timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(3)
            .tcp_user_timeout(timeout.max(Duration::from_millis(500)) * 2)
            // The server side bound; a silent server ignores it, hence our own deadline.
            .options(format!(
                "-c statement_timeout={}",
                timeout.as_millis().max(1)
            ));
        if let Some(p) = &node.password {
            config.password(p.as_bytes());
        }
        let tls = match tls::for_node(node.sslmode.as_deref(), node.sslrootcert.as_deref()) {
            Ok(t) => {
                config.ssl_mode(t.mode);
                Ok(t.connector)
            }
            Err(e) => Err(e),
        };
        Prober {
            config,
            password: node.password.clone(),
            conn: None,
            tls,
        }
    }

    /// Drops the connection (and its socket) at once.
    pub fn reset(&mut self) {
        self.conn = None;
    }

    pub fn is_connected(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| !c.client.is_closed())
    }

    /// Connects if needed, then runs the status query. On any error the connection is
    /// dropped so that the next probe starts clean.
    pub async fn probe(&mut self) -> Result<Sample, Fault> {
        let result = self.probe_inner().await;
        if result.is_err() {
            self.reset();
        }
        result
    }

    async fn probe_inner(&mut self) -> Result<Sample, Fault> {
        if !self.is_connected() {
            self.conn = None;
            let connector = match &self.tls {
                Ok(c) => c.clone(),
                Err(e) => {
                    return Err(Fault {
                        kind: FaultKind::Tls,
                        message: e.clone(),
                    })
                }
            };
            // The two connectors give different stream types; each spawns its driver.
            let (client, driver) = match connector {
                None => {
                    let (client, connection) = self
                        .config
                        .connect(NoTls)
                        .await
                        .map_err(|e| self.fault(&e))?;
                    (
                        client,
                        tokio::spawn(async move {
                            let _ = connection.await;
                        }),
                    )
                }
                Some(tls) => {
                    let (client, connection) =
                        self.config.connect(tls).await.map_err(|e| self.fault(&e))?;
                    (
                        client,
                        tokio::spawn(async move {
                            let _ = connection.await;
                        }),
                    )
                }
            };
            self.conn = Some(Connection { client, driver });
        }
        let Some(conn) = self.conn.as_ref() else {
            return Err(Fault {
                kind: FaultKind::Connection,
                message: "no connection".into(),
            });
        };
        let messages = conn
            .client
            .simple_query(PROBE_SQL)
            .await
            .map_err(|e| self.fault(&e))?;
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                return parse_row(|i| row.get(i));
            }
        }
        Err(Fault {
            kind: FaultKind::Query,
            message: "the status query returned no row".into(),
        })
    }

    fn fault(&self, e: &tokio_postgres::Error) -> Fault {
        let kind = classify(e);
        Fault {
            kind,
            message: redact(&error_text(e), self.password.as_deref()),
        }
    }
}

fn parse_row<'a>(get: impl Fn(usize) -> Option<&'a str>) -> Result<Sample, Fault> {
    let bad = |what: &str| Fault {
        kind: FaultKind::Query,
        message: format!("unexpected value for {what} in the status query"),
    };
    let in_recovery = match get(0) {
        Some("t") => true,
        Some("f") => false,
        _ => return Err(bad("pg_is_in_recovery()")),
    };
    let lsn = |i: usize, what: &str| -> Result<Option<u64>, Fault> {
        match get(i) {
            None => Ok(None),
            Some(t) => parse_lsn(t).map(Some).ok_or_else(|| bad(what)),
        }
    };
    Ok(Sample {
        in_recovery,
        current_lsn: lsn(1, "pg_current_wal_lsn()")?,
        receive_lsn: lsn(2, "pg_last_wal_receive_lsn()")?,
        replay_lsn: lsn(3, "pg_last_wal_replay_lsn()")?,
        replay_paused: get(4) == Some("t"),
        receiver_status: get(5).map(str::to_string),
        timeline: get(6).and_then(|t| t.parse::<u32>().ok()),
        started_us: get(7).and_then(|t| t.parse::<u64>().ok()),
        server_addr: get(8).map(str::to_string),
        server_port: get(9).and_then(|t| t.parse::<u16>().ok()),
    })
}

/// The error and its causes on one line ("db error: FATAL: ...", "Connection refused").
fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Sorts a client error into the classes DESIGN.md names.
pub fn classify(e: &tokio_postgres::Error) -> FaultKind {
    if let Some(code) = e.code() {
        return classify_sqlstate(code);
    }
    // tokio-postgres keeps its error kinds private; its TLS errors say so.
    if e.to_string().contains("TLS") {
        return FaultKind::Tls;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return FaultKind::Tls;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return FaultKind::Tls;
            }
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => FaultKind::Refused,
                std::io::ErrorKind::TimedOut => FaultKind::Timeout,
                _ => FaultKind::Connection,
            };
        }
        source = s.source();
    }
    FaultKind::Connection
}

#[cfg(test)]
mod tests;
