//! Isthmus: a locality-aware L4/L7 proxy that speaks Envoy's configuration language.
//!
//! The library holds everything the `isthmus` binary runs, so integration tests and benches can
//! drive the same code. Config arrives as Envoy v3 protos (a bootstrap file, or xDS from a control plane), becomes
//! the immutable model in [`config`], and listeners, routes and clusters run on that model.
#![deny(unsafe_code)]

pub mod admin;
pub mod app;
pub mod balance;
pub mod build;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod detect;
pub mod dynamic;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod l4;
pub mod l7;
pub mod listener;
pub mod locality;
pub mod outlier;
// The crate denies unsafe code; the allocator calls (mallinfo2, malloc_trim) live here alone.
#[allow(unsafe_code)]
pub mod overload;
pub mod policy;
pub mod telemetry;
pub mod tls;
