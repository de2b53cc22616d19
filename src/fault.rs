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

    /// The kind named `name` (`as_str`): tests name kinds (Python reports failures,
    /// which the core classifies itself).
    #[cfg(test)]
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
/// node fault (the node, not the query, failed) or for this process's configuration
/// error (`is_config_error`: a wrong password, a missing database or privilege),
/// `None` otherwise. A statement timeout (57014) is the application's own bound and
/// never takes a node out. A configuration error is only ever this process's own (see
/// `Shared::own_error`): another process with other credentials may use the node.
pub(crate) fn classify_passive(sqlstate: Option<&str>, message: &str) -> Option<FaultKind> {
    match sqlstate.map(str::trim).filter(|c| !c.is_empty()) {
        Some(code) => match classify_sqlstate(&SqlState::from_code(code)) {
            k @ (FaultKind::AdminShutdown
            | FaultKind::TooManyConnections
            | FaultKind::Connection
            | FaultKind::Authentication
            | FaultKind::MissingDatabase
            | FaultKind::Permission) => Some(k),
            _ => None,
        },
        None => {
            // No SQLSTATE: the client lost or never had the connection. libpq's connect
            // errors (psycopg's and psycopg2's) carry the server's FATAL message only as
            // text, so a refused login is recognised by its words.
            let m = message.to_ascii_lowercase();
            Some(if let Some(kind) = config_error_in(&m) {
                kind
            } else if m.contains("refused") {
                FaultKind::Refused
            } else if m.contains("timeout") || m.contains("timed out") {
                FaultKind::Timeout
            } else {
                FaultKind::Connection
            })
        }
    }
}

/// The configuration error that a server's FATAL connect message (lowercased) names:
/// PostgreSQL's texts for 28000/28P01, 3D000 and 42501 at login.
fn config_error_in(m: &str) -> Option<FaultKind> {
    const AUTH: [&str; 5] = [
        "authentication failed",
        "no pg_hba.conf entry",
        "no password supplied",
        "is not permitted to log in",
        "password is required",
    ];
    if AUTH.iter().any(|a| m.contains(a)) || (m.contains("role \"") && m.contains("does not exist"))
    {
        Some(FaultKind::Authentication)
    } else if m.contains("database \"") && m.contains("does not exist") {
        Some(FaultKind::MissingDatabase)
    } else if m.contains("permission denied for database") {
        Some(FaultKind::Permission)
    } else {
        None
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
