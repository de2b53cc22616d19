//! What a process runs when it leads (or probes alone after a bad segment): a prober
//! that `Sharing` starts and drives through this trait without naming it. The engine
//! (`monitor::Engine`) knows the segment's publisher; the segment does not know the
//! engine.

use std::sync::Arc;
use std::time::Instant;

use crate::events::Events;
use crate::node_status::NodeStatus;
use crate::probe::Fault;
use crate::report::ProberView;
use crate::shared::Shared;

use super::publish::Publisher;

/// A process's prober, as `Sharing` uses it.
pub(crate) trait Probing: Send + Sync + Sized + 'static {
    /// Starts probing. With `publisher` (this process leads), every publish is also
    /// written to the segment; with `seed` (the health a previous leader shared), it
    /// carries on from there.
    fn start(
        shared: Arc<Shared>,
        events: Arc<Events>,
        publisher: Option<Arc<Publisher>>,
        seed: Option<Vec<NodeStatus>>,
    ) -> Arc<Self>;

    /// Re-probes every node now.
    fn reprobe(&self);

    /// Decides the roles again now (Patroni's view changed).
    fn refresh(&self);

    /// A passive fault on node `idx`; returns whether the node was taking reads.
    fn report_passive(&self, idx: usize, fault: Fault, now: Instant) -> bool;

    /// What `status()` reports of this prober (`shared`: for the host).
    fn view(&self, shared: bool) -> ProberView;

    /// Stops probing and waits for the prober's thread.
    fn stop(&self);
}
