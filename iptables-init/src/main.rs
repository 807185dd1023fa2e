//! `iptables-init`: installs Istio-compatible capture rules for the Isthmus sidecar. Flags and
//! environment variables are istio-iptables' (see `--help`); exit codes: 0 success, 1 bad
//! options or rules that could not be applied, 126 the back end is unusable.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use iptables_init::options::{self, Cidrs, Options, Ports};
use iptables_init::{apply, plan};

/// istio-iptables-compatible traffic capture for the Isthmus sidecar.
#[derive(Debug, Parser)]
#[command(name = "iptables-init", version)]
struct Cli {
    /// Outbound capture port.
    #[arg(short = 'p', long = "envoy-port", env = "ENVOY_PORT", default_value_t = 15001)]
    proxy_port: u16,
    /// Inbound capture port.
    #[arg(short = 'z', long = "inbound-capture-port", env = "INBOUND_CAPTURE_PORT", default_value_t = 15006)]
    inbound_port: u16,
    /// Inbound tunnel port (never captured).
    #[arg(short = 'e', long = "inbound-tunnel-port", env = "INBOUND_TUNNEL_PORT", default_value_t = 15008)]
    tunnel_port: u16,
    /// Proxy uid (its traffic is never captured).
    #[arg(short = 'u', long = "proxy-uid", env = "PROXY_UID", default_value_t = 1337)]
    uid: u32,
    /// Proxy gid (defaults to the uid).
    #[arg(short = 'g', long = "proxy-gid", env = "PROXY_GID")]
    gid: Option<u32>,
    /// Inbound interception mode: REDIRECT or TPROXY.
    #[arg(
        short = 'm',
        long = "istio-inbound-interception-mode",
        env = "INBOUND_INTERCEPTION_MODE",
        default_value = "REDIRECT"
    )]
    mode: String,
    /// Outbound include CIDRs (`*` = all, empty = none).
    #[arg(
        short = 'i',
        long = "istio-service-cidr",
        env = "OUTBOUND_IP_RANGES_INCLUDE",
        default_value = "*",
        allow_hyphen_values = true
    )]
    include: String,
    /// Outbound exclude CIDRs.
    #[arg(short = 'x', long = "istio-service-exclude-cidr", env = "OUTBOUND_IP_RANGES_EXCLUDE", default_value = "")]
    exclude: String,
    /// Inbound include ports (`*` = all, empty = none).
    #[arg(short = 'b', long = "istio-inbound-ports", env = "INBOUND_PORTS_INCLUDE", default_value = "*")]
    inbound_ports: String,
    /// Inbound exclude ports (only with `-b '*'`).
    #[arg(short = 'd', long = "istio-local-exclude-ports", env = "INBOUND_PORTS_EXCLUDE", default_value = "")]
    inbound_exclude: String,
    /// Outbound include ports.
    #[arg(short = 'q', long = "istio-include-outbound-ports", env = "OUTBOUND_PORTS_INCLUDE", default_value = "")]
    outbound_include: String,
    /// Outbound exclude ports.
    #[arg(
        short = 'o',
        long = "istio-local-outbound-ports-exclude",
        env = "OUTBOUND_PORTS_EXCLUDE",
        default_value = ""
    )]
    outbound_exclude: String,
    /// Virtual interfaces whose inbound traffic is treated as outbound.
    #[arg(short = 'k', long = "kube-virt-interfaces", env = "KUBE_VIRT_INTERFACES", default_value = "")]
    virtual_interfaces: String,
    /// Interfaces excluded from capture.
    #[arg(short = 'c', long = "exclude-interfaces", env = "EXCLUDE_INTERFACES", default_value = "")]
    exclude_interfaces: String,
    /// TPROXY mark.
    #[arg(short = 't', long = "inbound-tproxy-mark", default_value_t = 1337)]
    mark: u32,
    /// TPROXY routing table.
    #[arg(short = 'r', long = "inbound-tproxy-route-table", default_value_t = 133)]
    table: u32,
    /// Capture DNS to the agent on 15053.
    #[arg(long = "redirect-dns", env = "ISTIO_META_DNS_CAPTURE")]
    redirect_dns: bool,
    /// Capture all port-53 traffic, not only the resolv.conf servers.
    #[arg(long = "capture-all-dns")]
    capture_all_dns: bool,
    /// Also install IPv6 rules (default: when the pod has a global IPv6 address).
    #[arg(long = "ipv6", env = "ENABLE_INBOUND_IPV6")]
    ipv6: bool,
    /// Print the rules and change nothing.
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// Remove Istio's rules and exit.
    #[arg(long = "cleanup", alias = "cleanup-only")]
    cleanup: bool,
    /// Istio's logging scopes (`default:info`), as the injector passes them to istio-iptables;
    /// accepted so an injected pod starts. iptables-init prints only what it applies.
    #[arg(long = "log_output_level", alias = "log-output-level")]
    log_output_level: Option<String>,
    /// Istio's JSON log switch; accepted for the same reason.
    #[arg(long = "log_as_json", alias = "log-as-json")]
    log_as_json: bool,
}

