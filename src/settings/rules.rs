//! The hand-written rules, in the order a reader checks them: the dict, the aliases and
//! their weights (they need `DATABASES`); every other key is checked by its row of the
//! settings table (`table.rs`), each cross-key rule a row names being here or in
//! `lag.rs`; then the nodes and the cluster as a whole.

use std::time::Duration;

use super::kind::check_all;
use super::reference::identity;
use super::table::{Options, KEYS, SETTINGS};
use super::{fail, key, node, Family, Settings, SettingsError, Value, HINT};
use super::{py_list, MAX_NODES, POSTGRES_ENGINES};
use crate::config::{ClusterConfig, Role};

/// Validates `REPLICA_ROUTER` (`router`, `None` when unset) against `DATABASES`.
/// `probe_databases` are the entries to connect to (captured before a test runner
/// renamed `NAME`); the aliases and engines always come from `databases`.
pub fn build(
    router: &Value,
    databases: &Value,
    probe_databases: Option<&Value>,
) -> Result<Settings, SettingsError> {
    let items: &[(String, Value)] = match router {
        Value::None => &[],
        Value::Dict(items) => items,
        other => {
            return fail(
                Family::UnknownKey,
                format!("REPLICA_ROUTER must be a dict, got {}", other.repr()),
                HINT,
            )
        }
    };
    let unknown: Vec<&str> = items
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !KEYS.contains(k))
        .collect();
    if !unknown.is_empty() {
        return fail(
            Family::UnknownKey,
            format!(
                "REPLICA_ROUTER has unknown key(s) {}; known keys: {}",
                py_list(&unknown),
                py_list(KEYS)
            ),
            "Check the spelling against the settings reference (docs/settings.md).",
        );
    }
    let get = |name: &str| router.get(name).unwrap_or(&Value::None);
    let Value::Dict(dbs) = databases else {
        return fail(Family::Alias, "DATABASES must be a dict".into(), HINT);
    };
    let aliases: Vec<&str> = dbs.iter().map(|(a, _)| a.as_str()).collect();
    let engine = |alias: &str| {
        databases
            .get(alias)
            .and_then(|d| d.get("ENGINE"))
            .and_then(Value::text)
            .unwrap_or_default()
    };
    let is_postgres = |alias: &str| POSTGRES_ENGINES.contains(&engine(alias).as_str());

    let primary = match get("PRIMARY") {
        Value::None => "default".to_string(),
        Value::Str(s) if aliases.contains(&s.as_str()) => s.clone(),
        other => {
            return fail(
                Family::Alias,
                format!(
                    "{} = {} is not an alias in DATABASES (known: {})",
                    key("PRIMARY"),
                    other.repr(),
                    py_list(&aliases)
                ),
                "Name the alias of the primary (the node that takes writes).",
            )
        }
    };
    if !aliases.contains(&primary.as_str()) {
        return fail(
            Family::Alias,
            format!(
                "{} = '{primary}' is not an alias in DATABASES (known: {})",
                key("PRIMARY"),
                py_list(&aliases)
            ),
            "Name the alias of the primary (the node that takes writes).",
        );
    }
    if !is_postgres(&primary) {
        return fail(
            Family::Alias,
            format!(
                "{} = '{primary}': DATABASES['{primary}'][\"ENGINE\"] = '{}' is not PostgreSQL",
                key("PRIMARY"),
                engine(&primary)
            ),
            HINT,
        );
    }

    let (replicas, implicit) = replicas(get("REPLICAS"), &primary, &aliases, &is_postgres)?;
    for (i, (alias, _)) in replicas.iter().enumerate() {
        if replicas[..i].iter().any(|(a, _)| a == alias) {
            return fail(
                Family::Alias,
                format!("{} lists '{alias}' twice", key("REPLICAS")),
                HINT,
            );
        }
        if !aliases.contains(&alias.as_str()) {
            return fail(
                Family::Alias,
                format!(
                    "{} names '{alias}', which is not an alias in DATABASES (known: {})",
                    key("REPLICAS"),
                    py_list(&aliases)
                ),
                "List only aliases of DATABASES that are standbys of the primary.",
            );
        }
        if *alias == primary {
            return fail(
                Family::Alias,
                format!(
                    "{} names the primary '{alias}'; use PRIMARY_READ_WEIGHT",
                    key("REPLICAS")
                ),
                HINT,
            );
        }
        if !is_postgres(alias) {
            return fail(
                Family::Alias,
                format!(
                    "{} names '{alias}', but DATABASES['{alias}'][\"ENGINE\"] = '{}' is not \
                     PostgreSQL",
                    key("REPLICAS"),
                    engine(alias)
                ),
                "Only PostgreSQL standbys can be replicas.",
            );
        }
    }

    if replicas.len() >= MAX_NODES {
        // Node sets are 64-bit masks throughout the core (picks, retries, sharing).
        let (n, most) = (replicas.len(), MAX_NODES - 1);
        let msg = format!(
            "{} lists {n} replicas; at most {most} are supported",
            key("REPLICAS")
        );
        return fail(Family::Alias, msg, HINT);
    }
    // Every other key, by the table: its kind's rule, then any cross-key rule it names.
    let values = check_all(SETTINGS, router, &replicas)?;
    let options = Options::from_values(&values).ok_or_else(|| SettingsError {
        family: Family::Option,
        message: "a setting's value does not fit its field (a defect of the settings table)".into(),
        hint: HINT.into(),
    })?;
    let primary_weight = options.primary_read_weight;

    let entry = |alias: &str| {
        probe_databases
            .and_then(|p| p.get(alias))
            .or_else(|| databases.get(alias))
            .unwrap_or(&Value::None)
    };
    let mut nodes = node(&primary, Role::Primary, entry(&primary), primary_weight)?;
    for (alias, w) in &replicas {
        nodes.extend(node(alias, Role::Replica, entry(alias), *w)?);
    }
    if nodes.len() > MAX_NODES {
        // Each host of a multi-host alias is a node; node sets are 64-bit masks.
        let msg = format!(
            "the cluster has {} nodes (each host of a multi-host alias counts); at most \
             {MAX_NODES} are supported",
            nodes.len()
        );
        return fail(Family::Alias, msg, HINT);
    }
    let seconds = |f: f64| {
        // The table bounds both to (0, 86400]: never out of `Duration`'s range.
        Duration::try_from_secs_f64(f).map_err(|_| SettingsError {
            family: Family::Probing,
            message: format!("{f} is not a duration in seconds"),
            hint: HINT.into(),
        })
    };
    let cluster = ClusterConfig {
        nodes,
        probe_interval: seconds(options.probe_interval)?,
        probe_timeout: seconds(options.probe_timeout)?,
        fall: options.fall,
        rise: options.rise,
        max_lag_seconds: options.max_lag_seconds,
        max_lag_bytes: options.max_lag_bytes,
        lag_ceiling_seconds: options.lag_ceiling_seconds,
        identity: identity(SETTINGS, &values),
    };
    Ok(Settings {
        cluster,
        options,
        replicas_implicit: implicit,
    })
}

