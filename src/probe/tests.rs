use super::*;
use crate::fault::classify_passive;
use tokio_postgres::error::SqlState;

#[test]
fn lsn_round_trip() {
    assert_eq!(parse_lsn("0/0"), Some(0));
    assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
    assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
    assert_eq!(parse_lsn("garbage"), None);
    assert_eq!(parse_lsn("1/2/3"), None);
    assert_eq!(parse_lsn("100000000/0"), None);
}

#[test]
fn passive_failures_are_node_faults_only_when_the_node_failed() {
    let c = |s: Option<&str>, m: &str| classify_passive(s, m);
    assert_eq!(c(Some("57P01"), ""), Some(FaultKind::AdminShutdown));
    assert_eq!(c(Some("57P03"), ""), Some(FaultKind::AdminShutdown));
    assert_eq!(c(Some("53300"), ""), Some(FaultKind::TooManyConnections));
    assert_eq!(c(Some("08006"), ""), Some(FaultKind::Connection));
    for app in [
        "23505", "23503", "40001", "57014", "42601", "42P01", "22012", "25006",
    ] {
        assert_eq!(c(Some(app), "x"), None, "{app}");
    }
    // A configuration error is this process's own (see `own_error`), never None.
    assert_eq!(c(Some("28P01"), "x"), Some(FaultKind::Authentication));
    assert_eq!(c(Some("28000"), "x"), Some(FaultKind::Authentication));
    assert_eq!(c(Some("3D000"), "x"), Some(FaultKind::MissingDatabase));
    assert_eq!(c(Some("42501"), "x"), Some(FaultKind::Permission));
    // psycopg's connect errors carry no SQLSTATE: the server's words are matched.
    let at = "connection to server at \"127.0.0.1\", port 5433 failed: FATAL:  ";
    for (text, kind) in [
        (
            "password authentication failed for user \"app\"",
            FaultKind::Authentication,
        ),
        (
            "no pg_hba.conf entry for host \"127.0.0.1\"",
            FaultKind::Authentication,
        ),
        ("role \"nobody\" does not exist", FaultKind::Authentication),
        (
            "role \"app\" is not permitted to log in",
            FaultKind::Authentication,
        ),
        (
            "database \"nope\" does not exist",
            FaultKind::MissingDatabase,
        ),
        (
            "permission denied for database \"app\"",
            FaultKind::Permission,
        ),
    ] {
        assert_eq!(c(None, &format!("{at}{text}")), Some(kind), "{text}");
        assert!(kind.is_config_error());
    }
    assert_eq!(
        c(None, "fe_sendauth: no password supplied"),
        Some(FaultKind::Authentication)
    );
    assert_eq!(
        c(
            None,
            "connection to server at \"127.0.0.1\", port 1 failed: Connection refused"
        ),
        Some(FaultKind::Refused)
    );
    assert_eq!(
        c(None, "connection timeout expired"),
        Some(FaultKind::Timeout)
    );
    assert_eq!(
        c(
            None,
            "consuming input failed: server closed the connection unexpectedly"
        ),
        Some(FaultKind::Connection)
    );
}

#[test]
fn fault_kinds_round_trip_by_name() {
    for k in [
        FaultKind::Refused,
        FaultKind::Timeout,
        FaultKind::Tls,
        FaultKind::Query,
    ] {
        assert_eq!(FaultKind::from_name(k.as_str()), Some(k));
    }
    assert_eq!(FaultKind::from_name("nope"), None);
}

#[test]
fn sqlstates_are_classified() {
    assert_eq!(
        classify_sqlstate(&SqlState::ADMIN_SHUTDOWN),
        FaultKind::AdminShutdown
    );
    assert_eq!(
        classify_sqlstate(&SqlState::CANNOT_CONNECT_NOW),
        FaultKind::AdminShutdown
    );
    assert_eq!(
        classify_sqlstate(&SqlState::TOO_MANY_CONNECTIONS),
        FaultKind::TooManyConnections
    );
    assert_eq!(
        classify_sqlstate(&SqlState::INVALID_PASSWORD),
        FaultKind::Authentication
    );
    assert_eq!(
        classify_sqlstate(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        FaultKind::Authentication
    );
    assert_eq!(
        classify_sqlstate(&SqlState::INVALID_CATALOG_NAME),
        FaultKind::MissingDatabase
    );
    assert_eq!(
        classify_sqlstate(&SqlState::QUERY_CANCELED),
        FaultKind::Timeout
    );
    assert_eq!(
        classify_sqlstate(&SqlState::CONNECTION_FAILURE),
        FaultKind::Connection
    );
    assert!(FaultKind::Authentication.is_config_error());
    assert!(!FaultKind::Timeout.is_config_error());
}

#[test]
fn parses_primary_and_standby_rows() {
    let primary = [
        "f",
        "0/3000148",
        "",
        "",
        "f",
        "",
        "1",
        "1764750000000000",
        "127.0.0.1",
        "5433",
    ];
    let get = |i: usize| {
        let v = primary[i];
        (!v.is_empty()).then_some(v)
    };
    let s = parse_row(get).unwrap();
    assert!(!s.in_recovery);
    assert_eq!(s.current_lsn, Some(0x3000148));
    assert_eq!(s.visible_lsn(), Some(0x3000148));
    assert_eq!(s.timeline, Some(1));
    assert_eq!(s.started_us, Some(1_764_750_000_000_000));
    assert_eq!(s.server_addr.as_deref(), Some("127.0.0.1"));
    assert_eq!(s.server_port, Some(5433));

    // Over a Unix socket the server shows no address.
    let standby = [
        "t",
        "",
        "0/3000148",
        "0/3000100",
        "t",
        "streaming",
        "1",
        "",
        "",
        "",
    ];
    let get = |i: usize| {
        let v = standby[i];
        (!v.is_empty()).then_some(v)
    };
    let s = parse_row(get).unwrap();
    assert!(s.in_recovery && s.replay_paused);
    assert_eq!(s.visible_lsn(), Some(0x3000100));
    assert_eq!(s.receiver_status.as_deref(), Some("streaming"));
    assert_eq!((s.server_addr, s.server_port), (None, None));
    assert!(parse_row(|_| Some("x")).is_err());
}

#[test]
fn redacts_password() {
    assert_eq!(
        redact("password=hunter2 failed", Some("hunter2")),
        "password=******** failed"
    );
    assert_eq!(redact("x", None), "x");
    assert_eq!(redact("x", Some("")), "x");
}
