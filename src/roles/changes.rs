//! What a change of roles says in the log, once per change: a new primary (counted),
//! a gap with no primary, two primaries (once they last the detection window, so a
//! proxy's check window that shows a flip for a moment is not reported).

use std::time::Instant;

use crate::config::ClusterConfig;
use crate::engine_state::EngineState;
use crate::events::{fmt_opt, Event, Severity};

use crate::roles::Word;

use super::{decide, Writer};

/// Re-derives the roles after a step; logs (once) a change of primary, a gap with no
/// primary, and two primaries.
pub(crate) fn update_roles(
    cfg: &ClusterConfig,
    st: &mut EngineState,
    now: Instant,
    events: &mut Vec<Event>,
) {
    let roles = decide(cfg, &st.nodes, st.patroni.as_deref(), now);
    let name = |i: usize| {
        let n = &cfg.nodes[i];
        format!("{}:{} (configured as {:?})", n.host, n.port, n.alias)
    };
    // Through a proxy the writer's node stays the primary alias's own: a change of
    // primary is a new server behind it.
    let moved = matches!(roles.writer, Writer::Known(w) if roles.proxies.contains(&w))
        && st.last_writer_server.is_some()
        && roles.writer_server.is_some()
        && roles.writer_server != st.last_writer_server;
    if roles.writer != st.roles.writer || moved {
        match (&roles.writer, st.last_writer) {
            (Writer::Known(w), Some(_)) if moved => {
                st.role_changes += 1;
                events.push(Event::cluster(
                    Severity::Warning,
                    format!(
                        "the primary is now {} behind the proxy endpoint {} on timeline {}, \
                         was {}: the proxy moved the connections of {:?} (role change {})",
                        fmt_opt(roles.writer_server.as_deref()),
                        name(*w),
                        fmt_opt(roles.timeline),
                        fmt_opt(st.last_writer_server.as_deref()),
                        cfg.nodes[*w].database,
                        st.role_changes
                    ),
                ));
            }
            (Writer::Known(w), Some(last)) if *w != last => {
                st.role_changes += 1;
                events.push(Event::cluster(
                    Severity::Warning,
                    format!(
                        "the primary is now {} on timeline {}, was {}: new connections of \
                         {:?} go to it (role change {})",
                        name(*w),
                        fmt_opt(roles.timeline),
                        name(last),
                        cfg.nodes[0].alias,
                        st.role_changes
                    ),
                ));
            }
            (Writer::Known(w), Some(_)) => events.push(Event::cluster(
                Severity::Info,
                format!("the primary {} takes writes again", name(*w)),
            )),
            (Writer::Known(_), None) => {}
            // Said by `patroni_word` below.
            (Writer::Unknown, Some(_)) if matches!(roles.patroni, Word::Holds { .. }) => {}
            (Writer::Unknown, Some(last)) => events.push(Event::cluster(
                Severity::Warning,
                format!(
                    "no primary is known now (last: {}): new write connections wait for one",
                    name(last)
                ),
            )),
            _ => {}
        }
        if let Writer::Known(w) = roles.writer {
            st.last_writer = Some(w);
        }
    }
    if roles.patroni != st.roles.patroni {
        patroni_word(cfg, &roles.patroni, events);
    }
    if roles.writer_node().is_some() && roles.writer_server.is_some() {
        st.last_writer_server.clone_from(&roles.writer_server);
    }
    st.roles = roles;
    check_split_brain(cfg, st, now, events);
}

/// What a new word of Patroni's on the roles says in the log (a lost or found
/// Patroni is logged by its poller).
fn patroni_word(cfg: &ClusterConfig, word: &Word, events: &mut Vec<Event>) {
    let n = |i: usize| {
        let n = &cfg.nodes[i];
        format!("{}:{} (configured as {:?})", n.host, n.port, n.alias)
    };
    let (severity, message) = match word {
        Word::Holds { primary, leader } => (
            Severity::Info,
            format!(
                "PostgreSQL's primary {} is not Patroni's leader ({}): new write \
                 connections wait until both agree",
                n(*primary),
                leader
                    .as_ref()
                    .map_or("Patroni names no leader".into(), |l| format!(
                        "Patroni's leader is {l:?}"
                    ))
            ),
        ),
        Word::Unmatched { leader, address } => (
            Severity::Warning,
            format!(
                "Patroni's leader {leader:?} ({address}) is none of the configured nodes: \
                 writes follow PostgreSQL's roles alone (give the aliases the addresses \
                 Patroni advertises, its connect_address)"
            ),
        ),
        Word::Off | Word::NoAnswer | Word::Agrees => return,
    };
    events.push(Event::cluster(severity, message));
}

fn check_split_brain(
    cfg: &ClusterConfig,
    st: &mut EngineState,
    now: Instant,
    events: &mut Vec<Event>,
) {
    let mut claims: Vec<(usize, Option<u32>)> = Vec::new();
    let mut servers: Vec<Option<u64>> = Vec::new();
    for (i, n) in st.nodes.iter().enumerate() {
        let Some(s) = n.sample.as_ref().filter(|s| !s.in_recovery) else {
            continue;
        };
        // A proxied replica alias that reaches the primary is the proxy's check
        // window (or its choice), not a second primary.
        if !n.health.state.is_live() || (i != 0 && n.proxy) {
            continue;
        }
        // Two aliases that reach one server (through a proxy) are one claim.
        if s.started_us.is_some() && servers.contains(&s.started_us) {
            continue;
        }
        servers.push(s.started_us);
        claims.push((i, s.timeline));
    }
    if claims.len() < 2 {
        st.split_brain_reported = false;
        st.split_since = None;
        return;
    }
    let since = *st.split_since.get_or_insert(now);
    if st.split_brain_reported || now.saturating_duration_since(since) < cfg.staleness_window() {
        return;
    }
    st.split_brain_reported = true;
    let newest = claims.iter().max_by_key(|(_, tl)| tl.unwrap_or(0));
    let list: Vec<String> = claims
        .iter()
        .map(|(i, tl)| format!("{:?} (timeline {})", cfg.nodes[*i].alias, fmt_opt(*tl)))
        .collect();
    let newest = newest.map_or("unknown".into(), |(i, _)| {
        format!("{:?}", cfg.nodes[*i].alias)
    });
    let writes = match &st.roles.writer {
        Writer::Known(w) => format!(
            "writes go to {}:{} (the newest)",
            cfg.nodes[*w].host, cfg.nodes[*w].port
        ),
        Writer::Split(_) => "writes are refused (split brain)".into(),
        Writer::Unknown => "no primary is known".into(),
    };
    events.push(Event::cluster(
        Severity::Error,
        format!(
            "{} nodes claim to be primary: {}; the newest timeline is on {newest}: {writes}",
            claims.len(),
            list.join(", "),
        ),
    ));
}
