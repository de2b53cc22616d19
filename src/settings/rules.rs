//! The rules, in the order a reader checks them: the dict, the aliases, the weights,
//! probing, lag limits, the Python-side options; then the cluster as a whole.

use super::{fail, integer, key, node, seconds, Family, Settings, SettingsError, Value, HINT};
use super::{py_list, KEYS, MAX_NODES, POSTGRES_ENGINES};
use crate::config::{ClusterConfig, Role};

mod roles;

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
                py_list(&KEYS)
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
    let primary_weight = weight(&key("PRIMARY_READ_WEIGHT"), get("PRIMARY_READ_WEIGHT"), 1.0)?;
    if primary_weight == 0.0 && replicas.iter().all(|(_, w)| *w == 0.0) {
        return fail(
            Family::Weight,
            format!(
                "{} and every replica WEIGHT are 0: no node could take reads; give at least \
                 one a weight > 0",
                key("PRIMARY_READ_WEIGHT")
            ),
            HINT,
        );
    }
    let or = |name: &str, default: Value| match get(name) {
        Value::None => default,
        v => v.clone(),
    };
    let probe_interval = seconds("PROBE_INTERVAL", &or("PROBE_INTERVAL", Value::Float(1.0)))?;
    let probe_timeout = seconds("PROBE_TIMEOUT", &or("PROBE_TIMEOUT", Value::Float(1.0)))?;
    let fall = integer(Family::Probing, "FALL", &or("FALL", Value::Int(2)), 1, 1000)? as u32;
    let rise = integer(Family::Probing, "RISE", &or("RISE", Value::Int(2)), 1, 1000)? as u32;
    let lag = super::lag::lag_limits(router)?;
    let pin = or("PIN_SECONDS", Value::Float(5.0));
    let pin_seconds = match pin.number() {
        Some(f) if f.is_finite() && (0.0..=86_400.0).contains(&f) => f,
        _ => {
            return fail(
                Family::Option,
                format!(
                    "{} must be a number >= 0, got {}",
                    key("PIN_SECONDS"),
                    pin.repr()
                ),
                HINT,
            )
        }
    };
    let cookie_name = match or("COOKIE_NAME", Value::Str("replica_router_lsn".into())) {
        Value::Str(s) if !s.is_empty() => s,
        v => {
            return fail(
                Family::Option,
                format!(
                    "{} must be a non-empty string, got {}",
                    key("COOKIE_NAME"),
                    v.repr()
                ),
                HINT,
            )
        }
    };
    let cookie_max_age = integer(
        Family::Option,
        "COOKIE_MAX_AGE",
        &or("COOKIE_MAX_AGE", Value::Int(300)),
        1,
        i64::MAX,
    )? as u64;
    let flag = |name: &str, default: bool| match or(name, Value::Bool(default)) {
        Value::Bool(b) => Ok(b),
        v => fail(
            Family::Option,
            format!("{} must be True or False, got {}", key(name), v.repr()),
            HINT,
        ),
    };
    let test_mirror = flag("TEST_MIRROR", true)?;
    let test_replica_reads = flag("TEST_REPLICA_READS", false)?;
    let share_health = flag("SHARE_HEALTH", true)?;
    let primary_wait_timeout = roles::primary_wait_timeout(&or(
        "PRIMARY_WAIT_TIMEOUT",
        Value::Float(roles::DEFAULT_PRIMARY_WAIT),
    ))?;
    let patroni_urls = roles::patroni_urls(get("PATRONI_URLS"))?;

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
    let cluster = ClusterConfig {
        nodes,
        probe_interval,
        probe_timeout,
        fall,
        rise,
        max_lag_seconds: lag.max_lag_seconds,
        max_lag_bytes: lag.max_lag_bytes,
        lag_ceiling_seconds: lag.lag_ceiling_seconds,
    };
    Ok(Settings {
        cluster,
        pin_seconds,
        cookie_name,
        cookie_max_age,
        test_mirror,
        test_replica_reads,
        share_health,
        replicas_implicit: implicit,
        primary_wait_timeout,
        patroni_urls,
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
