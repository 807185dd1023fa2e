//! The proxy's configuration: immutable, validated types, and the one conversion path from
//! Envoy v3 protos that the bootstrap file and xDS share.
//!
//! Nothing on the request path reads a proto: the model below is what listeners, routes and
//! clusters run on. A [`Bootstrap`] is built once per config version and shared behind `Arc`.

pub mod access_log;
pub mod bootstrap;
pub mod chain_matcher;
pub mod cluster;
pub mod convert;
pub mod error;
pub mod filters;
pub mod listener;
pub mod load;
pub mod matcher;
pub mod node_env;
pub mod overload;
pub mod route;
pub mod tls;

pub use bootstrap::{Admin, Bootstrap, Node};
pub use cluster::{Assignment, AssignmentPolicy, Cluster, Discovery, Endpoint, LbPolicy, LocalityEndpoints};
pub use error::ConfigError;
pub use listener::{FilterChain, Listener, NetworkFilter};
pub use route::{RouteConfig, VirtualHost};
