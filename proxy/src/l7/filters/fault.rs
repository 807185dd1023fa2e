//! `envoy.filters.http.fault`: delays and aborts, as Envoy 1.40 injects them. The delay and
//! the abort are decided independently (each by its own percentage); a delayed request is
//! aborted after its delay when both apply; `max_active_faults` bounds the faults in flight;
//! `x-envoy-fault-*` headers drive header-controlled faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Request, StatusCode};

use super::{Input, Step};
use crate::config::filters::fault::{Abort, AbortSource, DelaySource, Fault};
use crate::config::filters::{Fraction, HttpFilter};
use crate::config::route::RouteAction;
use crate::l7::record::Record;
use crate::l7::reply::{filter_reply, Flag};

const DELAY_HEADER: &str = "x-envoy-fault-delay-request";
const DELAY_PERCENT_HEADER: &str = "x-envoy-fault-delay-request-percentage";
const ABORT_HEADER: &str = "x-envoy-fault-abort-request";
const ABORT_GRPC_HEADER: &str = "x-envoy-fault-abort-grpc-request";
const ABORT_PERCENT_HEADER: &str = "x-envoy-fault-abort-request-percentage";
const DOWNSTREAM_NODE: &str = "x-envoy-downstream-service-node";

const DELAYS: usize = 0;
const ABORTS: usize = 1;
const OVERFLOW: usize = 2;

/// Holds one `active_faults` slot until the request ends (it lives in the request record).
#[derive(Debug)]
pub struct ActiveFault {
    count: Arc<AtomicU64>,
    gauge: metrics::Gauge,
}

impl Drop for ActiveFault {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.gauge.decrement(1.0);
    }
}

/// The fault's decision for one request.
pub fn on_request<B>(c: &Fault, f: &HttpFilter, req: &Request<B>, input: &Input<'_>, rec: &mut Record) -> Step {
    if c.delay.is_none() && c.abort.is_none() {
        return Step::Continue;
    }
    let h = req.headers();
    if !applies(c, h, input) {
        return Step::Continue;
    }
    let stats = f.stats.counters.get_or_init(|| {
        let l = super::hcm_label(input);
        ["envoy_http_fault_delays_injected", "envoy_http_fault_aborts_injected", "envoy_http_fault_faults_overflow"]
            .iter()
            .map(|n| metrics::counter!(*n, l.0 => l.1.clone()))
            .collect()
    });
    let gauge = f.stats.gauge.get_or_init(|| {
        let l = super::hcm_label(input);
        metrics::gauge!("envoy_http_fault_active_faults", l.0 => l.1)
    });
    // The listener-level config owns the active count; route configs share it.
    let active = match &f.kind {
        crate::config::filters::HttpFilterKind::Fault(own) => &own.active,
        _ => &c.active,
    };
    let delay = delay(c, h);
    let abort = c.abort.as_ref().and_then(|a| abort(a, h));
    if delay.is_none() && abort.is_none() {
        return Step::Continue;
    }
    if let Some(max) = c.max_active_faults {
        if active.load(Ordering::Relaxed) >= max {
            stats[OVERFLOW].increment(1);
            return Step::Continue;
        }
    }
    active.fetch_add(1, Ordering::Relaxed);
    gauge.increment(1.0);
    rec.active_fault = Some(ActiveFault { count: active.clone(), gauge: gauge.clone() });
    let reply = abort.map(|(status, grpc)| {
        stats[ABORTS].increment(1);
        rec.flags.push(Flag::FaultInjected);
        rec.entry.response_code_details = Some("fault_filter_abort".into());
        let body = c.abort.as_ref().and_then(|a| a.body.as_deref()).unwrap_or("fault filter abort");
        filter_reply(Some(Flag::FaultInjected), status, body, input.grpc, grpc)
    });
    match delay {
        Some(d) => {
            stats[DELAYS].increment(1);
            rec.flags.insert(0, Flag::DelayInjected);
            Step::Delay(d, reply)
        }
        None => reply.map_or(Step::Continue, Step::Reply),
    }
}

/// `upstream_cluster`, `downstream_nodes` and `headers` all hold.
fn applies(c: &Fault, h: &HeaderMap, input: &Input<'_>) -> bool {
    if let Some(want) = &c.upstream_cluster {
        let cluster = input.route.and_then(|(_, r)| match &r.action {
            RouteAction::Forward(fwd) => match &fwd.target {
                crate::config::cluster::ClusterTarget::Single(name) => Some(name.as_str()),
                crate::config::cluster::ClusterTarget::Weighted(_) => None,
            },
            _ => None,
        });
        if cluster != Some(want.as_str()) {
            return false;
        }
    }
    if !c.downstream_nodes.is_empty() {
        let node = h.get(DOWNSTREAM_NODE).and_then(|v| v.to_str().ok());
        if !node.is_some_and(|n| c.downstream_nodes.iter().any(|d| d == n)) {
            return false;
        }
    }
    c.headers.iter().all(|m| {
        // Not-UTF-8 values count as present (read lossily), as in RBAC.
        let mut values = h.get_all(&m.name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()));
        let joined = values.next().map(|first| values.fold(first.into_owned(), |acc, v| acc + "," + &v));
        m.test.matches(joined.as_deref()) != m.invert
    })
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The percentage a header-controlled fault uses: the header's numerator over the configured
/// denominator, never above the configured share.
fn header_percentage(configured: Fraction, h: &HeaderMap, name: &str) -> Fraction {
    match header_u64(h, name) {
        Some(n) => Fraction {
            numerator: u32::try_from(n).unwrap_or(u32::MAX).min(configured.numerator),
            denominator: configured.denominator,
        },
        None => configured,
    }
}

fn delay(c: &Fault, h: &HeaderMap) -> Option<Duration> {
    let d = c.delay.as_ref()?;
    let (length, share) = match d.source {
        DelaySource::Fixed(x) => (x, d.percentage),
        DelaySource::Header => (
            Duration::from_millis(header_u64(h, DELAY_HEADER)?),
            header_percentage(d.percentage, h, DELAY_PERCENT_HEADER),
        ),
    };
    (!length.is_zero() && share.roll()).then_some(length)
}

/// The abort's HTTP status and gRPC status, when it fires.
fn abort(a: &Abort, h: &HeaderMap) -> Option<(StatusCode, Option<u16>)> {
    let (answer, share) = match a.source {
        AbortSource::Http(s) => ((s, None), a.percentage),
        AbortSource::Grpc(g) => ((StatusCode::OK, Some(g)), a.percentage),
        AbortSource::Header => {
            let http = header_u64(h, ABORT_HEADER)
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (200..600).contains(s))
                .and_then(|s| StatusCode::from_u16(s).ok());
            let grpc = header_u64(h, ABORT_GRPC_HEADER).and_then(|g| u16::try_from(g).ok());
            let answer = match (http, grpc) {
                // Envoy reads the gRPC status only when no HTTP status is asked for.
                (Some(s), _) => (s, None),
                (None, Some(g)) => (StatusCode::OK, Some(g)),
                (None, None) => return None,
            };
            (answer, header_percentage(a.percentage, h, ABORT_PERCENT_HEADER))
        }
    };
    share.roll().then_some(answer)
}