/// A weight: a number >= 0 (not a bool); `default` when unset.
fn weight(name: &str, v: &Value, default: f64) -> Result<f64, SettingsError> {
    if *v == Value::None {
        return Ok(default);
    }
    match v.number() {
        Some(f) if f.is_finite() && f >= 0.0 => Ok(f),
        _ => fail(
            Family::Weight,
            format!("{name} must be a number >= 0, got {}", v.repr()),
            HINT,
        ),
    }
}

type Replicas = Vec<(String, f64)>;

/// The replicas and their weights, and whether they were taken by the default rule.
fn replicas(
    v: &Value,
    primary: &str,
    aliases: &[&str],
    is_postgres: &dyn Fn(&str) -> bool,
) -> Result<(Replicas, bool), SettingsError> {
    let mut out: Replicas = Vec::new();
    match v {
        Value::None => {
            // The tutorial's layout needs no configuration; anything more is never
            // guessed (an unrelated database must not become a "replica").
            let others: Vec<&str> = aliases
                .iter()
                .copied()
                .filter(|a| *a != primary && is_postgres(a))
                .collect();
            if others.len() > 1 {
                return Err(SettingsError {
                    family: Family::AmbiguousReplicas,
                    message: format!(
                        "{} is not set and DATABASES has {} PostgreSQL aliases besides the \
                         primary '{primary}': {}; the router will not guess which of \
                         them are standbys of it",
                        key("REPLICAS"),
                        others.len(),
                        py_list(&others)
                    ),
                    // Only asking them tells which are standbys: `checks.py` does.
                    hint: format!(
                        "List the standbys of '{primary}' (aliases whose server is a hot \
                         standby of it) in {}, or \"REPLICAS\": [] for none. Aliases not \
                         listed are left alone by the router.",
                        key("REPLICAS")
                    ),
                });
            }
            return Ok((others.iter().map(|a| (a.to_string(), 1.0)).collect(), true));
        }
        Value::List(items) => {
            for item in items {
                let Value::Str(alias) = item else {
                    return fail(
                        Family::Alias,
                        format!(
                            "{} lists {}, which is not an alias",
                            key("REPLICAS"),
                            item.repr()
                        ),
                        HINT,
                    );
                };
                out.push((alias.clone(), 1.0));
            }
        }
        Value::Dict(items) => {
            for (alias, spec) in items {
                let w = match spec {
                    Value::None => 1.0,
                    Value::Dict(fields) => {
                        let extra: Vec<&str> = fields
                            .iter()
                            .map(|(k, _)| k.as_str())
                            .filter(|k| *k != "WEIGHT")
                            .collect();
                        if !extra.is_empty() {
                            return fail(
                                Family::UnknownKey,
                                format!(
                                    "{}['{alias}'] has unknown key(s) {}; known: ['WEIGHT']",
                                    key("REPLICAS"),
                                    py_list(&extra)
                                ),
                                HINT,
                            );
                        }
                        let name = format!("{}['{alias}'][\"WEIGHT\"]", key("REPLICAS"));
                        weight(&name, spec.get("WEIGHT").unwrap_or(&Value::None), 1.0)?
                    }
                    other => {
                        return fail(
                            Family::Weight,
                            format!(
                                "{}['{alias}'] must be a dict like {{'WEIGHT': 1}}, got {}",
                                key("REPLICAS"),
                                other.repr()
                            ),
                            HINT,
                        )
                    }
                };
                out.push((alias.clone(), w));
            }
        }
        other => {
            return fail(
                Family::Alias,
                format!(
                    "{} must be a dict of alias -> {{'WEIGHT': n}}, a list of aliases, or None; \
                     got {}",
                    key("REPLICAS"),
                    other.repr()
                ),
                HINT,
            )
        }
    }
    Ok((out, false))
}
