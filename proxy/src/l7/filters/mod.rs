//! The HTTP policy filter chain: the HCM's filters run in `http_filters` order before the
//! router; each may let the request through, hold it (a fault delay), or answer it locally,
//! which ends the chain (Envoy's `StopIteration` with a local reply). A route's
//! `typed_per_filter_config` replaces the filter's own config for that route.
//!
//! A new filter is one module here with an `on_request` function and one line in [`run`];
//! the request path itself only calls [`run`], and only when the chain is not empty.

pub mod cors;
pub mod fault;
pub mod local_rate_limit;
pub mod rbac;

use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response};

use super::record::Record;
use super::ConnCtx;
use crate::cluster::ProxyBody;
use crate::config::filters::{HttpFilter, HttpFilterKind, RouteFilterConfig};
use crate::config::route::{Route, VirtualHost};

/// What the filters see of a request, besides its headers.
pub struct Input<'a> {
    /// The connection.
    pub ctx: &'a ConnCtx,
    /// The matched virtual host and route (`None` when none matched: the filters still run,
    /// with their own configs, before the router answers 404).
    pub route: Option<(&'a VirtualHost, &'a Route)>,
    /// `Host`/`:authority`.
    pub host: &'a str,
    /// A gRPC request (local replies become trailers-only gRPC responses).
    pub grpc: bool,
}

/// One filter's decision.
pub enum Step {
    /// Next filter.
    Continue,
    /// Answer now; the chain stops.
    Reply(Response<ProxyBody>),
    /// Wait, then answer with the reply if any, else continue (a fault delay, possibly
    /// followed by its abort).
    Delay(Duration, Option<Response<ProxyBody>>),
}

/// Headers the filters want on whatever response goes back (CORS, rate-limit headers).
#[derive(Debug, Default)]
pub struct ResponseHeaders(Vec<(HeaderName, HeaderValue)>);

impl ResponseHeaders {
    /// Adds one (replacing a value the response already has).
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.0.push((name, value));
    }

    /// Writes them onto `resp`.
    pub fn apply(self, resp: &mut Response<ProxyBody>) {
        for (n, v) in self.0 {
            resp.headers_mut().insert(n, v);
        }
    }
}

/// The config a filter runs with on this request: the route's, else the virtual host's,
/// else its own; `None` when a route disabled it.
fn effective<'a>(f: &'a HttpFilter, input: &Input<'a>) -> Option<Effective<'a>> {
    let over = input.route.and_then(|(vh, r)| r.per_filter.get(&f.name).or_else(|| vh.per_filter.get(&f.name)));
    Some(match (over, &f.kind) {
        (Some(RouteFilterConfig::Disabled), _) => return None,
        (Some(RouteFilterConfig::Fault(x)), HttpFilterKind::Fault(_)) => Effective::Fault(x),
        (Some(RouteFilterConfig::Cors(x)), HttpFilterKind::Cors) => Effective::Cors(Some(x)),
        (Some(RouteFilterConfig::LocalRateLimit(x)), HttpFilterKind::LocalRateLimit(_)) => Effective::RateLimit(x),
        (Some(RouteFilterConfig::Rbac(x)), HttpFilterKind::Rbac(_)) => Effective::Rbac(x.as_deref()?),
        // An override of another filter's type is ignored, as Envoy ignores a per-route
        // config its filter cannot read.
        (_, HttpFilterKind::Fault(x)) => Effective::Fault(x),
        (_, HttpFilterKind::Cors) => Effective::Cors(None),
        (_, HttpFilterKind::LocalRateLimit(x)) => Effective::RateLimit(x),
        (_, HttpFilterKind::Rbac(x)) => Effective::Rbac(x),
    })
}

enum Effective<'a> {
    Fault(&'a crate::config::filters::fault::Fault),
    Cors(Option<&'a crate::config::filters::cors::CorsPolicy>),
    RateLimit(&'a crate::config::filters::rate_limit::HttpLocalRateLimit),
    Rbac(&'a crate::config::filters::rbac::HttpRbac),
}

/// Runs the chain. `Some` is the local reply that ends the request; `out` collects headers
/// for the response either way.
pub async fn run<B>(
    chain: &[HttpFilter],
    req: &mut Request<B>,
    input: &Input<'_>,
    rec: &mut Record,
    out: &mut ResponseHeaders,
) -> Option<Response<ProxyBody>> {
    for f in chain {
        let Some(cfg) = effective(f, input) else { continue };
        let step = match cfg {
            Effective::Fault(c) => fault::on_request(c, f, req, input, rec),
            Effective::Cors(c) => cors::on_request(c, f, req, input, out),
            Effective::RateLimit(c) => local_rate_limit::on_request(c, req, input, rec, out),
            Effective::Rbac(c) => rbac::on_request(c, f, req, input, rec),
        };
        match step {
            Step::Continue => {}
            Step::Reply(r) => return Some(r),
            Step::Delay(d, then) => {
                tokio::time::sleep(d).await;
                if then.is_some() {
                    return then;
                }
                // A delay with no abort after it is over: its `max_active_faults` slot is
                // free again, as in Envoy.
                rec.active_fault = None;
            }
        }
    }
    None
}

/// The HCM's stat prefix label every filter counter carries.
pub(crate) fn hcm_label(input: &Input<'_>) -> (&'static str, String) {
    ("envoy_http_conn_manager_prefix", input.ctx.hcm.stat_prefix.clone())
}
