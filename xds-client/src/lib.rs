//! `xds-client`: the Envoy v3 xDS side of Isthmus.
//!
//! An ADS client (SotW and Delta over one per-type state machine) that hands decoded
//! resources to a [`Handler`] and turns its verdicts into ACK/NACK; plus the one place that
//! names the generated Envoy protos (`envoy-types`) and their canonical proto3 JSON codec
//! ([`json`]), so the proto source can be swapped here. It knows nothing about the proxy:
//! turning resources into config is `proxy::config::convert`'s job.
#![forbid(unsafe_code)]

mod client;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod handler;
pub mod json;
mod state;
pub mod types;

pub use client::{Backoff, ClientConfig, Service, Target, Transport, XdsClient};
pub use engine::{Engine, Mode, Outbound};
pub use handler::{Handler, Rejected, Resource};

/// The Envoy v3 protos (and their well-known types) used across the workspace.
pub use envoy_types::pb as protos;
