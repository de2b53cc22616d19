//! Aliases that are proxy or pooler endpoints (HAProxy, PgBouncer, a load balancer),
//! not servers: told from what the probe's own connection shows, never configured.
//!
//! The probe reads `inet_server_addr()` and `inet_server_port()`, the address the
//! server itself accepted the connection on. An alias is a proxy endpoint when that
//! is not the alias's address (another port, or another IP where `HOST` is an IP),
//! or when the server behind the alias changed from one probe to the next while the
//! alias's address did not. Both are facts about the connection, not guesses from
//! timing; once seen, an alias stays a proxy endpoint for the life of the process
//! (a proxy that happens to reach one server for a while is still a proxy).

use std::net::IpAddr;

use crate::config::{ClusterConfig, NodeConfig};
use crate::events::{Event, Severity};
use crate::node_status::NodeStatus;
use crate::probe::Sample;
use crate::roles::{Roles, Writer};

/// Marks node `idx` (`what`: its role and alias, for the log) a proxy endpoint the
/// first time its probe shows it; returns the event that says so, once.
pub(crate) fn detect(
    node: &NodeConfig,
    n: &mut NodeStatus,
    sample: &Sample,
    what: &str,
    idx: usize,
) -> Option<Event> {
    if n.proxy {
        return None;
    }
    let why = evidence(node, n.sample.as_ref(), sample)?;
    n.proxy = true;
    Some(Event::about(
        Severity::Info,
        format!(
            "{what} ({}:{}) is a proxy or pooler endpoint ({why}): its connections stay on \
             it, no other alias's connections go to it, and roles seen through it are the \
             proxy's",
            node.host, node.port
        ),
        idx,
    ))
}

/// Whether alias `slot`, which connects to node `target` (`n`), serves reads by the
/// primary's weight: a replica alias that reaches a primary its connections may not
/// move from (a proxy's `replicas` in its check window, or a promoted standby while
/// the primary alias is a proxy endpoint); never an old primary, nor one of a split
/// brain. (A replica alias whose node became the writer was swapped already.)
/// Without a proxy (today's aliases, or a host of a multi-host alias that reaches the
/// primary) such a node takes no reads: its connections move to a standby, which is
/// what brings a demoted primary back into reads.
pub(crate) fn reads_as_primary(roles: &Roles, slot: usize, target: usize, n: &NodeStatus) -> bool {
    slot > 0
        && (n.proxy || roles.proxies.contains(&0))
        && n.sample.as_ref().is_some_and(|s| !s.in_recovery)
        && !roles.stale.contains(&target)
        && !matches!(roles.writer, Writer::Split(_))
}

/// After a query failed on `n` (`Health::on_passive_fault`): through a proxy the next
/// connection may reach another server, so the next good probe (the prober re-probes
/// at once, on a new connection) brings the endpoint back, not `RISE` of them.
pub(crate) fn after_passive_fault(cfg: &ClusterConfig, n: &mut NodeStatus) {
    if n.proxy {
        n.health.ok_streak = cfg.rise.saturating_sub(1);
    }
}

/// Why the alias of `node` is a proxy endpoint, judging by the server its probe just
/// reached (`now`) and the one it reached before (`before`); `None` when nothing
/// says so.
pub(crate) fn evidence(node: &NodeConfig, before: Option<&Sample>, now: &Sample) -> Option<String> {
    let here = address(now)?;
    if let Some(port) = now.server_port {
        if port != node.port {
            return Some(format!(
                "the server it reaches listens on {here}, not on its PORT {}",
                node.port
            ));
        }
    }
    if let (Ok(host), Some(Ok(addr))) = (
        node.host.parse::<IpAddr>(),
        now.server_addr.as_deref().map(str::parse::<IpAddr>),
    ) {
        if canonical(host) != canonical(addr) {
            return Some(format!(
                "the server it reaches listens on {here}, not on its HOST {}",
                node.host
            ));
        }
    }
    let was = before.and_then(address)?;
    (was != here).then(|| format!("the server behind it changed from {was} to {here}"))
}

/// `addr:port` of the server a probe reached (`None` over a Unix socket).
fn address(s: &Sample) -> Option<String> {
    match (&s.server_addr, s.server_port) {
        (Some(a), Some(p)) => Some(format!("{a}:{p}")),
        _ => None,
    }
}

