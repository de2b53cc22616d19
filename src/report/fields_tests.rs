use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::config::tests::cluster;
use crate::engine_state::EngineState;
use crate::report::{probed, NodeReport, ProberView};
use crate::step::observe;
use crate::step::tests::{sample_primary, sample_standby};

/// The position of each state in `STATES`: an exhaustive match, so a new state
/// fails to compile until it is listed.
fn state_index(s: State) -> usize {
    match s {
        State::Up => 0,
        State::Down => 1,
        State::Lagging => 2,
        State::Unknown => 3,
        State::Misconfigured => 4,
    }
}

fn role_index(r: Role) -> usize {
    match r {
        Role::Primary => 0,
        Role::Replica => 1,
    }
}

#[test]
fn states_and_roles_list_every_variant_once() {
    for (i, s) in STATES.iter().enumerate() {
        assert_eq!(state_index(*s), i);
    }
    for (i, r) in ROLES.iter().enumerate() {
        assert_eq!(role_index(*r), i);
    }
    assert_eq!(
        Names::States.names(),
        ["up", "down", "lagging", "unknown", "misconfigured"]
    );
}

#[test]
fn names_headings_and_metrics_are_unique_and_known() {
    let names: HashSet<_> = FIELDS.iter().map(|f| f.name).collect();
    assert_eq!(names.len(), FIELDS.len());
    let columns: Vec<_> = FIELDS.iter().filter_map(|f| f.column).collect();
    assert_eq!(columns.len(), columns.iter().collect::<HashSet<_>>().len());
    let mut families = HashSet::new();
    for f in FIELDS {
        let family = match f.metric {
            Metric::None => continue,
            Metric::Gauge(n, ..)
            | Metric::Flag(n, _)
            | Metric::Counter(n, _)
            | Metric::OneHot(n, ..)
            | Metric::PerKey(n, ..)
            | Metric::Info(n, ..) => n,
        };
        assert!(families.insert(family), "{family} twice");
    }
    // Every page column shows at least one field, and every field shown names one.
    for c in PAGE_COLUMNS {
        assert!(
            FIELDS.iter().any(|f| f.page.is_some_and(|p| p.column == c)),
            "{c}"
        );
    }
    for f in FIELDS {
        if let Some(p) = f.page {
            assert!(PAGE_COLUMNS.contains(&p.column), "{}: {}", f.name, p.column);
        }
    }
    // The readiness body is for anonymous-safe keys only: no address, no error text.
    for f in FIELDS.iter().filter(|f| f.ready) {
        assert!(!["host", "port", "last_error", "error_class"].contains(&f.name));
    }
}

/// Whether `v` is a value of the Python type `ty` (as the stub spells it).
fn fits(ty: &str, v: &Value) -> bool {
    let (base, nullable) = match ty.strip_suffix(" | None") {
        Some(b) => (b, true),
        None => (ty, false),
    };
    match v {
        Value::None => nullable,
        Value::Bool(_) => base == "bool",
        Value::Int(_) => base == "int",
        Value::Float(_) => base == "float",
        Value::Text(_) => base == "str",
        Value::Name(n) => match base {
            "State" => Names::States.names().contains(n),
            "Role" => Names::Roles.names().contains(n),
            _ => base == "str",
        },
        Value::Counts(_) => base == "dict[str, int]",
    }
}

fn view(nodes: Vec<crate::node_status::NodeStatus>, now: Instant) -> ProberView {
    ProberView {
        nodes,
        epoch: (SystemTime::now(), now),
        prober_pid: 42,
        shared: true,
        snapshot_age: Some(0.5),
    }
}

#[test]
fn every_value_has_its_declared_type() {
    let cfg = cluster(&[1.0, 2.0]);
    let now = Instant::now();
    let mut st = EngineState::new(&cfg, now);
    let d = Duration::from_millis(2);
    observe(&cfg, &mut st, 0, Ok(sample_primary(5000)), d, now);
    observe(&cfg, &mut st, 1, Ok(sample_standby(4000)), d, now);
    let v = view(st.nodes.clone(), now);
    for (i, st) in st.nodes.iter().enumerate() {
        for p in [None, Some(probed(&cfg, st, &v, now))] {
            let unprobed = p.is_none();
            let r = NodeReport {
                cfg: &cfg,
                idx: i,
                reads_by_reason: vec![("weighted", 3)],
                primary_now: i == 0,
                connected_as: Some("default".into()),
                patroni: (Some("leader".into()), Some("running".into())),
                probed: p,
            };
            for f in FIELDS {
                match f.value(&r) {
                    Some(value) => assert!(fits(f.ty, &value), "{}: {value:?}", f.name),
                    None => assert!(unprobed && !f.required(), "{} absent", f.name),
                }
            }
            if unprobed {
                let state = FIELDS.iter().find(|f| f.name == "state").unwrap();
                assert_eq!(state.value(&r), Some(Value::Name("unknown")));
            }
        }
    }
}
