//! The rule: with `PATRONI_URLS`, a node takes writes only while PostgreSQL says it is
//! the primary AND Patroni calls it leader. Pure: no I/O, no clock reads.
//!
//! - Patroni answered within the staleness window (`FALL x PROBE_INTERVAL +
//!   PROBE_TIMEOUT`, as for a node's health) and its leader is the node PostgreSQL
//!   says is primary (or the same host:port through another alias): writes go there.
//! - Its leader is another node, or it names none: no writer (writes wait, as in a
//!   gap, until both agree or `PRIMARY_WAIT_TIMEOUT` runs out).
//! - Its leader is none of the configured nodes (the aliases name servers by another
//!   address than Patroni's `connect_address`, or point at a proxy): Patroni's word
//!   cannot be applied; roles come from PostgreSQL alone, and it is logged.
//! - Patroni did not answer within the window (or not yet): PostgreSQL alone.

use std::time::Instant;

use crate::config::{ClusterConfig, NodeConfig};
use crate::roles::{Roles, Writer};

use crate::patroni::{Member, View};

/// What Patroni's view did to the roles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Word {
    /// `PATRONI_URLS` is not set.
    #[default]
    Off,
    /// Patroni did not answer within the window (or not yet): PostgreSQL alone.
    NoAnswer,
    /// Patroni's leader is PostgreSQL's primary, or there is no primary to check.
    Agrees,
    /// PostgreSQL's primary (the node) is not Patroni's leader (its member name, if
    /// Patroni names one): writes wait.
    Holds {
        primary: usize,
        leader: Option<String>,
    },
    /// Patroni's leader (member name, host:port) is none of the configured nodes.
    Unmatched { leader: String, address: String },
}

impl Word {
    pub fn as_str(&self) -> &'static str {
        match self {
            Word::Off => "off",
            Word::NoAnswer => "no_answer",
            Word::Agrees => "agrees",
            Word::Holds { .. } => "holds_writes",
            Word::Unmatched { .. } => "leader_not_configured",
        }
    }
}

/// A host as an address to compare: case and a trailing dot do not matter, and the
/// loopback names (`localhost`, `127.0.0.1`, `::1`) are one.
pub fn normal_host(host: &str) -> String {
    let h = host
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match h.as_str() {
        "localhost" | "127.0.0.1" | "::1" | "0:0:0:0:0:0:0:1" => "loopback".into(),
        _ => h,
    }
}

/// Whether `member` is the server of `node` (same host and port).
pub fn is_node(member: &Member, node: &NodeConfig) -> bool {
    member.port == Some(node.port) && normal_host(&member.host) == normal_host(&node.host)
}

/// The member of `view` that is node `node`, if one.
pub fn member_of<'v>(view: &'v View, node: &NodeConfig) -> Option<&'v Member> {
    view.members.iter().find(|m| is_node(m, node))
}

/// The roles PostgreSQL showed (`observe_roles`), with Patroni's word applied; `view`
/// is `None` without `PATRONI_URLS`.
pub fn gate(cfg: &ClusterConfig, mut roles: Roles, view: Option<&View>, now: Instant) -> Roles {
    let Some(view) = view else {
        roles.patroni = Word::Off;
        return roles;
    };
    if !view.fresh(now, cfg.staleness_window()) {
        roles.patroni = Word::NoAnswer;
        return roles;
    }
    let Writer::Known(primary) = roles.writer else {
        // No primary (or two): writes wait or are refused already.
        roles.patroni = Word::Agrees;
        return roles;
    };
    let leader = view.leader();
    if let Some(m) = leader {
        if !cfg.nodes.iter().any(|n| is_node(m, n)) {
            roles.patroni = Word::Unmatched {
                leader: m.name.clone(),
                address: format!(
                    "{}:{}",
                    m.host,
                    m.port.map_or("?".into(), |p| p.to_string())
                ),
            };
            return roles;
        }
        if cfg.nodes.get(primary).is_some_and(|n| is_node(m, n)) {
            roles.patroni = Word::Agrees;
            return roles;
        }
    }
    roles.patroni = Word::Holds {
        primary,
        leader: leader.map(|m| m.name.clone()),
    };
    roles.writer = Writer::Unknown;
    // As in any gap: every alias on its configured node.
    roles.targets = (0..roles.targets.len()).collect();
    roles
}
