//! The herd policy's log: where reads that need no fresh data go while lag keeps
//! every replica out of reads, logged once per change.

use std::time::Instant;

use crate::config::ClusterConfig;
use crate::engine_state::EngineState;
use crate::events::{fmt_opt, Event, Severity};
use crate::lag::{self, Herd};

/// Logs where reads that need no fresh data go when lag keeps every replica out, once
/// per change (the herd policy, `LAG_CEILING_SECONDS`).
pub(super) fn check_herd(
    cfg: &ClusterConfig,
    st: &mut EngineState,
    now: Instant,
    events: &mut Vec<Event>,
) {
    let tolerated = lag::tolerated(cfg, &st.nodes, now);
    let herd = lag::herd(cfg, &st.nodes, &tolerated, now);
    if herd == st.herd {
        return;
    }
    let was = std::mem::replace(&mut st.herd, herd);
    let (severity, message) = match herd {
        Herd::Tolerating => {
            let served: Vec<String> = tolerated
                .iter()
                .enumerate()
                .filter(|(_, &t)| t)
                .map(|(i, _)| {
                    let s = st.nodes[i].lag_seconds.unwrap_or(0.0);
                    format!("{:?} ({s:.1} s behind)", cfg.nodes[i].alias)
                })
                .collect();
            (
                Severity::Warning,
                format!(
                    "every replica is over the lag limit: reads that need no fresh data stay \
                     on the least-lagged replica(s) {} until LAG_CEILING_SECONDS = {}; reads \
                     that must see writes (pins, cookie, use_primary, transactions) go to \
                     the primary",
                    served.join(", "),
                    fmt_opt(cfg.lag_ceiling_seconds)
                ),
            )
        }
        Herd::Primary => (
            Severity::Warning,
            format!(
                "every replica is over the lag limit{}: reads go to the primary (to the \
                 least-lagging replica while the primary is down)",
                if cfg.lag_ceiling_seconds.is_some() {
                    " and LAG_CEILING_SECONDS"
                } else {
                    ""
                }
            ),
        ),
        Herd::Normal => (
            Severity::Info,
            format!(
                "replicas take reads again (was: {})",
                match was {
                    Herd::Tolerating => "every replica lagging, least-lagged serving",
                    _ => "every replica lagging, reads on the primary",
                }
            ),
        ),
    };
    events.push(Event::cluster(severity, message));
}
