use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fetch::{cluster, members, response_body};
use super::*;
use crate::config::tests::cluster as config;
use crate::config::ClusterConfig;
use crate::engine_state::EngineState;
use crate::events::Event;
use crate::roles::patroni::{gate, is_node, normal_host, Word};
use crate::roles::{observe_roles, Writer};
use crate::step::tests::{sample_primary, sample_standby};
use crate::step::{build_snapshot_ha, observe};

/// Patroni 4.1's `/cluster` on the bed (trimmed), node3's lag "unknown".
const CLUSTER: &str = r#"{"members": [
 {"name": "node1", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:8008/patroni",
  "host": "127.0.0.1", "port": 5432, "timeline": 1},
 {"name": "node2", "role": "replica", "state": "streaming", "host": "localhost", "port": 5433,
  "timeline": 1, "receive_lag": 0, "lag": 0, "lsn": "0/4000000", "tags": {"nofailover": false}},
 {"name": "node3", "role": "replica", "state": "starting", "host": "127.0.0.1", "port": 5434,
  "lag": "unknown"}], "scope": "rr"}"#;

fn member(name: &str, role: &str, port: u16) -> Member {
    Member {
        name: name.into(),
        host: "127.0.0.1".into(),
        port: Some(port),
        role: role.into(),
        state: "running".into(),
        timeline: Some(1),
        lag: None,
    }
}

/// `n` nodes on 127.0.0.1:5432, :5433, ...
fn nodes(n: usize) -> ClusterConfig {
    let mut cfg = config(&vec![1.0; n]);
    for (i, node) in cfg.nodes.iter_mut().enumerate() {
        node.port = 5432 + i as u16;
    }
    cfg
}

/// Patroni's view at `now` with `leader` (a port) leading, the others replicas.
fn view(leader: Option<u16>, now: Instant) -> View {
    View {
        members: (0..3)
            .map(|i| {
                let port = 5432 + i;
                let role = if Some(port) == leader {
                    "leader"
                } else {
                    "replica"
                };
                member(&format!("node{}", i + 1), role, port)
            })
            .collect(),
        url: Some("http://127.0.0.1:8008".into()),
        answered: Some(now),
        ..View::default()
    }
}

fn engine(cfg: &ClusterConfig, samples: &[crate::probe::Sample], ha: Option<View>) -> EngineState {
    let now = Instant::now();
    let mut st = EngineState::new(cfg, now);
    st.patroni = ha.map(Arc::new);
    for (i, s) in samples.iter().enumerate() {
        observe(cfg, &mut st, i, Ok(s.clone()), Duration::ZERO, now);
    }
    st
}

fn promoted(tl: u32) -> crate::probe::Sample {
    crate::probe::Sample {
        timeline: Some(tl),
        started_us: Some(u64::from(tl) * 10),
        ..sample_primary(100)
    }
}

#[test]
fn urls_parse_to_host_port_and_path() {
    let u = Url::parse("http://10.0.0.1:8008/").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.path.as_str()),
        ("10.0.0.1", 8008, "")
    );
    assert_eq!(u.text, "http://10.0.0.1:8008");
    assert_eq!(u.target("/cluster"), "/cluster");
    let u = Url::parse("http://patroni.example/api").unwrap();
    assert_eq!(
        (u.port, u.target("/cluster").as_str()),
        (80, "/api/cluster")
    );
    let u = Url::parse("http://[::1]:8008").unwrap();
    assert_eq!(
        (u.host.as_str(), u.host_header().as_str()),
        ("::1", "[::1]:8008")
    );
}

#[test]
fn bad_urls_say_what_is_wrong() {
    for (text, why) in [
        ("https://10.0.0.1:8008", "https:// is not supported"),
        ("10.0.0.1:8008", "http://"),
        ("http://", "host"),
        ("http://:8008", "host"),
        ("http://u:secret@10.0.0.1:8008", "credentials"),
        ("http://10.0.0.1:80x8", "not a port"),
        ("http://10.0.0.1:0", "not a port"),
        ("http://10.0.0.1:8008/?x=1", "query"),
        ("http://10.0.0.1 :8008", "white space"),
    ] {
        let e = Url::parse(text).unwrap_err();
        assert!(e.contains(why), "{text}: {e}");
        assert!(!e.contains("secret"), "{e}");
    }
}

