//! `health_checks` → model: one HTTP or TCP check per cluster.

use xds_client::protos::envoy::config::core::v3 as core;

use super::common::duration;
use super::fields::{check, FieldPolicy};
use crate::config::error::{ConfigError, Path};
use crate::health::{HealthCheckConfig, Probe};

pub(super) const HEALTH_CHECK: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.HealthCheck",
    honoured: &[
        "timeout",
        "interval",
        "unhealthy_threshold",
        "healthy_threshold",
        "http_health_check",
        "tcp_health_check",
    ],
    ignored: &[
        "initial_jitter",
        "interval_jitter",
        "interval_jitter_percent",
        "reuse_connection",
        "no_traffic_interval",
        "no_traffic_healthy_interval",
        "unhealthy_interval",
        "unhealthy_edge_interval",
        "healthy_edge_interval",
        "event_log_path",
        "always_log_health_check_failures",
        "always_log_health_check_success",
    ],
};

pub(super) const HTTP_HC: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.HealthCheck.HttpHealthCheck",
    honoured: &["path", "host", "expected_statuses"],
    ignored: &["codec_client_type", "request_headers_to_add", "request_headers_to_remove"],
};

pub(super) const TCP_HC: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.HealthCheck.TcpHealthCheck",
    honoured: &["send", "receive"],
    ignored: &[],
};

/// Converts a cluster's `health_checks` (at most one is supported).
pub fn health_checks(
    hcs: &[core::HealthCheck],
    cluster: &str,
    path: &Path,
) -> Result<Option<HealthCheckConfig>, ConfigError> {
    use core::health_check::payload::Payload as P;
    use core::health_check::HealthChecker as H;
    let Some(hc) = hcs.first() else { return Ok(None) };
    if hcs.len() > 1 {
        return Err(path.item(1, "").err("only one health check per cluster is supported"));
    }
    let p = path.item(0, "");
    check(hc, &HEALTH_CHECK, &p)?;
    let req = |d: Option<&xds_client::protos::google::protobuf::Duration>, f: &str| match d {
        Some(d) => {
            let v = duration(d, &p.field(f))?;
            if v.is_zero() {
                return Err(p.err_at(f, "must be greater than 0"));
            }
            Ok(v)
        }
        None => Err(p.err_at(f, "is required")),
    };
    let timeout = req(hc.timeout.as_ref(), "timeout")?;
    let interval = req(hc.interval.as_ref(), "interval")?;
    let unhealthy_threshold =
        hc.unhealthy_threshold.map(|v| v.value).ok_or_else(|| p.err_at("unhealthy_threshold", "is required"))?;
    let healthy_threshold =
        hc.healthy_threshold.map(|v| v.value).ok_or_else(|| p.err_at("healthy_threshold", "is required"))?;
    let payload = |x: &core::health_check::Payload| match &x.payload {
        Some(P::Text(hex)) => decode_hex(hex),
        Some(P::Binary(b)) => Some(b.clone()),
        None => Some(Vec::new()),
    };
    let probe = match &hc.health_checker {
        Some(H::HttpHealthCheck(h)) => {
            let hp = p.field("http_health_check");
            check(h, &HTTP_HC, &hp)?;
            if h.path.is_empty() {
                return Err(hp.err_at("path", "is required"));
            }
            let expected = if h.expected_statuses.is_empty() {
                vec![(200, 201)]
            } else {
                h.expected_statuses
                    .iter()
                    .map(|r| match (u16::try_from(r.start), u16::try_from(r.end)) {
                        (Ok(a), Ok(b)) if a >= 100 && b <= 600 && a < b => Ok((a, b)),
                        _ => {
                            Err(hp
                                .err_at("expected_statuses", format!("[{}, {}) is not a status range", r.start, r.end)))
                        }
                    })
                    .collect::<Result<_, _>>()?
            };
            Probe::Http {
                path: h.path.clone(),
                host: if h.host.is_empty() { cluster.to_string() } else { h.host.clone() },
                expected,
            }
        }
        Some(H::TcpHealthCheck(t)) => {
            let tp = p.field("tcp_health_check");
            check(t, &TCP_HC, &tp)?;
            let send = match &t.send {
                Some(s) => payload(s).ok_or_else(|| tp.err_at("send", "text must be hex"))?,
                None => Vec::new(),
            };
            let mut receive = Vec::new();
            for r in &t.receive {
                receive.extend(payload(r).ok_or_else(|| tp.err_at("receive", "text must be hex"))?);
            }
            Probe::Tcp { send, receive }
        }
        _ => return Err(p.err("only http_health_check and tcp_health_check are supported")),
    };
    Ok(Some(HealthCheckConfig {
        probe,
        timeout,
        interval,
        unhealthy_threshold: unhealthy_threshold.max(1),
        healthy_threshold: healthy_threshold.max(1),
    }))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}
