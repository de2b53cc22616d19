//! Why a node failed: the fault kinds, and the rules that sort a failure into them,
//! for probes and for real traffic alike (one place for both).

use tokio_postgres::error::SqlState;

/// Why a probe failed. Node faults count towards `FALL`; configuration errors make the
/// node `misconfigured` at once, because Django cannot use the node either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    Refused,
    Connection,
    Timeout,
    AdminShutdown,
    TooManyConnections,
    Authentication,
    MissingDatabase,
    Permission,
    /// TLS could not be set up or the server's certificate was refused.
    Tls,
    Query,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Refused => "connection_refused",
            FaultKind::Connection => "connection_failure",
            FaultKind::Timeout => "timeout",
            FaultKind::AdminShutdown => "admin_shutdown",
            FaultKind::TooManyConnections => "too_many_connections",
            FaultKind::Authentication => "authentication_failed",
            FaultKind::MissingDatabase => "database_missing",
            FaultKind::Permission => "insufficient_privilege",
            FaultKind::Tls => "tls_failed",
            FaultKind::Query => "probe_query_failed",
        }
    }

    /// The kind named `name` (`as_str`), for faults reported from Python.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    const ALL: [FaultKind; 10] = [
        FaultKind::Refused,
        FaultKind::Connection,
        FaultKind::Timeout,
        FaultKind::AdminShutdown,
        FaultKind::TooManyConnections,
        FaultKind::Authentication,
        FaultKind::MissingDatabase,
        FaultKind::Permission,
        FaultKind::Tls,
        FaultKind::Query,
    ];

    /// A stable number for the shared segment (never 0).
    pub fn code(self) -> u64 {
        Self::ALL
            .iter()
            .position(|&k| k == self)
            .map_or(0, |i| i as u64 + 1)
    }

    pub fn from_code(code: u64) -> Option<FaultKind> {
        let i = usize::try_from(code.checked_sub(1)?).ok()?;
        Self::ALL.get(i).copied()
    }

    /// A configuration error is the user's to fix; retrying will not help.
    pub fn is_config_error(self) -> bool {
        matches!(
            self,
            FaultKind::Authentication
                | FaultKind::MissingDatabase
                | FaultKind::Permission
                | FaultKind::Tls
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub message: String,
}

/// Sorts the failure of a real connection or query made by Django: `Some(kind)` for a
/// node fault (the node, not the query, failed), `None` otherwise. A statement timeout
/// (57014) is the application's own bound, and configuration errors are reported by
/// the prober; neither takes a node out of reads.
pub(crate) fn classify_passive(sqlstate: Option<&str>, message: &str) -> Option<FaultKind> {
    match sqlstate.map(str::trim).filter(|c| !c.is_empty()) {
        Some(code) => match classify_sqlstate(&SqlState::from_code(code)) {
            k @ (FaultKind::AdminShutdown
            | FaultKind::TooManyConnections
            | FaultKind::Connection) => Some(k),
            _ => None,
        },
        None => {
            // No SQLSTATE: the client lost or never had the connection.
            let m = message.to_ascii_lowercase();
            Some(if m.contains("refused") {
                FaultKind::Refused
            } else if m.contains("timeout") || m.contains("timed out") {
                FaultKind::Timeout
            } else {
                FaultKind::Connection
            })
        }
    }
}

pub(crate) fn classify_sqlstate(code: &SqlState) -> FaultKind {
    let c = code.code();
    match c {
        "57P01" | "57P02" | "57P03" => FaultKind::AdminShutdown,
        "53300" => FaultKind::TooManyConnections,
        "57014" => FaultKind::Timeout,
        "3D000" => FaultKind::MissingDatabase,
        "42501" => FaultKind::Permission,
        _ if c.starts_with("28") => FaultKind::Authentication,
        _ if c.starts_with("08") => FaultKind::Connection,
        _ => FaultKind::Query,
    }
}
