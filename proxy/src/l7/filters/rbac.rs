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
        cert: ctx.tls.as_ref().filter(|t| t.cert_hash.is_some()).map(|t| Peer { sans: &t.sans, subject: &t.subject }),
        request: Some(RequestAttrs {
            method: req.method(),
            path: req.uri().path_and_query().map_or("/", |p| p.as_str()),
            host: input.host,
            scheme: if ctx.tls.is_some() { "https" } else { "http" },
            headers: req.headers(),
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
