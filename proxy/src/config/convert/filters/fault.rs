//! `HTTPFault` → model (listener level and per route).

use std::sync::Arc;

use http::StatusCode;
use xds_client::protos::envoy::extensions::filters::common::fault::v3 as common;
use xds_client::protos::envoy::extensions::filters::http::fault::v3 as proto;

use super::super::common::{duration, fraction};
use super::super::fields::{check, FieldPolicy};
use crate::config::error::{ConfigError, Path};
use crate::config::filters::fault::{Abort, AbortSource, Delay, DelaySource, Fault};
use crate::config::filters::Fraction;

pub(in crate::config::convert) const FAULT: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.http.fault.v3.HTTPFault",
    honoured: &["delay", "abort", "headers", "upstream_cluster", "downstream_nodes", "max_active_faults"],
    // Runtime keys name overrides in Envoy's runtime layer, which Isthmus does not have: the
    // configured values are what applies, as in an Envoy with an empty runtime.
    ignored: &[
        "delay_percent_runtime",
        "abort_percent_runtime",
        "delay_duration_runtime",
        "abort_http_status_runtime",
        "max_active_faults_runtime",
        "response_rate_limit_percent_runtime",
        "abort_grpc_status_runtime",
        "disable_downstream_cluster_stats",
    ],
};

pub(in crate::config::convert) const FAULT_DELAY: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.common.fault.v3.FaultDelay",
    honoured: &["fixed_delay", "header_delay", "percentage"],
    ignored: &[],
};

pub(in crate::config::convert) const FAULT_ABORT: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.http.fault.v3.FaultAbort",
    honoured: &["http_status", "grpc_status", "header_abort", "percentage", "response_body"],
    ignored: &[],
};

/// Converts one `HTTPFault`.
pub fn fault(f: &proto::HttpFault, path: &Path) -> Result<Fault, ConfigError> {
    check(f, &FAULT, path)?;
    let delay = f.delay.as_ref().map(|d| delay(d, &path.field("delay"))).transpose()?;
    let abort = f.abort.as_ref().map(|a| abort(a, &path.field("abort"))).transpose()?;
    let headers = f
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| super::super::route::header_matcher(h, &path.field("headers").item(i, &h.name)))
        .collect::<Result<_, _>>()?;
    Ok(Fault {
        delay,
        abort,
        headers,
        upstream_cluster: (!f.upstream_cluster.is_empty()).then(|| f.upstream_cluster.clone()),
        downstream_nodes: f.downstream_nodes.clone(),
        max_active_faults: f.max_active_faults.map(|v| u64::from(v.value)),
        active: Arc::default(),
    })
}

fn delay(d: &common::FaultDelay, path: &Path) -> Result<Delay, ConfigError> {
    use common::fault_delay::FaultDelaySecifier as S;
    check(d, &FAULT_DELAY, path)?;
    let source = match &d.fault_delay_secifier {
        Some(S::FixedDelay(x)) => {
            let d = duration(x, &path.field("fixed_delay"))?;
            if d.is_zero() {
                return Err(path.err_at("fixed_delay", "must be greater than 0"));
            }
            DelaySource::Fixed(d)
        }
        Some(S::HeaderDelay(_)) => DelaySource::Header,
        None => return Err(path.err("one of fixed_delay or header_delay is required")),
    };
    Ok(Delay { source, percentage: fraction(d.percentage.as_ref(), Fraction::NONE, &path.field("percentage"))? })
}

fn abort(a: &proto::FaultAbort, path: &Path) -> Result<Abort, ConfigError> {
    use proto::fault_abort::ErrorType as E;
    check(a, &FAULT_ABORT, path)?;
    let source = match &a.error_type {
        Some(E::HttpStatus(s)) => match u16::try_from(*s).ok().filter(|s| (200..600).contains(s)) {
            Some(s) => AbortSource::Http(
                StatusCode::from_u16(s).map_err(|_| path.err_at("http_status", format!("{s} is not a status")))?,
            ),
            None => return Err(path.err_at("http_status", format!("{s} is not in [200, 600)"))),
        },
        Some(E::GrpcStatus(s)) => AbortSource::Grpc(
            u16::try_from(*s).map_err(|_| path.err_at("grpc_status", format!("{s} is not a gRPC status")))?,
        ),
        Some(E::HeaderAbort(_)) => AbortSource::Header,
        None => return Err(path.err("one of http_status, grpc_status or header_abort is required")),
    };
    Ok(Abort {
        source,
        percentage: fraction(a.percentage.as_ref(), Fraction::NONE, &path.field("percentage"))?,
        body: (!a.response_body.is_empty()).then(|| a.response_body.clone()),
    })
}
