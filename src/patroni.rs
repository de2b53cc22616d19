//! Patroni's word on who leads (`PATRONI_URLS`): a background poller per process asks
//! Patroni's REST API for `/cluster`, and the roles decision (`roles::decide`) lets a
//! node take writes only while PostgreSQL says it is the primary AND Patroni calls it
//! leader. While they disagree (a standby promoted before Patroni holds the leader
//! key, a demoted leader not in recovery yet), writes wait as in a gap. While Patroni
//! answers nowhere, roles come from PostgreSQL alone (see `docs/roles.md` for why).
//!
//! - `url`: the URL form `PATRONI_URLS` accepts (the settings rule uses it too);
//! - `fetch`: one bounded HTTP/1.1 GET and the `/cluster` answer's members;
//! - the rule (members mapped to nodes by host:port, and the gate on the roles) is
//!   `roles::patroni`: roles know Patroni's view, this module does not know roles;
//! - `poller`: the thread, started, stopped and forked with the prober.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

pub(crate) mod fetch;
pub(crate) mod poller;
pub(crate) mod url;

pub(crate) use url::Url;

/// One member of Patroni's `/cluster` answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    /// PostgreSQL's address as Patroni advertises it (`connect_address`).
    pub host: String,
    pub port: Option<u16>,
    /// `leader`, `replica`, `standby_leader`, `sync_standby`, ...
    pub role: String,
    /// `running`, `streaming`, `stopped`, `starting`, ...
    pub state: String,
    pub timeline: Option<u32>,
    /// Replication lag in bytes (`None`: Patroni says "unknown", or a leader).
    pub lag: Option<u64>,
}

impl Member {
    /// Whether Patroni calls this member the (writable) leader.
    pub fn is_leader(&self) -> bool {
        // `/cluster` calls the holder of the leader key "leader" and every other
        // member by its replica role; "standby_leader" leads a standby cluster and
        // takes no writes.
        self.role == "leader"
    }
}

/// What this process last learned from Patroni.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The members of the last answer (kept while later polls fail).
    pub members: Vec<Member>,
    /// The URL that answered last.
    pub url: Option<String>,
    /// When a URL last answered.
    pub answered: Option<Instant>,
    /// Why the last poll failed at every URL (`None` after an answer).
    pub error: Option<String>,
    pub polls: u64,
    pub failed_polls: u64,
}

impl View {
    /// Whether Patroni answered within `window` of `now`: only then does its word count.
    pub fn fresh(&self, now: Instant, window: Duration) -> bool {
        self.answered
            .is_some_and(|t| now.saturating_duration_since(t) <= window)
    }

    /// The member Patroni calls leader, if one.
    pub fn leader(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.is_leader())
    }
}

/// Patroni's side of a cluster in `Shared`: the URLs, and the latest view (lock-free,
/// read on every roles decision; written by the poller only).
pub struct Watch {
    pub urls: Vec<Url>,
    view: ArcSwapOption<View>,
    /// Bumped whenever the view changes in a way the roles decision can see.
    generation: AtomicU64,
}

impl Watch {
    pub fn new(urls: Vec<Url>) -> Watch {
        Watch {
            urls,
            view: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
        }
    }

    /// The latest view (an empty one, never answered, before the first poll ended).
    pub fn view(&self) -> Arc<View> {
        self.view.load_full().unwrap_or_default()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Stores a new view; returns whether the roles decision may change with it (a
    /// leader, a member's role or address, or whether Patroni answers at all).
    pub(crate) fn store(&self, view: View) -> bool {
        let old = self.view.load_full();
        let key = |v: &View| -> Vec<(String, String, Option<u16>, bool)> {
            v.members
                .iter()
                .map(|m| (m.name.clone(), m.host.clone(), m.port, m.is_leader()))
                .collect()
        };
        let decisive = old.as_deref().is_none_or(|o| {
            o.answered.is_some() != view.answered.is_some()
                || o.error.is_some() != view.error.is_some()
                || key(o) != key(&view)
        });
        self.view.store(Some(Arc::new(view)));
        if decisive {
            self.generation.fetch_add(1, Ordering::Release);
        }
        decisive
    }
}

#[cfg(test)]
mod tests;
