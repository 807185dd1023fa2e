//! `xds-client`: the Envoy v3 xDS side of Isthmus.
//!
//! Today it is the one place that names the generated Envoy protos (`envoy-types`) and their
//! canonical proto3 JSON codec ([`json`]), so the proxy, the tests and the benches depend on one
//! crate and the proto source can be swapped here. The ADS state machine (SotW + Delta,
//! ACK/NACK, reconnect) lands in this crate with its own issue. It has no knowledge of the
//! proxy's model: turning protos into config is `proxy::config::convert`'s job.
#![forbid(unsafe_code)]

pub mod json;

/// The Envoy v3 protos (and their well-known types) used across the workspace.
pub use envoy_types::pb as protos;
