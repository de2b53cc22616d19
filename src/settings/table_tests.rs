//! The settings table: every row complete, every default valid, every key in the
//! shared-health identity or saying why not, and a new row validated, defaulted,
//! typed, in the identity and documented with no other edit.

use super::kind::{check_all, Kind, Lit, Setting, Val};
use super::reference::identity;
use super::typed::Typed;
use super::*;

fn s(text: &str) -> Value {
    Value::Str(text.into())
}

fn pg(port: &str) -> Value {
    Value::Dict(vec![
        ("ENGINE".into(), s("django.db.backends.postgresql")),
        ("HOST".into(), s("127.0.0.1")),
        ("PORT".into(), s(port)),
    ])
}

/// `REPLICA_ROUTER` with one key set.
pub(crate) fn with(key: &str, v: Value) -> Vec<(String, Value)> {
    vec![(key.to_string(), v)]
}

/// The settings of the tutorial's two aliases with `router`'s keys.
pub(crate) fn built(router: &[(String, Value)]) -> Settings {
    let dbs = Value::Dict(vec![
        ("default".into(), pg("5432")),
        ("replica".into(), pg("5433")),
    ]);
    match build(&Value::Dict(router.to_vec()), &dbs, None) {
        Ok(settings) => settings,
        Err(e) => panic!("{router:?}: {e:?}"),
    }
}

/// A valid value other than the row's default (a custom kind names its own).
pub(crate) fn another_value(row: &Setting) -> Value {
    match (row.kind, row.default) {
        (Kind::Bool, Lit::Bool(b)) => Value::Bool(!b),
        (Kind::Number { .. }, Lit::Float(f)) => Value::Float(f + 0.5),
        (Kind::Integer { .. }, Lit::Int(i)) => Value::Int(i + 1),
        (Kind::Text, Lit::Str(t)) => s(&format!("{t}_other")),
        _ if row.key == "PATRONI_URLS" => Value::List(vec![s("http://127.0.0.1:8008")]),
        _ => panic!("give {} another valid value here", row.key),
    }
}

/// A value no kind accepts.
fn bad_value() -> Value {
    Value::Other("object()".into())
}

#[test]
fn keys_are_the_rows_each_once() {
    let keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
    assert_eq!(keys, KEYS);
    for (i, k) in keys.iter().enumerate() {
        assert!(!keys[..i].contains(k), "{k} twice");
        assert_eq!(k.to_uppercase(), *k);
    }
}

#[test]
fn every_row_is_complete() {
    for row in SETTINGS {
        let k = row.key;
        assert!(!row.doc.is_empty() && !row.see.is_empty(), "{k}");
        assert!(
            row.see.starts_with('[') && row.see.contains(".md"),
            "{k}: {}",
            row.see
        );
        assert!(!row.accepts().is_empty(), "{k}");
        if row.is_structural() {
            assert_eq!((row.field, row.py_type), ("", ""), "{k}");
        } else {
            // The Python attribute is the key in lower case.
            assert_eq!(row.field, k.to_lowercase(), "{k}");
            assert!(!row.py_type.is_empty(), "{k}");
        }
    }
}

#[test]
fn every_key_is_in_the_identity_or_says_why_not() {
    for row in SETTINGS {
        match row.identity {
            Identity::In => assert!(!row.is_structural(), "{}", row.key),
            Identity::Nodes => assert!(row.is_structural(), "{}", row.key),
            Identity::Out(why) => assert!(why.len() > 10, "{}: {why:?}", row.key),
        }
    }
    // What the prober observes or decides by is in it.
    let text = built(&[]).cluster.identity;
    for key in [
        "PROBE_INTERVAL",
        "PROBE_TIMEOUT",
        "FALL",
        "RISE",
        "MAX_LAG_SECONDS",
        "MAX_LAG_BYTES",
        "LAG_CEILING_SECONDS",
        "PRIMARY_READ_WEIGHT",
        "PATRONI_URLS",
    ] {
        assert!(text.contains(&format!("{key}=")), "{key} not in {text}");
    }
    assert!(!text.contains("COOKIE_NAME"), "{text}");
}

#[test]
fn every_default_is_valid_and_fits_its_field() {
    let values = check_all(SETTINGS, &Value::None, &[("replica".into(), 1.0)]);
    let values = values.unwrap_or_else(|e| panic!("{e:?}"));
    for row in SETTINGS.iter().filter(|s| !s.is_structural()) {
        let v = row.check(&Value::None).unwrap_or_else(|e| panic!("{e:?}"));
        assert_ne!(v, Val::Off, "{}: the default is on", row.key);
    }
    assert!(Options::from_values(&values).is_some());
    let o = built(&[]).options;
    assert_eq!((o.fall, o.cookie_max_age), (2, 300));
    assert_eq!(o.max_lag_bytes, Some(64 * 1024 * 1024));
    assert!(o.patroni_urls.is_empty() && o.share_health && !o.test_replica_reads);
}

