use std::time::Duration;

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

fn pg(port: &str) -> Value {
    dict(&[
        ("ENGINE", s("django.db.backends.postgresql")),
        ("HOST", s("127.0.0.1")),
        ("PORT", s(port)),
        ("NAME", s("app")),
        ("USER", s("app")),
        ("PASSWORD", s("s3cret")),
    ])
}

fn tutorial() -> Value {
    dict(&[("default", pg("5432")), ("replica", pg("5433"))])
}

fn err(router: Value, dbs: Value) -> SettingsError {
    build(&router, &dbs, None).unwrap_err()
}

#[test]
fn tutorial_needs_no_settings() {
    let st = build(&Value::None, &tutorial(), None).unwrap();
    let c = &st.cluster;
    assert_eq!(c.nodes.len(), 2);
    assert_eq!(
        (c.nodes[0].alias.as_str(), c.nodes[0].weight),
        ("default", 1.0)
    );
    assert_eq!(
        (c.nodes[1].alias.as_str(), c.nodes[1].port),
        ("replica", 5433)
    );
    assert!(st.replicas_implicit);
    assert_eq!(c.probe_interval, Duration::from_secs(1));
    assert_eq!((c.fall, c.rise), (2, 2));
    assert_eq!(st.options.cookie_name, "replica_router_lsn");
}

#[test]
fn node_defaults_live_here() {
    let dbs = dict(&[(
        "default",
        dict(&[("ENGINE", s("replica_router.backends.postgresql"))]),
    )]);
    let st = build(&Value::None, &dbs, None).unwrap();
    let n = &st.cluster.nodes[0];
    assert_eq!((n.host.as_str(), n.port), (DEFAULT_HOST, DEFAULT_PORT));
    assert_eq!(n.dbname, DEFAULT_NAME);
    assert_eq!(n.password, None);
}

#[test]
fn each_family_has_its_id_and_names_key_and_value() {
    let cases: Vec<(Value, Family, &str, &str)> = vec![
        (
            dict(&[("FALL", Value::Int(5000))]),
            Family::Probing,
            "FALL",
            "5000",
        ),
        (
            dict(&[("PROBE_INTERVAL", Value::Float(1e6))]),
            Family::Probing,
            "PROBE_INTERVAL",
            "1000000.0",
        ),
        (dict(&[("RISE", s("2"))]), Family::Probing, "RISE", "'2'"),
        (
            dict(&[("NOPE", Value::Int(1))]),
            Family::UnknownKey,
            "NOPE",
            "'NOPE'",
        ),
        (
            dict(&[("PRIMARY", s("x"))]),
            Family::Alias,
            "PRIMARY",
            "'x'",
        ),
        (
            dict(&[("PRIMARY_READ_WEIGHT", Value::Bool(true))]),
            Family::Weight,
            "PRIMARY_READ_WEIGHT",
            "True",
        ),
        (
            dict(&[("MAX_LAG_BYTES", Value::Int(0))]),
            Family::LagLimit,
            "MAX_LAG_BYTES",
            "0",
        ),
        (
            dict(&[("MAX_LAG_SECONDS", Value::Float(-1.0))]),
            Family::LagLimit,
            "MAX_LAG_SECONDS",
            "-1.0",
        ),
        (
            dict(&[("TEST_MIRROR", s("yes"))]),
            Family::Option,
            "TEST_MIRROR",
            "'yes'",
        ),
        (
            dict(&[("SHARE_HEALTH", Value::Int(1))]),
            Family::Option,
            "SHARE_HEALTH",
            "1",
        ),
    ];
    for (router, family, key, value) in cases {
        let e = err(router, tutorial());
        assert_eq!(e.family, family, "{e:?}");
        assert!(
            e.message.contains(key) && e.message.contains(value),
            "{e:?}"
        );
        assert!(!e.hint.is_empty());
    }
}

#[test]
fn node_addresses_and_tls_are_checked() {
    let mut bad_port = tutorial();
    if let Value::Dict(items) = &mut bad_port {
        items[1].1 = dict(&[
            ("ENGINE", s("django.db.backends.postgresql")),
            ("PORT", s("fivefour")),
        ]);
    }
    let e = err(Value::None, bad_port);
    assert_eq!(e.family, Family::Address);
    assert!(
        e.message.contains("PORT") && e.message.contains("'fivefour'"),
        "{e:?}"
    );
    let mut bad_tls = tutorial();
    if let Value::Dict(items) = &mut bad_tls {
        items[1].1 = dict(&[
            ("ENGINE", s("django.db.backends.postgresql")),
            ("OPTIONS", dict(&[("sslmode", s("verify-everything"))])),
        ]);
    }
    let e = err(Value::None, bad_tls);
    assert_eq!(e.family, Family::Tls);
    assert!(e.message.contains("verify-everything"), "{e:?}");
}

