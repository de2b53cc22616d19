//! The engine's answer to a new view of Patroni's (`PATRONI_URLS`): the roles are
//! decided again and published at once, not at the next probe. [s3-patroni]

use std::time::Instant;

use crate::events::lock;

use super::{build_snapshot_ha, Engine};

impl Engine {
    /// Patroni's view changed: decide the roles again and publish them now, not at
    /// the next probe. [s3-patroni]
    pub fn refresh(&self) {
        let now = Instant::now();
        let cfg = &self.shared.config;
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        st.patroni = self.shared.patroni_view();
        let mut events = self.drain_passive(st, now);
        crate::roles::changes::update_roles(cfg, st, now, &mut events);
        let snapshot = build_snapshot_ha(cfg, &st.nodes, st.patroni.as_deref(), now);
        self.publish(snapshot, now);
        self.mirror(st, &events);
        drop(guard);
        for event in events {
            self.event(event);
        }
    }
}
