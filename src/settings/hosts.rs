//! libpq's multi-host form of an alias's address (`HOST "h1,h2,h3"`, `PORT "p1,p2,p3"`
//! or one `PORT` for every host) and `OPTIONS["target_session_attrs"]`: each host is a
//! node of the cluster; the attribute says which role the alias wants.

use super::{fail, Family, SettingsError, Value, DEFAULT_HOST, DEFAULT_PORT};
use crate::config::Role;

/// libpq's `target_session_attrs` values (PostgreSQL 14+).
pub const SESSION_ATTRS: [&str; 6] = [
    "any",
    "read-write",
    "primary",
    "read-only",
    "standby",
    "prefer-standby",
];
/// The values that ask for the primary (a write alias).
const WRITE_ATTRS: [&str; 2] = ["read-write", "primary"];

const HOST_HINT: &str = "List the hosts as libpq does: HOST \"h1,h2,h3\" with PORT \"p1,p2,p3\" \
                         (one per host) or one PORT for every host.";

/// The `(host, port)` of every host an alias lists, in order (one for a plain alias).
pub fn addresses(alias: &str, db: &Value) -> Result<Vec<(String, u16)>, SettingsError> {
    let host_value = db.get("HOST");
    let port_value = db.get("PORT");
    let shown = |v: Option<&Value>| v.map_or("None".into(), Value::repr);
    let hosts: Vec<String> = match host_value.and_then(Value::text) {
        None => vec![DEFAULT_HOST.to_string()],
        Some(text) => text.split(',').map(|h| h.trim().to_string()).collect(),
    };
    if hosts.iter().any(String::is_empty) {
        return fail(
            Family::Address,
            format!(
                "DATABASES[{alias:?}][\"HOST\"] has an empty host in its list, got {}",
                shown(host_value)
            ),
            HOST_HINT,
        );
    }
    let ports: Vec<u16> = match port_value.and_then(Value::text) {
        None => vec![DEFAULT_PORT],
        Some(text) => {
            let mut out = Vec::new();
            for part in text.split(',') {
                match part.trim().parse::<u16>() {
                    Ok(p) if p > 0 => out.push(p),
                    _ => {
                        let what = if text.contains(',') {
                            "must be port numbers (1-65535) separated by commas"
                        } else {
                            "must be a port number (1-65535)"
                        };
                        return fail(
                            Family::Address,
                            format!(
                                "DATABASES[{alias:?}][\"PORT\"] {what}, got {}",
                                shown(port_value)
                            ),
                            "Give the node's TCP port, e.g. \"5432\" (or one per host of a \
                             multi-host HOST: \"5432,5433\").",
                        );
                    }
                }
            }
            out
        }
    };
    if ports.len() != 1 && ports.len() != hosts.len() {
        return fail(
            Family::Address,
            format!(
                "DATABASES[{alias:?}][\"PORT\"] = {} lists {} ports for the {} host(s) of \
                 HOST = {}",
                shown(port_value),
                ports.len(),
                hosts.len(),
                shown(host_value)
            ),
            HOST_HINT,
        );
    }
    let out: Vec<(String, u16)> = hosts
        .into_iter()
        .enumerate()
        .map(|(i, h)| (h, ports.get(i).copied().unwrap_or(ports[0])))
        .collect();
    for (i, (h, p)) in out.iter().enumerate() {
        if out[..i].iter().any(|(h2, p2)| h2 == h && p2 == p) {
            // Each host is a node named by its address: one server listed twice.
            return fail(
                Family::Address,
                format!(
                    "DATABASES[{alias:?}][\"HOST\"] = {} with PORT = {} lists {h}:{p} twice",
                    shown(host_value),
                    shown(port_value)
                ),
                HOST_HINT,
            );
        }
    }
    Ok(out)
}

/// `OPTIONS["target_session_attrs"]`: a libpq value that fits the alias's role (the
/// primary alias takes writes; a replica alias takes reads).
pub fn check_session_attrs(alias: &str, role: Role, db: &Value) -> Result<(), SettingsError> {
    let Some(v) = db
        .get("OPTIONS")
        .and_then(|o| o.get("target_session_attrs"))
    else {
        return Ok(());
    };
    if *v == Value::None {
        return Ok(());
    }
    let key = format!("DATABASES[{alias:?}][\"OPTIONS\"][\"target_session_attrs\"]");
    let text = match v {
        Value::Str(s) => s.as_str(),
        _ => "",
    };
    if !SESSION_ATTRS.contains(&text) {
        return fail(
            Family::Address,
            format!(
                "{key} must be one of libpq's values ({}), got {}",
                SESSION_ATTRS.join(", "),
                v.repr()
            ),
            "See libpq's target_session_attrs.",
        );
    }
    let wants_writes = WRITE_ATTRS.contains(&text);
    match role {
        Role::Primary if text != "any" && !wants_writes => fail(
            Family::Address,
            format!(
                "{key} = {} asks for a standby, but {alias:?} is the primary alias (it \
                 takes the writes)",
                v.repr()
            ),
            "Use \"read-write\" on the primary alias and \"prefer-standby\" on a replica \
             alias listing the same hosts.",
        ),
        Role::Replica if wants_writes => fail(
            Family::Address,
            format!(
                "{key} = {} asks for the primary, but {alias:?} is a replica alias (it takes \
                 reads; writes go to the primary alias)",
                v.repr()
            ),
            "Use \"prefer-standby\" (or \"standby\") on a replica alias.",
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "hosts_tests.rs"]
mod tests;
