//! The command line: Envoy's flags where they overlap, so scripts written for Envoy start
//! Isthmus too; plus `demo`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Isthmus: a locality-aware L4/L7 sidecar and edge proxy configured in Envoy's language.
#[derive(Debug, Parser)]
#[command(name = "isthmus", version, about)]
pub struct Cli {
    /// Bootstrap file (Envoy v3 `Bootstrap`, YAML or JSON).
    #[arg(short = 'c', long = "config-path")]
    pub config_path: Option<PathBuf>,
    /// Bootstrap text merged over the file (objects merge, lists append).
    #[arg(long = "config-yaml")]
    pub config_yaml: Option<String>,
    /// `serve` (default) or `validate` (check the config, bind nothing, exit 0/1).
    #[arg(long, value_enum, default_value_t = Mode::Serve)]
    pub mode: Mode,
    /// Worker threads (default: the CPUs this process may use, cgroup quota included).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Seconds to let in-flight work finish on shutdown.
    #[arg(long = "drain-time-s", default_value_t = 5)]
    pub drain_time_s: u64,
    /// Log level: trace, debug, info, warning, error, critical, off.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    pub log_level: String,
    /// Overrides `node.id`.
    #[arg(long = "service-node")]
    pub service_node: Option<String>,
    /// Overrides `node.cluster`.
    #[arg(long = "service-cluster")]
    pub service_cluster: Option<String>,
    /// Overrides `node.locality.zone`.
    #[arg(long = "service-zone")]
    pub service_zone: Option<String>,
    /// Serve `/healthz/ready` on this address too (Istio uses 0.0.0.0:15021).
    #[arg(long = "readiness-address")]
    pub readiness_address: Option<std::net::SocketAddr>,
    /// Skip unknown fields in the bootstrap instead of refusing it (pilot-agent passes this).
    #[arg(long = "allow-unknown-static-fields")]
    pub allow_unknown_static_fields: bool,
    /// Accepted for Envoy compatibility: `immediate` or `gradual`; Isthmus drains immediately.
    #[arg(long = "drain-strategy", value_parser = ["immediate", "gradual"])]
    pub drain_strategy: Option<String>,
    /// Accepted for Envoy compatibility (`v4` or `v6`); listeners bind what the config says.
    #[arg(long = "local-address-ip-version", value_parser = ["v4", "v6"])]
    pub local_address_ip_version: Option<String>,
    /// Accepted for Envoy compatibility; access logs are written line by line.
    #[arg(long = "file-flush-interval-msec")]
    pub file_flush_interval_msec: Option<u64>,
    /// Accepted for Envoy compatibility; Isthmus has no hot restart.
    #[arg(long = "disable-hot-restart")]
    pub disable_hot_restart: bool,
    /// Accepted for Envoy compatibility; log lines use tracing's format.
    #[arg(long = "log-format")]
    pub log_format: Option<String>,
    /// TCP proxying through a user-space copy instead of `splice(2)` (for comparison runs, or
    /// a kernel whose splice misbehaves).
    #[arg(long = "l4-copy")]
    pub l4_copy: bool,
    /// Subcommand.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do with the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Run the proxy.
    Serve,
    /// Check the config and exit.
    Validate,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start local upstreams and the proxy on an embedded config, drive a bounded load through
    /// it and print a live per-second table.
    Demo {
        /// Seconds of load.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Requests per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
    },
}