#[test]
fn every_row_refuses_a_bad_value_with_its_family_naming_key_and_value() {
    for row in SETTINGS.iter().filter(|s| !s.is_structural()) {
        let router = Value::Dict(with(row.key, bad_value()));
        let e = match row.check(&router) {
            Err(e) => e,
            Ok(v) => panic!("{}: took {v:?}", row.key),
        };
        assert_eq!(e.family, row.family, "{e:?}");
        assert!(
            e.message.contains(row.key) && e.message.contains("object()"),
            "{e:?}"
        );
        // And another valid value is taken as given.
        let other = Value::Dict(with(row.key, another_value(row)));
        assert!(row.check(&other).is_ok(), "{}", row.key);
    }
}

#[test]
fn none_means_the_default_or_off_as_the_row_says() {
    for row in SETTINGS.iter().filter(|s| !s.is_structural()) {
        let v = row.check(&Value::Dict(with(row.key, Value::None)));
        let default = row.check(&Value::None);
        if row.none_is_off {
            assert_eq!(v, Ok(Val::Off), "{}", row.key);
        } else {
            assert_eq!(v, default, "{}", row.key);
        }
    }
}

#[test]
fn the_reference_shows_each_row() {
    let rows: Vec<Reference> = SETTINGS.iter().map(Setting::reference).collect();
    let bytes = rows.iter().find(|r| r.key == "MAX_LAG_BYTES").cloned();
    let bytes = bytes.unwrap_or_else(|| panic!("no MAX_LAG_BYTES"));
    assert_eq!(bytes.default, "67108864");
    assert_eq!(bytes.accepts, "an integer >= 1, or `None` (off)");
    assert_eq!(bytes.check_id, "replica_router.E008");
    assert_eq!(bytes.attribute, Some(("max_lag_bytes", "int | None")));
    let ceiling = rows.iter().find(|r| r.key == "LAG_CEILING_SECONDS");
    let accepts = ceiling.map(|r| r.accepts.as_str()).unwrap_or_default();
    assert!(
        accepts.ends_with("greater than `MAX_LAG_SECONDS`"),
        "{accepts}"
    );
    let primary = rows.first().cloned();
    assert_eq!(
        primary.map(|r| (r.default, r.attribute)),
        Some(("\"default\"".into(), None))
    );
}

mod new_key {
    //! A table of one new row, through the same macro the real table uses.
    use super::super::kind::{Kind, Lit, Setting, Val};
    use super::super::table::define;
    use super::super::typed::Typed;
    use super::super::Family;

    define! {
        structural {}
        options {
            NEW_GRACE_SECONDS: new_grace_seconds: f64 = Setting::new(
                Kind::Number { min: 0.0, min_open: true, max: 60.0, must: "a number > 0 and <= 60" },
                Lit::Float(2.5), Family::Probing,
                "seconds of grace", "[lag](lag.md)",
            );
        }
    }
}

#[test]
fn a_new_key_with_a_default_needs_no_other_edit() {
    use new_key::{Options, KEYS, SETTINGS as NEW};

    assert_eq!(KEYS, ["NEW_GRACE_SECONDS"]);
    // Defaulted, typed, in the identity.
    let values = check_all(NEW, &Value::None, &[]).unwrap_or_else(|e| panic!("{e:?}"));
    let options = Options::from_values(&values);
    assert_eq!(options.map(|o| o.new_grace_seconds), Some(2.5));
    assert_eq!(identity(NEW, &values), "NEW_GRACE_SECONDS=Float(2.5);");
    assert_eq!(NEW[0].field, "new_grace_seconds");
    assert_eq!(NEW[0].py_type, <f64 as Typed>::PY);
    // Validated: its family's id, naming the key and the value.
    let router = Value::Dict(with("NEW_GRACE_SECONDS", Value::Int(90)));
    let e = check_all(NEW, &router, &[]).err();
    let e = e.unwrap_or_else(|| panic!("90 taken"));
    assert_eq!(e.family.check_id(), "replica_router.E007");
    assert_eq!(
        e.message,
        "REPLICA_ROUTER[\"NEW_GRACE_SECONDS\"] must be a number > 0 and <= 60, got 90"
    );
    // Documented.
    let r = NEW[0].reference();
    assert_eq!(
        (r.default.as_str(), r.accepts.as_str()),
        ("2.5", "a number > 0 and <= 60")
    );
    assert_eq!(
        (r.doc, r.see, r.in_identity),
        ("seconds of grace", "[lag](lag.md)", true)
    );
}