/// An IPv4 address seen as IPv6 (`::ffff:10.0.0.1`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::config::tests::{cluster, node};
    use crate::config::Role;
    use crate::engine_state::EngineState;
    use crate::roles::observe_roles;
    use crate::select::Reason;
    use crate::step::tests::{sample_primary, sample_standby};
    use crate::step::{build_snapshot, observe};

    /// A probe through an endpoint (configured on port 5432) that reached the server
    /// listening on `port`, started at `port` too (one server per port).
    fn via(port: u16, primary: bool, tl: u32) -> Sample {
        let base = if primary {
            sample_primary(100)
        } else {
            sample_standby(100)
        };
        Sample {
            timeline: Some(tl),
            started_us: Some(u64::from(port)),
            server_addr: Some("127.0.0.1".into()),
            server_port: Some(port),
            ..base
        }
    }

    fn probe(
        cfg: &crate::config::ClusterConfig,
        st: &mut EngineState,
        i: usize,
        s: Sample,
        at: Instant,
    ) -> Vec<Event> {
        observe(cfg, st, i, Ok(s), Duration::ZERO, at)
    }

    #[test]
    fn a_replicas_endpoint_that_reaches_the_new_primary_takes_no_writes() {
        // HAProxy's check window: `primary` (default) still reaches the old primary,
        // now a standby; `replicas` already reaches the promoted server.
        let cfg = cluster(&[1.0, 2.0]);
        let now = Instant::now();
        let mut st = EngineState::new(&cfg, now);
        probe(&cfg, &mut st, 0, via(6001, true, 1), now);
        let events = probe(&cfg, &mut st, 1, via(6002, false, 1), now);
        assert!(st.nodes[0].proxy && st.nodes[1].proxy);
        assert!(events
            .iter()
            .any(|e| e.message.contains("is a proxy or pooler endpoint")));
        probe(&cfg, &mut st, 0, via(6001, false, 2), now);
        let events = probe(&cfg, &mut st, 1, via(6002, true, 2), now);
        let r = observe_roles(&cfg, &st.nodes, now);
        // No move of "default" to the replicas endpoint: it waits for its own.
        assert_eq!(r.writer, Writer::Unknown);
        assert_eq!(r.targets, vec![0, 1]);
        assert_eq!(r.proxies, vec![0, 1]);
        // Not "promoted?", and never two primaries, however long it lasts.
        let later = now + cfg.staleness_window() * 2;
        probe(&cfg, &mut st, 0, via(6002, true, 2), later);
        let more = probe(&cfg, &mut st, 1, via(6002, true, 2), later);
        for e in events.iter().chain(&more) {
            assert!(!e.message.contains("claim to be primary"), "{e:?}");
            assert!(!e.message.contains("promoted?"), "{e:?}");
        }
        // Through the proxy, the primary's server changed: counted once, said so.
        assert_eq!(
            observe_roles(&cfg, &st.nodes, later).writer,
            Writer::Known(0)
        );
        assert_eq!(st.role_changes, 1);
        assert!(st.roles.writer_server.as_deref() == Some("127.0.0.1:6002"));
    }

    #[test]
    fn a_replicas_endpoint_that_reaches_the_primary_serves_reads_by_its_weight() {
        let cfg = cluster(&[1.0, 2.0]);
        let now = Instant::now();
        let mut st = EngineState::new(&cfg, now);
        probe(&cfg, &mut st, 0, via(6001, true, 1), now);
        probe(&cfg, &mut st, 1, via(6001, true, 1), now);
        let snap = build_snapshot(&cfg, &st.nodes, now);
        assert!(snap.is_eligible(1, now));
        assert_eq!(snap.nodes[1].weight, 1.0);
        let to_replicas = (0..300)
            .filter(|k| snap.pick(now, f64::from(*k) / 300.0) == (1, Reason::Weighted))
            .count();
        assert_eq!(to_replicas, 150);
    }

    #[test]
    fn a_proxy_endpoint_that_failed_a_query_is_back_at_its_next_good_probe() {
        let cfg = cluster(&[1.0, 1.0]);
        let now = Instant::now();
        let mut st = EngineState::new(&cfg, now);
        probe(&cfg, &mut st, 0, via(6001, true, 1), now);
        probe(&cfg, &mut st, 1, via(6002, false, 1), now);
        let fault = crate::probe::Fault {
            kind: crate::probe::FaultKind::Timeout,
            message: "connection timeout expired".into(),
        };
        crate::step::passive(&cfg, &mut st, 1, fault, now);
        assert_eq!(st.nodes[1].health.state, crate::health::State::Down);
        probe(&cfg, &mut st, 1, via(6003, false, 1), now);
        assert_eq!(st.nodes[1].health.state, crate::health::State::Up);
    }

    #[test]
    fn a_direct_primary_alias_never_moves_to_a_proxy_endpoint() {
        let cfg = cluster(&[1.0, 1.0]);
        let now = Instant::now();
        let mut st = EngineState::new(&cfg, now);
        let direct = |primary: bool, tl: u32| Sample {
            server_addr: Some("127.0.0.1".into()),
            server_port: Some(5432),
            ..via(5432, primary, tl)
        };
        probe(&cfg, &mut st, 0, direct(true, 1), now);
        probe(&cfg, &mut st, 1, via(6002, false, 1), now);
        probe(&cfg, &mut st, 0, direct(false, 2), now);
        probe(&cfg, &mut st, 1, via(6002, true, 2), now);
        assert!(!st.nodes[0].proxy && st.nodes[1].proxy);
        let r = observe_roles(&cfg, &st.nodes, now);
        assert_eq!((r.writer, r.targets), (Writer::Unknown, vec![0, 1]));
    }

    #[test]
    fn a_direct_replica_alias_that_reaches_the_primary_takes_no_reads() {
        // Two nodes on one server (a host listed by two multi-host aliases, say), no
        // proxy: the replica alias's node that reaches the primary is out of reads, so
        // its connections move to a standby (and a demoted primary gets reads back).
        let cfg = cluster(&[1.0, 2.0, 1.0]);
        let now = Instant::now();
        let mut st = EngineState::new(&cfg, now);
        let direct = |primary: bool| Sample {
            server_addr: Some("127.0.0.1".into()),
            server_port: Some(5432),
            ..via(5432, primary, 1)
        };
        for i in 0..2 {
            probe(&cfg, &mut st, i, direct(true), now);
        }
        probe(&cfg, &mut st, 2, direct(false), now);
        assert!(st.nodes.iter().all(|n| !n.proxy));
        let snap = build_snapshot(&cfg, &st.nodes, now);
        assert!(!snap.is_eligible(1, now));
        assert!(snap.is_eligible(2, now));
    }

    fn reached(addr: &str, port: u16) -> Sample {
        Sample {
            server_addr: Some(addr.into()),
            server_port: Some(port),
            ..Sample::default()
        }
    }

    #[test]
    fn a_server_on_the_alias_address_is_no_proxy() {
        let n = node("default", Role::Primary, 1.0);
        assert_eq!(evidence(&n, None, &reached("127.0.0.1", 5432)), None);
        let same = reached("127.0.0.1", 5432);
        assert_eq!(evidence(&n, Some(&same), &same), None);
        // A Unix socket shows no address: nothing to judge.
        assert_eq!(evidence(&n, None, &Sample::default()), None);
        // A restart of the same server (new start time) is no proxy either.
        let restarted = Sample {
            started_us: Some(2),
            ..reached("127.0.0.1", 5432)
        };
        assert_eq!(evidence(&n, Some(&same), &restarted), None);
    }

    #[test]
    fn another_port_or_ip_is_a_proxy() {
        let n = node("default", Role::Primary, 1.0);
        let why = evidence(&n, None, &reached("127.0.0.1", 5433)).unwrap();
        assert!(
            why.contains("127.0.0.1:5433") && why.contains("PORT 5432"),
            "{why}"
        );
        let why = evidence(&n, None, &reached("10.0.0.7", 5432)).unwrap();
        assert!(why.contains("HOST 127.0.0.1"), "{why}");
        assert_eq!(evidence(&n, None, &reached("::ffff:127.0.0.1", 5432)), None);
    }

    #[test]
    fn a_host_name_is_judged_by_its_port_and_by_changes() {
        let mut n = node("default", Role::Primary, 1.0);
        n.host = "db.example".into();
        assert_eq!(evidence(&n, None, &reached("10.0.0.7", 5432)), None);
        let why = evidence(
            &n,
            Some(&reached("10.0.0.7", 5432)),
            &reached("10.0.0.8", 5432),
        );
        assert!(why
            .unwrap()
            .contains("changed from 10.0.0.7:5432 to 10.0.0.8:5432"));
    }
}
