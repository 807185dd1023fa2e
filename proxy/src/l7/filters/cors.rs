//! `envoy.filters.http.cors`: answers preflights and marks actual responses, with the route's
//! (else the virtual host's) `CorsPolicy`, as Envoy 1.40's CORS filter does.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};

use super::{Input, ResponseHeaders, Step};
use crate::config::filters::cors::CorsPolicy;
use crate::config::filters::HttpFilter;
use crate::l7::reply;

const VALID: usize = 0;
const INVALID: usize = 1;

const REQUEST_PRIVATE_NETWORK: HeaderName = HeaderName::from_static("access-control-request-private-network");
const ALLOW_PRIVATE_NETWORK: HeaderName = HeaderName::from_static("access-control-allow-private-network");

/// The CORS decision for one request.
pub fn on_request<B>(
    policy: Option<&CorsPolicy>,
    f: &HttpFilter,
    req: &Request<B>,
    input: &Input<'_>,
    out: &mut ResponseHeaders,
) -> Step {
    let Some(p) = policy else { return Step::Continue };
    let Some(origin) = req.headers().get(ORIGIN).filter(|o| !o.is_empty()) else { return Step::Continue };
    let enabled = p.enabled.roll();
    if !enabled && !p.shadow.roll() {
        return Step::Continue;
    }
    let stats = f.stats.counters.get_or_init(|| {
        let l = super::hcm_label(input);
        ["envoy_http_cors_origin_valid", "envoy_http_cors_origin_invalid"]
            .iter()
            .map(|n| metrics::counter!(*n, l.0 => l.1.clone()))
            .collect()
    });
    let preflight = req.method() == Method::OPTIONS
        && req.headers().get(ACCESS_CONTROL_REQUEST_METHOD).is_some_and(|m| !m.is_empty());
    // As Envoy's `isOriginAllowed`: a matcher that accepts `*` allows every origin.
    let allowed =
        origin.to_str().is_ok_and(|o| p.allow_origins.iter().any(|m| m.matches(Some("*")) || m.matches(Some(o))));
    if !allowed {
        stats[INVALID].increment(1);
        if enabled && preflight && !p.forward_not_matching_preflights {
            // Envoy 1.40 answers it as a preflight without the allowed origin (seen side by
            // side in tests/tests/policy_filters.rs).
            let mut r = Response::new(reply::empty());
            preflight_headers(p, req.headers(), r.headers_mut(), false);
            return Step::Reply(r);
        }
        return Step::Continue;
    }
    stats[VALID].increment(1);
    if !enabled {
        return Step::Continue;
    }
    if preflight {
        let mut r = Response::new(reply::empty());
        *r.status_mut() = StatusCode::OK;
        r.headers_mut().insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        preflight_headers(p, req.headers(), r.headers_mut(), true);
        return Step::Reply(r);
    }
    out.set(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if p.allow_credentials {
        out.set(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    if let Some(v) = &p.expose_headers {
        out.set(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
    }
    Step::Continue
}

/// A preflight answer's headers besides the origin. `*` as allowed methods or headers echoes
/// what the preflight asks for, as Envoy does; `expose` adds the exposed headers (Envoy sends
/// them on a matching preflight only).
fn preflight_headers(p: &CorsPolicy, asked: &http::HeaderMap, h: &mut http::HeaderMap, expose: bool) {
    if p.allow_credentials {
        h.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    let echo = |v: &Option<HeaderValue>, request: HeaderName| -> Option<HeaderValue> {
        match v {
            Some(v) if v.as_bytes() == b"*" => asked.get(request).cloned().or_else(|| Some(v.clone())),
            other => other.clone(),
        }
    };
    let methods = echo(&p.allow_methods, ACCESS_CONTROL_REQUEST_METHOD);
    let headers = echo(&p.allow_headers, ACCESS_CONTROL_REQUEST_HEADERS);
    let exposed = if expose { p.expose_headers.clone() } else { None };
    for (name, value) in [
        (ACCESS_CONTROL_ALLOW_METHODS, methods),
        (ACCESS_CONTROL_ALLOW_HEADERS, headers),
        (ACCESS_CONTROL_EXPOSE_HEADERS, exposed),
        (ACCESS_CONTROL_MAX_AGE, p.max_age.clone()),
    ] {
        if let Some(v) = value {
            h.insert(name, v);
        }
    }
    if p.allow_private_network_access && asked.get(REQUEST_PRIVATE_NETWORK).is_some_and(|v| v.as_bytes() == b"true") {
        h.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
    }
}
