//! `envoy.filters.http.rbac`: the shadow rules are evaluated for stats, the enforced rules
//! decide; a denied request gets Envoy's `403 RBAC: access denied` and the matched policy in
//! the access log's response code details.

use http::{Request, StatusCode};

use super::{Input, Step};
use crate::config::filters::rbac::HttpRbac;
use crate::config::filters::HttpFilter;
use crate::l7::record::Record;
use crate::l7::reply::filter_reply;
use crate::policy::rbac::{evaluate, Attrs, Peer, RequestAttrs};

const ALLOWED: usize = 0;
const DENIED: usize = 1;
const SHADOW_ALLOWED: usize = 2;
const SHADOW_DENIED: usize = 3;

/// The RBAC decision for one request.
pub fn on_request<B>(c: &HttpRbac, f: &HttpFilter, req: &Request<B>, input: &Input<'_>, rec: &mut Record) -> Step {
    let stats = f.stats.counters.get_or_init(|| {
        let l = super::hcm_label(input);
        ["allowed", "denied", "shadow_allowed", "shadow_denied"]
            .iter()
            .map(|n| metrics::counter!(format!("envoy_http_rbac_{n}"), l.0 => l.1.clone()))
            .collect()
    });
    let ctx = input.ctx;
    let attrs = Attrs {
        peer: ctx.peer,
        local: ctx.local,
        sni: ctx.sni.as_deref(),
        // Envoy's `authenticated` asks for TLS, not for a client certificate: without one the
        // names are empty (and only a matcher that accepts empty matches).
        cert: ctx.tls.as_ref().map(|t| Peer { sans: &t.sans, subject: &t.subject }),
        request: Some(RequestAttrs {
            method: req.method(),
            path: req.uri().path_and_query().map_or("/", |p| p.as_str()),
            host: input.host,
            scheme: if ctx.tls.is_some() { "https" } else { "http" },
            headers: req.headers(),
            // Parsing x-forwarded-for costs an allocation: only for rules that read it.
            remote: if c.reads_remote_ip { remote_address(req.headers(), input) } else { ctx.peer.ip() },
        }),
    };
    if let Some(shadow) = &c.shadow {
        let v = evaluate(shadow, &attrs);
        stats[if v.allowed { SHADOW_ALLOWED } else { SHADOW_DENIED }].increment(1);
    }
    let Some(rules) = &c.rules else { return Step::Continue };
    let v = evaluate(rules, &attrs);
    if v.allowed {
        stats[ALLOWED].increment(1);
        return Step::Continue;
    }
    stats[DENIED].increment(1);
    rec.entry.response_code_details =
        Some(format!("rbac_access_denied_matched_policy[{}]", v.matched.unwrap_or("none")));
    Step::Reply(filter_reply(None, StatusCode::FORBIDDEN, "RBAC: access denied", input.grpc, None))
}

/// Envoy's downstream remote address: with `use_remote_address` and no trusted hops the peer;
/// otherwise the `x-forwarded-for` entry `xff_num_trusted_hops` from the right (the rightmost
/// without `use_remote_address`), falling back to the peer.
fn remote_address(h: &http::HeaderMap, input: &Input<'_>) -> std::net::IpAddr {
    let hcm = &input.ctx.hcm;
    let peer = input.ctx.peer.ip();
    let hops = hcm.xff_trusted_hops as usize;
    if hcm.use_remote_address && hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = h
        .get_all(http::header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let from_right = if hcm.use_remote_address { hops.saturating_sub(1) } else { hops };
    entries.len().checked_sub(from_right + 1).and_then(|i| entries.get(i)).and_then(|e| e.parse().ok()).unwrap_or(peer)
}
