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
    /// Seconds a metric series may go without an update before it is forgotten when nothing
    /// live owns it (a removed cluster's, an idle `istio_*` label set). Isthmus only.
    #[arg(long = "stats-expiry-s", default_value_t = 3600)]
    pub stats_expiry_s: u64,
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
    /// Per-component log levels (`upstream:debug,misc:error`), as pilot-agent passes them.
    /// Isthmus has one log filter: the levels are accepted and the global `-l` level applies.
    #[arg(long = "component-log-level")]
    pub component_log_level: Option<String>,
    /// Accepted for Envoy compatibility (hot-restart parent shutdown); Isthmus has no hot restart.
    #[arg(long = "parent-shutdown-time-s")]
    pub parent_shutdown_time_s: Option<u64>,
    /// Accepted for Envoy compatibility (hot-restart epoch); only 0 is meaningful here.
    #[arg(long = "restart-epoch", default_value_t = 0)]
    pub restart_epoch: u32,
    /// Accepted for Envoy compatibility (hot-restart shared memory id).
    #[arg(long = "base-id")]
    pub base_id: Option<u64>,
    /// Accepted for Envoy compatibility: Isthmus logs no deprecation warnings for fields.
    #[arg(long = "skip-deprecated-logs")]
    pub skip_deprecated_logs: bool,
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

impl Cli {
    /// The options in Envoy's `/server_info` `command_line_options` form (the fields that
    /// exist here; Envoy's names).
    pub fn options_json(&self) -> serde_json::Value {
        serde_json::json!({
            "concurrency": self.concurrency.unwrap_or(0),
            "config_path": self.config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "config_yaml": self.config_yaml.clone().unwrap_or_default(),
            "allow_unknown_static_fields": self.allow_unknown_static_fields,
            "local_address_ip_version": self.local_address_ip_version.clone().unwrap_or_else(|| "v4".into()),
            "log_level": self.log_level,
            "component_log_level": self.component_log_level.clone().unwrap_or_default(),
            "log_format": self.log_format.clone().unwrap_or_default(),
            "service_cluster": self.service_cluster.clone().unwrap_or_default(),
            "service_node": self.service_node.clone().unwrap_or_default(),
            "service_zone": self.service_zone.clone().unwrap_or_default(),
            "file_flush_interval": format!("{}s", self.file_flush_interval_msec.unwrap_or(10_000) as f64 / 1000.0),
            "drain_time": format!("{}s", self.drain_time_s),
            "parent_shutdown_time": format!("{}s", self.parent_shutdown_time_s.unwrap_or(900)),
            "mode": match self.mode { Mode::Serve => "Serve", Mode::Validate => "Validate" },
            "disable_hot_restart": self.disable_hot_restart,
            "restart_epoch": self.restart_epoch,
            "base_id": self.base_id.unwrap_or(0).to_string(),
            "drain_strategy": match self.drain_strategy.as_deref() { Some("immediate") => "Immediate", _ => "Gradual" },
            "skip_deprecated_logs": self.skip_deprecated_logs,
        })
    }
}