fn words(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|w| !w.is_empty()).map(String::from).collect()
}

fn options(cli: &Cli) -> Result<Options, options::OptionsError> {
    let list = |p: Ports| match p {
        Ports::List(v) => v,
        _ => Vec::new(),
    };
    let exclude_cidrs = match options::cidrs("-x", &cli.exclude, false)? {
        Cidrs::List(v) => v,
        _ => Vec::new(),
    };
    let exclude_inbound = list(options::ports("-d", &cli.inbound_exclude, false)?);
    let ipv6 = cli.ipv6 || pod_has_ipv6();
    let o = Options {
        proxy_port: cli.proxy_port,
        inbound_port: cli.inbound_port,
        tunnel_port: cli.tunnel_port,
        uid: cli.uid,
        gid: cli.gid.unwrap_or(cli.uid),
        mode: options::mode(&cli.mode)?,
        include_cidrs: options::cidrs("-i", &cli.include, true)?,
        exclude_cidrs,
        include_inbound: options::ports("-b", &cli.inbound_ports, true)?,
        exclude_inbound,
        include_outbound_ports: list(options::ports("-q", &cli.outbound_include, false)?),
        exclude_outbound_ports: list(options::ports("-o", &cli.outbound_exclude, false)?),
        virtual_interfaces: words(&cli.virtual_interfaces),
        exclude_interfaces: words(&cli.exclude_interfaces),
        mark: cli.mark,
        route_table: cli.table,
        redirect_dns: cli.redirect_dns,
        capture_all_dns: cli.capture_all_dns,
        dns_servers: std::fs::read_to_string("/etc/resolv.conf")
            .map(|t| options::resolv_conf_servers(&t))
            .unwrap_or_default(),
        ipv6,
    };
    o.validate()?;
    Ok(o)
}

/// A global (non-loopback, non-link-local) IPv6 address on any interface.
fn pod_has_ipv6() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6")
        .map(|t| t.lines().any(|l| !l.starts_with("00000000000000000000000000000001") && !l.starts_with("fe80")))
        .unwrap_or(false)
}

fn main() -> ExitCode {
    // clap exits 2 on a bad flag; istio-iptables' contract is 1 for any bad input.
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(1);
        }
    };
    let opts = match options(&cli) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("iptables-init: {e}");
            return ExitCode::from(1);
        }
    };
    let plan = plan::plan(&opts);
    if cli.dry_run {
        print!("{}", plan.v4);
        if opts.ipv6 {
            print!("{}", plan.v6);
        }
        for r in &plan.routes {
            println!("# {}", r.join(" "));
        }
        return ExitCode::SUCCESS;
    }
    let backend = apply::detect_backend();
    if std::process::Command::new(format!("{}-save", backend.v4)).output().is_err() {
        eprintln!("iptables-init: no usable iptables back end ({} not found)", backend.v4);
        return ExitCode::from(126);
    }
    if cli.cleanup {
        for f in [plan::Family::V4, plan::Family::V6] {
            if let Err(e) = backend.cleanup(f) {
                if f == plan::Family::V4 || opts.ipv6 {
                    eprintln!("iptables-init: cleanup failed: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        println!("iptables-init: Istio rules removed ({})", backend.v4);
        return ExitCode::SUCCESS;
    }
    match apply::apply(&backend, &plan) {
        Ok(what) => {
            println!("iptables-init: {what} ({})", backend.v4);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("iptables-init: {e}");
            ExitCode::from(1)
        }
    }
}
