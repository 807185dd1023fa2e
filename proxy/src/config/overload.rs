//! `overload_manager` as Isthmus enforces it: the global downstream connection limit (exact,
//! checked at every accept) and the fixed heap monitor with the actions it triggers.

use std::time::Duration;

/// The overload manager's settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overload {
    /// `envoy.resource_monitors.global_downstream_max_connections`.
    pub max_downstream_connections: Option<u64>,
    /// `envoy.resource_monitors.fixed_heap`, with its actions.
    pub heap: Option<HeapOverload>,
}

/// The heap monitor: pressure is the heap in use over `max_bytes`, sampled every `refresh`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeapOverload {
    /// `max_heap_size_bytes`.
    pub max_bytes: u64,
    /// `refresh_interval` (default 1 s).
    pub refresh: Duration,
    /// The actions its pressure triggers, each at its threshold.
    pub actions: Vec<(Action, f64)>,
}

/// The overload actions Isthmus takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `envoy.overload_actions.stop_accepting_requests`: new requests get `503` (`OL`).
    StopAcceptingRequests,
    /// `envoy.overload_actions.disable_http_keepalive`: HTTP/1 responses close the connection.
    DisableHttpKeepalive,
    /// `envoy.overload_actions.stop_accepting_connections`: listeners stop calling accept.
    StopAcceptingConnections,
    /// `envoy.overload_actions.reject_incoming_connections`: accepted connections are closed.
    RejectIncomingConnections,
    /// `envoy.overload_actions.shrink_heap`: freed memory goes back to the system.
    ShrinkHeap,
}

impl Action {
    /// The action for Envoy's name.
    pub fn from_name(name: &str) -> Option<Action> {
        Some(match name {
            "envoy.overload_actions.stop_accepting_requests" => Action::StopAcceptingRequests,
            "envoy.overload_actions.disable_http_keepalive" => Action::DisableHttpKeepalive,
            "envoy.overload_actions.stop_accepting_connections" => Action::StopAcceptingConnections,
            "envoy.overload_actions.reject_incoming_connections" => Action::RejectIncomingConnections,
            "envoy.overload_actions.shrink_heap" => Action::ShrinkHeap,
            _ => return None,
        })
    }

    /// Envoy's name (the metric label).
    pub fn name(self) -> &'static str {
        match self {
            Action::StopAcceptingRequests => "envoy.overload_actions.stop_accepting_requests",
            Action::DisableHttpKeepalive => "envoy.overload_actions.disable_http_keepalive",
            Action::StopAcceptingConnections => "envoy.overload_actions.stop_accepting_connections",
            Action::RejectIncomingConnections => "envoy.overload_actions.reject_incoming_connections",
            Action::ShrinkHeap => "envoy.overload_actions.shrink_heap",
        }
    }

    /// Its bit in the set of active actions.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}