#[test]
fn members_come_from_the_cluster_answer() {
    let m = members(CLUSTER.as_bytes()).unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(
        m[0],
        Member {
            lag: None,
            ..member("node1", "leader", 5432)
        }
    );
    assert!(m[0].is_leader() && !m[1].is_leader());
    assert_eq!(
        (m[1].host.as_str(), m[1].lag, m[1].state.as_str()),
        ("localhost", Some(0), "streaming")
    );
    assert_eq!((m[2].lag, m[2].timeline), (None, None));
    assert!(members(b"<html>").unwrap_err().contains("not JSON"));
    assert!(members(b"{\"scope\": \"rr\"}")
        .unwrap_err()
        .contains("members"));
}

#[test]
fn http_answers_are_read_by_length_or_chunks_and_only_200_counts() {
    let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n{}xx";
    assert_eq!(response_body(ok).unwrap(), b"{}xx");
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n3;x\r\na\":\r\n2\r\n1}\r\n0\r\n\r\n";
    assert_eq!(response_body(chunked).unwrap(), b"{\"a\":1}");
    let e = response_body(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").unwrap_err();
    assert!(e.contains("503"), "{e}");
    assert!(response_body(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    assert!(response_body(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}").is_err());
}

/// Serves `answer` to each of `n` connections on a free loopback port.
fn serve(answer: &'static str, n: usize) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut request = String::new();
        for _ in 0..n {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let got = s.read(&mut buf).unwrap();
            request = String::from_utf8_lossy(&buf[..got]).into_owned();
            let _ = s.write_all(answer.as_bytes());
        }
        request
    });
    (port, handle)
}

#[test]
fn a_get_of_cluster_reads_the_members_and_sends_a_plain_request() {
    const ANSWER: &str = "HTTP/1.0 200 OK\r\nServer: BaseHTTP/0.6\r\n\r\n{\"members\": [{\"name\": \"n1\", \"role\": \"leader\", \"host\": \"127.0.0.1\", \"port\": 5432}]}";
    let (port, server) = serve(ANSWER, 1);
    let url = Url::parse(&format!("http://127.0.0.1:{port}/base")).unwrap();
    let m = cluster(&url, Duration::from_secs(2)).unwrap();
    assert_eq!((m[0].name.as_str(), m[0].port), ("n1", Some(5432)));
    let request = server.join().unwrap();
    assert!(
        request.starts_with("GET /base/cluster HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
        "{request}"
    );
}

#[test]
fn a_silent_server_costs_the_timeout_and_a_closed_port_fails_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let started = Instant::now();
    let e = cluster(&url, Duration::from_millis(300)).unwrap_err();
    assert!(e.contains("no answer within 0.300 s"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(listener);
    let e = cluster(&url, Duration::from_secs(2)).unwrap_err();
    assert!(e.contains("connect to 127.0.0.1"), "{e}");
}

#[test]
fn members_map_to_nodes_by_host_and_port_with_loopback_names_as_one() {
    assert_eq!(normal_host("LocalHost."), normal_host("127.0.0.1"));
    assert_eq!(normal_host("[::1]"), normal_host("localhost"));
    assert_ne!(normal_host("127.0.0.2"), normal_host("127.0.0.1"));
    let cfg = nodes(2);
    let m = Member {
        host: "localhost".into(),
        ..member("node2", "replica", 5433)
    };
    assert!(is_node(&m, &cfg.nodes[1]) && !is_node(&m, &cfg.nodes[0]));
}

#[test]
fn without_patroni_or_without_an_answer_roles_are_postgresql_s() {
    let cfg = nodes(2);
    let st = engine(&cfg, &[sample_primary(100), sample_standby(100)], None);
    let now = Instant::now();
    let pg = observe_roles(&cfg, &st.nodes, now);
    let r = gate(&cfg, pg.clone(), None, now);
    assert_eq!(
        (r.writer.clone(), r.patroni.clone()),
        (Writer::Known(0), Word::Off)
    );
    // Never answered, or last answered longer than the window ago.
    for v in [
        View::default(),
        view(Some(5433), now - cfg.staleness_window() * 2),
    ] {
        let r = gate(&cfg, pg.clone(), Some(&v), now);
        assert_eq!((r.writer, r.patroni), (Writer::Known(0), Word::NoAnswer));
    }
}

#[test]
fn writes_go_where_postgresql_and_patroni_agree() {
    let cfg = nodes(3);
    let now = Instant::now();
    let samples = [
        sample_primary(100),
        sample_standby(100),
        sample_standby(100),
    ];
    let st = engine(&cfg, &samples, Some(view(Some(5432), now)));
    assert_eq!(
        (st.roles.writer.clone(), st.roles.patroni.clone()),
        (Writer::Known(0), Word::Agrees)
    );
    let snap = build_snapshot_ha(&cfg, &st.nodes, st.patroni.as_deref(), now);
    assert_eq!(snap.roles.writer, Writer::Known(0));
}

#[test]
fn a_standby_promoted_before_patroni_calls_it_leader_takes_no_writes_yet() {
    let cfg = nodes(3);
    let now = Instant::now();
    // node 1 promoted on timeline 2 (node 0 gone), Patroni still names node 0.
    let samples = [sample_standby(100), promoted(2), sample_standby(100)];
    let mut st = engine(&cfg, &samples, Some(view(Some(5432), now)));
    assert_eq!(st.roles.writer, Writer::Unknown);
    assert_eq!(
        st.roles.patroni,
        Word::Holds {
            primary: 1,
            leader: Some("node1".into())
        }
    );
    assert_eq!(st.roles.targets, vec![0, 1, 2]);
    let snap = build_snapshot_ha(&cfg, &st.nodes, st.patroni.as_deref(), now);
    assert_eq!(snap.roles.writer, Writer::Unknown);
    assert!(
        !snap.nodes[0].eligible,
        "the primary alias takes no reads in a gap"
    );
    // Patroni's word comes: writes go to node 1, logged as a change of primary.
    st.patroni = Some(Arc::new(view(Some(5433), now)));
    let mut events: Vec<Event> = Vec::new();
    crate::roles::changes::update_roles(&cfg, &mut st, now, &mut events);
    assert_eq!(
        (st.roles.writer.clone(), st.roles.targets.clone()),
        (Writer::Known(1), vec![1, 0, 2])
    );
    assert_eq!(st.roles.patroni, Word::Agrees);
}

#[test]
fn a_demoted_leader_still_writable_or_no_leader_at_all_holds_writes() {
    let cfg = nodes(3);
    let now = Instant::now();
    let samples = [
        sample_primary(100),
        sample_standby(100),
        sample_standby(100),
    ];
    // Patroni moved leadership to node 1 while node 0 is still not in recovery.
    let st = engine(&cfg, &samples, Some(view(Some(5433), now)));
    assert_eq!(st.roles.writer, Writer::Unknown);
    assert!(matches!(st.roles.patroni, Word::Holds { primary: 0, .. }));
    // The leader key is gone (a failover in progress): nobody leads for Patroni.
    let st = engine(&cfg, &samples, Some(view(None, now)));
    assert_eq!(
        st.roles.patroni,
        Word::Holds {
            primary: 0,
            leader: None
        }
    );
}

#[test]
fn a_leader_that_is_no_configured_node_leaves_postgresql_s_roles_and_says_so() {
    let cfg = nodes(2);
    let now = Instant::now();
    let st = engine(
        &cfg,
        &[sample_primary(100), sample_standby(100)],
        Some(view(Some(5434), now)),
    );
    assert_eq!(st.roles.writer, Writer::Known(0));
    assert_eq!(
        st.roles.patroni,
        Word::Unmatched {
            leader: "node3".into(),
            address: "127.0.0.1:5434".into()
        }
    );
}

#[test]
fn the_decision_changes_only_with_a_leader_a_member_or_reachability() {
    let w = Watch::new(vec![Url::parse("http://127.0.0.1:8008").unwrap()]);
    let now = Instant::now();
    assert!(!w.view().fresh(now, Duration::from_secs(3)));
    assert!(w.store(view(Some(5432), now)));
    let g = w.generation();
    let mut later = view(Some(5432), now + Duration::from_secs(1));
    later.members[1].lag = Some(123);
    later.polls = 7;
    assert!(
        !w.store(later.clone()),
        "lag and times alone change nothing"
    );
    assert_eq!(w.generation(), g);
    later.error = Some("refused".into());
    assert!(w.store(later));
    assert!(w.store(view(Some(5433), now)));
    assert_eq!(w.generation(), g + 2);
}
