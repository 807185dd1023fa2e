//! `envoy.filters.http.local_ratelimit`: one token bucket per filter (and per route that
//! brings its own config); refused requests get the configured status (429) with
//! `local_rate_limited`, the `RL` flag and, when asked, the draft-03 `x-ratelimit-*` headers.

use http::{HeaderName, HeaderValue, Request};

use super::{Input, ResponseHeaders, Step};
use crate::config::filters::rate_limit::HttpLocalRateLimit;
use crate::l7::record::Record;
use crate::l7::reply::{filter_reply, Flag};

const ENABLED: usize = 0;
const ENFORCED: usize = 1;
const LIMITED: usize = 2;
const OK: usize = 3;

const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The rate-limit decision for one request.
pub fn on_request<B>(
    c: &HttpLocalRateLimit,
    req: &mut Request<B>,
    input: &Input<'_>,
    rec: &mut Record,
    out: &mut ResponseHeaders,
) -> Step {
    if !c.enabled.roll() {
        return Step::Continue;
    }
    let stats = c.stats.counters.get_or_init(|| {
        let prefix = c.stat_prefix.clone();
        ["enabled", "enforced", "rate_limited", "ok"]
            .iter()
            .map(|n| {
                metrics::counter!(format!("envoy_http_local_rate_limit_{n}"), "envoy_http_local_rate_limit_prefix" => prefix.clone())
            })
            .collect()
    });
    stats[ENABLED].increment(1);
    let take = c.tokens.take(crate::clock::now());
    let mut headers = ResponseHeaders::default();
    if c.x_ratelimit_headers {
        headers.set(LIMIT, HeaderValue::from(c.tokens.limit()));
        headers.set(REMAINING, HeaderValue::from(take.remaining));
        headers.set(RESET, HeaderValue::from(take.reset_secs));
    }
    if take.allowed {
        stats[OK].increment(1);
        out.0.extend(headers.0);
        return Step::Continue;
    }
    stats[LIMITED].increment(1);
    if !c.enforced.roll() {
        crate::l7::headers::add(req.headers_mut(), &c.request_headers_when_not_enforced);
        out.0.extend(headers.0);
        return Step::Continue;
    }
    stats[ENFORCED].increment(1);
    rec.flags.push(Flag::RateLimited);
    rec.entry.response_code_details = Some("local_rate_limited".into());
    // RESOURCE_EXHAUSTED when asked, else the status mapped from the HTTP one (429: 14).
    let grpc = c.grpc_resource_exhausted.then_some(8);
    let mut r = filter_reply(Some(Flag::RateLimited), c.status, "local_rate_limited", input.grpc, grpc);
    headers.apply(&mut r);
    crate::l7::headers::add(r.headers_mut(), &c.response_headers);
    Step::Reply(r)
}
