//! Node liveness, as the leader sees it: when each node was last heard from.
//!
//! Leader-only state, rebuilt and never trusted (DESIGN §4): after every election the clock
//! starts over with a generous grace, so that a failover never marks a node down.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

#[derive(Clone, Default)]
pub struct Liveness {
    last_seen: Arc<Mutex<BTreeMap<String, Instant>>>,
}

impl Liveness {
    pub fn seen(&self, node: &str) {
        let mut map = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(node.to_string(), Instant::now());
    }

    pub fn last_seen(&self, node: &str) -> Option<Instant> {
        let map = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        map.get(node).copied()
    }
}
