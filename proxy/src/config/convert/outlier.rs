//! `OutlierDetection` → model, with Envoy's defaults and its validation (percentages ≤ 100,
//! `max_ejection_time` ≥ `base_ejection_time`).

use std::time::Duration;

use xds_client::protos::envoy::config::cluster::v3 as proto;

use super::common::duration;
use super::fields::{check, FieldPolicy};
use crate::config::error::{ConfigError, Path};
use crate::outlier::OutlierConfig;

pub(super) const OUTLIER: FieldPolicy = FieldPolicy {
    message: "envoy.config.cluster.v3.OutlierDetection",
    honoured: &[
        "consecutive_5xx",
        "enforcing_consecutive_5xx",
        "consecutive_gateway_failure",
        "enforcing_consecutive_gateway_failure",
        "split_external_local_origin_errors",
        "consecutive_local_origin_failure",
        "enforcing_consecutive_local_origin_failure",
        "interval",
        "base_ejection_time",
        "max_ejection_time",
        "max_ejection_time_jitter",
        "max_ejection_percent",
        "always_eject_one_host",
        "success_rate_minimum_hosts",
        "success_rate_request_volume",
        "success_rate_stdev_factor",
        "enforcing_success_rate",
        "enforcing_local_origin_success_rate",
        "failure_percentage_threshold",
        "enforcing_failure_percentage",
        "enforcing_failure_percentage_local_origin",
        "failure_percentage_minimum_hosts",
        "failure_percentage_request_volume",
        "successful_active_health_check_uneject_host",
    ],
    ignored: &[],
};

/// Converts a cluster's `outlier_detection`.
pub fn outlier_detection(o: &proto::OutlierDetection, path: &Path) -> Result<OutlierConfig, ConfigError> {
    check(o, &OUTLIER, path)?;
    let d = OutlierConfig::default();
    let pct = |v: Option<u32>, default: u32, field: &str| -> Result<u32, ConfigError> {
        let v = v.unwrap_or(default);
        if v > 100 {
            return Err(path.err_at(field, format!("{v} is above 100 (a percentage)")));
        }
        Ok(v)
    };
    let num = |v: Option<u32>, default: u32| v.unwrap_or(default);
    let dur = |v: Option<&xds_client::protos::google::protobuf::Duration>, default: Duration, field: &str| match v {
        Some(x) => duration(x, &path.field(field)),
        None => Ok(default),
    };
    let w = |x: &Option<u32>| *x;
    let base = dur(o.base_ejection_time.as_ref(), d.base_ejection_time, "base_ejection_time")?;
    let max = dur(o.max_ejection_time.as_ref(), base.max(d.max_ejection_time), "max_ejection_time")?;
    if max < base {
        return Err(path.err_at("max_ejection_time", "must not be shorter than base_ejection_time"));
    }
    let interval = dur(o.interval.as_ref(), d.interval, "interval")?;
    if interval.is_zero() {
        return Err(path.err_at("interval", "must be greater than 0"));
    }
    let v = |x: &Option<u32>| w(x);
    Ok(OutlierConfig {
        consecutive_5xx: num(o.consecutive_5xx.map(|x| x.value), d.consecutive_5xx),
        enforcing_consecutive_5xx: pct(
            o.enforcing_consecutive_5xx.map(|x| x.value),
            d.enforcing_consecutive_5xx,
            "enforcing_consecutive_5xx",
        )?,
        consecutive_gateway_failure: num(o.consecutive_gateway_failure.map(|x| x.value), d.consecutive_gateway_failure),
        enforcing_consecutive_gateway_failure: pct(
            o.enforcing_consecutive_gateway_failure.map(|x| x.value),
            d.enforcing_consecutive_gateway_failure,
            "enforcing_consecutive_gateway_failure",
        )?,
        split_external_local_origin_errors: o.split_external_local_origin_errors,
        consecutive_local_origin_failure: num(
            o.consecutive_local_origin_failure.map(|x| x.value),
            d.consecutive_local_origin_failure,
        ),
        enforcing_consecutive_local_origin_failure: pct(
            o.enforcing_consecutive_local_origin_failure.map(|x| x.value),
            d.enforcing_consecutive_local_origin_failure,
            "enforcing_consecutive_local_origin_failure",
        )?,
        interval,
        base_ejection_time: base,
        max_ejection_time: max,
        max_ejection_time_jitter: dur(o.max_ejection_time_jitter.as_ref(), Duration::ZERO, "max_ejection_time_jitter")?,
        max_ejection_percent: pct(
            o.max_ejection_percent.map(|x| x.value),
            d.max_ejection_percent,
            "max_ejection_percent",
        )?,
        always_eject_one_host: o.always_eject_one_host.map(|b| b.value).unwrap_or(false),
        success_rate_minimum_hosts: num(o.success_rate_minimum_hosts.map(|x| x.value), d.success_rate_minimum_hosts),
        success_rate_request_volume: num(o.success_rate_request_volume.map(|x| x.value), d.success_rate_request_volume),
        success_rate_stdev_factor: num(o.success_rate_stdev_factor.map(|x| x.value), d.success_rate_stdev_factor),
        enforcing_success_rate: pct(
            o.enforcing_success_rate.map(|x| x.value),
            d.enforcing_success_rate,
            "enforcing_success_rate",
        )?,
        enforcing_local_origin_success_rate: pct(
            o.enforcing_local_origin_success_rate.map(|x| x.value),
            d.enforcing_local_origin_success_rate,
            "enforcing_local_origin_success_rate",
        )?,
        failure_percentage_threshold: pct(
            o.failure_percentage_threshold.map(|x| x.value),
            d.failure_percentage_threshold,
            "failure_percentage_threshold",
        )?,
        enforcing_failure_percentage: pct(
            o.enforcing_failure_percentage.map(|x| x.value),
            d.enforcing_failure_percentage,
            "enforcing_failure_percentage",
        )?,
        enforcing_failure_percentage_local_origin: pct(
            o.enforcing_failure_percentage_local_origin.map(|x| x.value),
            d.enforcing_failure_percentage_local_origin,
            "enforcing_failure_percentage_local_origin",
        )?,
        failure_percentage_minimum_hosts: num(
            v(&o.failure_percentage_minimum_hosts.map(|x| x.value)),
            d.failure_percentage_minimum_hosts,
        ),
        failure_percentage_request_volume: num(
            v(&o.failure_percentage_request_volume.map(|x| x.value)),
            d.failure_percentage_request_volume,
        ),
        latency: None,
        uneject_on_active_hc: o.successful_active_health_check_uneject_host.is_none_or(|b| b.value),
    })
}

/// `isthmus.io/outlier` metadata: `{latency: {factor: 3, intervals: 2, min_hosts: 3}}`.
pub fn latency(v: &serde_json::Value, path: &Path) -> Result<crate::outlier::LatencyOutlier, ConfigError> {
    let l = v.get("latency").ok_or_else(|| path.err_at("latency", "is required"))?;
    let p = path.field("latency");
    let factor = l.get("factor").and_then(|x| x.as_f64()).unwrap_or(3.0);
    if factor.is_nan() || factor <= 1.0 {
        return Err(p.err_at("factor", format!("{factor} must be above 1")));
    }
    let int = |k: &str, d: u64| l.get(k).and_then(|x| x.as_f64()).map_or(d, |f| f as u64);
    let intervals = u32::try_from(int("intervals", 2)).unwrap_or(u32::MAX).max(1);
    let min_hosts = u32::try_from(int("min_hosts", 3)).unwrap_or(u32::MAX).max(2);
    Ok(crate::outlier::LatencyOutlier { factor, intervals, min_hosts })
}