#[test]
fn two_other_postgres_aliases_are_never_guessed() {
    let dbs = dict(&[
        ("default", pg("1")),
        ("replica", pg("2")),
        ("other", pg("3")),
        (
            "cache",
            dict(&[("ENGINE", s("django.db.backends.sqlite3"))]),
        ),
    ]);
    let e = err(Value::None, dbs.clone());
    assert_eq!(e.family, Family::AmbiguousReplicas);
    assert!(
        e.message.contains("'replica'") && e.message.contains("'other'"),
        "{e:?}"
    );
    assert!(!e.message.contains("cache"));
    let listed = build(
        &dict(&[("REPLICAS", Value::List(vec![s("replica")]))]),
        &dbs,
        None,
    );
    assert!(!listed.unwrap().replicas_implicit);
    let none = build(&dict(&[("REPLICAS", Value::List(vec![]))]), &dbs, None).unwrap();
    assert_eq!(none.cluster.nodes.len(), 1);
}

#[test]
fn messages_never_show_a_password() {
    let mut dbs = tutorial();
    if let Value::Dict(items) = &mut dbs {
        items[1].1 = dict(&[
            ("ENGINE", s("django.db.backends.postgresql")),
            ("PASSWORD", s("hunter2")),
            ("PORT", s("x")),
        ]);
    }
    let e = err(Value::None, dbs);
    assert!(!e.message.contains("hunter2") && !e.hint.contains("hunter2"));
}

#[test]
fn probe_databases_give_the_connection_the_aliases_stay() {
    let probe = dict(&[("default", pg("7000")), ("replica", pg("7001"))]);
    let st = build(&Value::None, &tutorial(), Some(&probe)).unwrap();
    assert_eq!(st.cluster.nodes[1].port, 7001);
}

#[test]
fn python_reprs() {
    assert_eq!(s("it's").repr(), "'it\\'s'");
    assert_eq!(Value::Float(2.0).repr(), "2.0");
    assert_eq!(Value::Float(0.25).repr(), "0.25");
    assert_eq!(Value::List(vec![s("a")]).repr(), "['a']");
}

#[test]
fn lag_limits_are_on_by_default_and_none_turns_each_off() {
    let c = build(&Value::None, &tutorial(), None).unwrap().cluster;
    assert_eq!(c.max_lag_seconds, Some(5.0));
    assert_eq!(c.max_lag_bytes, Some(64 * 1024 * 1024));
    assert_eq!(c.lag_ceiling_seconds, Some(10.0));
    let off = dict(&[
        ("MAX_LAG_SECONDS", Value::None),
        ("MAX_LAG_BYTES", Value::None),
        ("LAG_CEILING_SECONDS", Value::None),
    ]);
    let c = build(&off, &tutorial(), None).unwrap().cluster;
    assert_eq!(
        (c.max_lag_seconds, c.max_lag_bytes, c.lag_ceiling_seconds),
        (None, None, None)
    );
    assert!(!c.has_lag_limit());
}

#[test]
fn the_ceiling_must_be_above_the_seconds_limit() {
    let e = err(dict(&[("LAG_CEILING_SECONDS", Value::Int(5))]), tutorial());
    assert_eq!(e.family.check_id(), "replica_router.E008");
    assert!(
        e.message
            .contains("LAG_CEILING_SECONDS\"] = 5 must be greater than")
            && e.message.contains("MAX_LAG_SECONDS\"] = 5.0 (default)"),
        "{}",
        e.message
    );
    let e = err(
        dict(&[("LAG_CEILING_SECONDS", Value::Str("soon".into()))]),
        tutorial(),
    );
    assert!(e.message.contains("'soon'"), "{}", e.message);
    // With the seconds limit off, any ceiling is fine.
    let ok = dict(&[
        ("MAX_LAG_SECONDS", Value::None),
        ("LAG_CEILING_SECONDS", Value::Int(5)),
    ]);
    assert!(build(&ok, &tutorial(), None).is_ok());
}
