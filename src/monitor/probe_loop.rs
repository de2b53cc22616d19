//! One probe loop per probe target: the nodes of one `ProbeGroups` group (one server
//! listed by several aliases) share its connection and every outcome.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::Engine;
use crate::probe::{Fault, FaultKind, Prober};

/// Probes one target (the nodes of group `group`) every PROBE_INTERVAL, or at once
/// when woken, on one connection; each outcome goes to all of the group's nodes.
pub(super) async fn probe_loop(engine: Arc<Engine>, group: usize, mut stop: watch::Receiver<bool>) {
    let cfg = &engine.shared.config;
    let timeout = cfg.probe_timeout;
    let Some(&idx) = engine.groups.members.get(group).and_then(|m| m.first()) else {
        return;
    };
    let mut prober = Prober::new(&cfg.nodes[idx], timeout);
    let mut ticker = tokio::time::interval(cfg.probe_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            // A passive fault: probe now rather than at the next tick.
            _ = engine.wake[group].notified() => {}
            _ = stop.wait_for(|&stopping| stopping) => return,
        }
        if engine.reconnect[group].swap(false, Ordering::Relaxed)
            && engine.shared.snapshot.load().roles.proxies.contains(&idx)
        {
            // Through a proxy the probe's open connection says nothing of where a new
            // one goes now (the one that just failed did): probe on a new one.
            prober.reset();
        }
        // Through a proxy, a connect that times out is the proxy's path to some server
        // (retrying a dead one, say), not a frozen server under open connections.
        let connecting_through_proxy =
            !prober.is_connected() && engine.shared.snapshot.load().roles.proxies.contains(&idx);
        let started = Instant::now();
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, prober.probe()) => r,
            _ = stop.wait_for(|&stopping| stopping) => return,
        };
        let latency = started.elapsed();
        let result = match outcome {
            Ok(r) => r,
            Err(_) => {
                // Dropping the half-done connection closes its socket now.
                prober.reset();
                let (kind, what) = if connecting_through_proxy {
                    (FaultKind::Connection, "no connection through the proxy")
                } else {
                    (FaultKind::Timeout, "no answer")
                };
                Err(Fault {
                    kind,
                    message: format!(
                        "{what} within PROBE_TIMEOUT ({:.3} s)",
                        timeout.as_secs_f64()
                    ),
                })
            }
        };
        if latency >= cfg.probe_interval && result.is_ok() {
            // A good probe that overran (a node just thawed): keep a full interval
            // before the next one, or back-to-back probes would make RISE meaningless.
            // A failed one does not wait: the next tick is due, and going down within
            // FALL x PROBE_INTERVAL + PROBE_TIMEOUT is what interrupts in-flight
            // reads on a frozen node.
            ticker.reset();
        }
        engine.apply(idx, result, latency, Instant::now());
    }
}
