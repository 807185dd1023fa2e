//! What the consumer (the proxy) implements: apply decoded resources and say which it
//! rejected. The client turns that into ACK or NACK.

use crate::protos::google::protobuf::Any;

/// One resource from a response, handed over as received (the `Any` is moved, not copied).
#[derive(Debug, Clone)]
pub struct Resource {
    /// Resource name.
    pub name: String,
    /// Delta: the resource's own version; SotW: the response's `version_info`.
    pub version: String,
    /// The resource.
    pub resource: Any,
}

/// A resource the consumer refused, with why (goes into the NACK's `error_detail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Resource name.
    pub name: String,
    /// The reason, naming the field where possible.
    pub reason: String,
}

/// The consumer side of the client. Called from the client's task; keep it quick and never
/// block on the client (subscription changes go through [`crate::XdsClient`], which queues).
pub trait Handler: Send + Sync + 'static {
    /// Applies `updated` resources and `removed` names of `type_url`. Every valid resource must
    /// be applied even when others are rejected (Envoy's CDS and gRFC A46 do this); return one
    /// entry per rejected resource, empty to ACK.
    fn apply(&self, type_url: &str, updated: Vec<Resource>, removed: Vec<String>) -> Vec<Rejected>;

    /// A named resource was requested but not received within `initial_fetch_timeout`. It may
    /// still arrive later.
    fn does_not_exist(&self, _type_url: &str, _name: &str) {}

    /// The stream to the control plane came up (true) or went down (false). Accepted
    /// resources stay in force either way.
    fn connection_changed(&self, _connected: bool) {}
}
