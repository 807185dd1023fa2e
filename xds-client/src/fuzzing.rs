//! Fuzz harness for the engine's response handling, shared by `fuzz/` and the corpus replay
//! test: any bytes decoded as a SotW or Delta response (the first byte picks) are handled
//! without panicking, and the engine keeps answering with a request.

use std::collections::BTreeSet;
use std::sync::Arc;

use prost::Message;

use crate::handler::{Handler, Rejected, Resource};
use crate::protos::envoy::config::core::v3::Node;
use crate::protos::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use crate::{types, Engine, Mode};

/// Accepts everything it is handed (the engine's own checks are what is fuzzed).
struct Accept;

impl Handler for Accept {
    fn apply(&self, _type_url: &str, _updated: Vec<Resource>, _removed: Vec<String>) -> Vec<Rejected> {
        Vec::new()
    }
}

/// One response through a subscribed engine.
pub fn response(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else { return };
    let mode = if kind % 2 == 0 { Mode::Sotw } else { Mode::Delta };
    let mut e = Engine::new(mode, Node::default(), Arc::new(Accept), None);
    for t in [types::LISTENER, types::CLUSTER] {
        let _ = e.subscribe(t, BTreeSet::new(), true);
    }
    for t in [types::ROUTE, types::ENDPOINT, types::SECRET] {
        let _ = e.subscribe(t, ["a".to_string(), "b".to_string()].into(), true);
    }
    match mode {
        Mode::Sotw => {
            if let Ok(r) = DiscoveryResponse::decode(bytes) {
                let _ = e.on_sotw(r);
            }
        }
        Mode::Delta => {
            if let Ok(r) = DeltaDiscoveryResponse::decode(bytes) {
                let _ = e.on_delta(r);
            }
        }
    }
}
