use super::super::build;
use super::*;

fn s(text: &str) -> Value {
    Value::Str(text.into())
}

fn dict(items: &[(&str, Value)]) -> Value {
    Value::Dict(
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

fn multi(host: &str, port: Value, attrs: Option<&str>) -> Value {
    let mut items = vec![
        ("ENGINE", s("django.db.backends.postgresql")),
        ("HOST", s(host)),
        ("PORT", port),
    ];
    if let Some(a) = attrs {
        items.push(("OPTIONS", dict(&[("target_session_attrs", s(a))])));
    }
    dict(&items)
}

fn layout(default: Value, replica: Value) -> Result<crate::settings::Settings, SettingsError> {
    build(
        &Value::None,
        &dict(&[("default", default), ("replica", replica)]),
        None,
    )
}

#[test]
fn each_host_is_a_node_named_alias_at_host_port() {
    let hosts = "10.0.0.1,10.0.0.2,10.0.0.3";
    let st = layout(
        multi(hosts, s("5432,5433,5434"), Some("read-write")),
        multi(hosts, Value::Int(6432), Some("prefer-standby")),
    )
    .unwrap();
    let n = &st.cluster.nodes;
    let names: Vec<&str> = n.iter().map(|n| n.alias.as_str()).collect();
    assert_eq!(
        names,
        [
            "default@10.0.0.1:5432",
            "default@10.0.0.2:5433",
            "default@10.0.0.3:5434",
            "replica@10.0.0.1:6432",
            "replica@10.0.0.2:6432",
            "replica@10.0.0.3:6432",
        ]
    );
    assert!(n.iter().all(|n| n.multi_host));
    assert_eq!(n[2].database, "default");
    assert_eq!(n[3].database, "replica");
    // The primary alias's other hosts take no weighted reads of their own.
    let weights: Vec<f64> = n.iter().map(|n| n.weight).collect();
    assert_eq!(weights, [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
}

#[test]
fn a_plain_alias_stays_one_node_named_by_its_alias() {
    let st = layout(
        multi("127.0.0.1", s("5432"), None),
        multi("127.0.0.1", s("5433"), Some("standby")),
    )
    .unwrap();
    let n = &st.cluster.nodes;
    assert_eq!((n[0].alias.as_str(), n[0].multi_host), ("default", false));
    assert_eq!((n[1].alias.as_str(), n[1].port), ("replica", 5433));
}

#[test]
fn bad_lists_are_e010_naming_the_key_and_the_value() {
    let ok = || multi("127.0.0.1", s("5432"), None);
    let cases = [
        (multi("a,b,c", s("1,2"), None), "PORT", "'1,2'"),
        (multi("a,b", s("1,x"), None), "PORT", "'1,x'"),
        (multi("a", s("1,2"), None), "PORT", "'1,2'"),
        (multi("a,,b", s("1"), None), "HOST", "'a,,b'"),
        (multi("a,a", s("5432"), None), "HOST", "a:5432 twice"),
        (
            multi("a,b", s("1,2"), Some("writable")),
            "target_session_attrs",
            "'writable'",
        ),
        (
            multi("a,b", s("1,2"), Some("read-write")),
            "target_session_attrs",
            "replica alias",
        ),
    ];
    for (replica, key, value) in cases {
        let e = layout(ok(), replica).unwrap_err();
        assert_eq!(e.family.check_id(), "replica_router.E010", "{}", e.message);
        assert!(e.message.contains(key), "{}", e.message);
        assert!(e.message.contains(value), "{}", e.message);
        assert!(!e.hint.is_empty());
    }
    let e = layout(multi("a,b", s("1,2"), Some("standby")), ok()).unwrap_err();
    assert!(e.message.contains("primary alias"), "{}", e.message);
}

#[test]
fn more_than_64_nodes_counting_every_host_is_refused() {
    let hosts: Vec<String> = (0..33).map(|i| format!("10.0.0.{i}")).collect();
    let hosts = hosts.join(",");
    let e = layout(
        multi(&hosts, s("5432"), Some("read-write")),
        multi(&hosts, s("5432"), Some("prefer-standby")),
    )
    .unwrap_err();
    assert_eq!(e.family.check_id(), "replica_router.E005");
    assert!(e.message.contains("66 nodes"), "{}", e.message);
}
