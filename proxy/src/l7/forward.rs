//! Sending a routed request upstream: cluster choice, host pick, tries with per-try and
//! route timeouts, retries with jittered back-off and a replayable body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{request, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use rand::Rng;
use tracing::debug;

use super::record::Record;
use super::replay::ReplayBody;
use super::reply::{self, Flag};
use crate::clock::now;
use crate::cluster::connector::ConnectError;
use crate::cluster::host::Host;
use crate::cluster::upstream_body::UpstreamBody;
use crate::cluster::{ClusterRuntime, ProxyBody};
use crate::config::cluster::ClusterTarget;
use crate::config::cluster::UpstreamProtocol;
use crate::config::route::{Forward, RetryPolicy};

/// The result of one try.
// The response is the common case: boxing it to shrink the rare ones would cost every request
// an allocation.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Response(Response<UpstreamBody>),
    ConnectFailure,
    Overflow,
    Reset,
    /// The upstream's response could not be parsed.
    ProtocolError,
    /// An HTTP/2 upstream refused the stream (`REFUSED_STREAM`): it never saw the request.
    RefusedStream,
    PerTryTimeout,
    RouteTimeout,
}

/// Picks the cluster for a target: the single one, or by weight.
pub fn choose_cluster(t: &ClusterTarget) -> Option<&str> {
    match t {
        ClusterTarget::Single(c) => Some(c),
        ClusterTarget::Weighted(ws) => {
            let total: u64 = ws.iter().map(|w| u64::from(w.weight)).sum();
            if total == 0 {
                return None;
            }
            let mut r = rand::rng().random_range(0..total);
            for w in ws {
                if r < u64::from(w.weight) {
                    return Some(&w.name);
                }
                r -= u64::from(w.weight);
            }
            None
        }
    }
}

/// Proxies the request; always returns a response (a local reply on failure) and fills in
/// the record's upstream fields and flags.
pub async fn forward(
    ctx: &super::ConnCtx,
    parts: request::Parts,
    body: ProxyBody,
    fwd: &Forward,
    retry: Option<&RetryPolicy>,
    rec: &mut Record,
) -> Response<ProxyBody> {
    let Some(name) = choose_cluster(&fwd.target) else { return fail(rec, Flag::NoCluster) };
    rec.entry.upstream_cluster = Some(name.to_string());
    let (clusters, original_dst, peer) = (&ctx.clusters, ctx.original_dst, ctx.peer.ip());
    let Some(cluster) = clusters.get(name) else { return fail(rec, Flag::NoCluster) };
    let Some(_rq) = cluster.requests.try_acquire() else {
        cluster.stats.rq_pending_overflow.increment(1);
        return fail(rec, Flag::Overflow);
    };
    let mut parts = parts;
    let timeout = route_timeout(fwd, &parts.headers, rec.grpc);
    let deadline = timeout.map(|t| now() + t);
    if rec.grpc && fwd.max_stream_duration.is_none() && fwd.max_grpc_timeout.is_some() {
        // As Envoy: under `max_grpc_timeout` the upstream learns the deadline it is given.
        let expected = retry.and_then(|r| r.per_try_timeout).or(timeout);
        if let Some(v) = expected.and_then(|t| HeaderValue::from_str(&grpc_timeout_value(t)).ok()) {
            parts.headers.insert("grpc-timeout", v);
        }
    }
    let policy = retry.cloned().unwrap_or(RetryPolicy { num_retries: 0, ..RetryPolicy::default() });
    let (replay, mut body) =
        if policy.num_retries > 0 { (Some(ReplayBody::new(body)), None) } else { (None, Some(body)) };
    let mut tried: Vec<SocketAddr> = Vec::new();
    let hash =
        if fwd.hash_policy.is_empty() { None } else { super::hash::request_hash(&fwd.hash_policy, &parts, peer) };
    let mut attempt = 0u32;
    loop {
        let avoid = |h: &Host| policy.avoid_previous_hosts && tried.contains(&h.addr);
        let Some(host) = cluster.pick_hashed(original_dst, hash, attempt, &avoid, policy.host_selection_attempts)
        else {
            return fail(rec, Flag::NoHealthyUpstream);
        };
        tried.push(host.addr);
        if rec.log || rec.span.is_some() {
            rec.entry.upstream_host = Some(host.addr.to_string());
        }
        if !host.locality.region.is_empty() {
            rec.dest_locality = format!("{}/{}", host.locality.region, host.locality.zone);
        }
        let this_body = match (&replay, body.take()) {
            (_, Some(b)) => b,
            (Some(r), None) => match r.replay() {
                Some(b) => b.boxed_unsync(),
                None => return fail(rec, Flag::UpstreamReset),
            },
            (None, None) => return fail(rec, Flag::UpstreamReset),
        };
        let tls = cluster.upstream_tls(&host).is_some();
        let req = upstream_request(&parts, this_body, host.addr, cluster.config.upstream_protocol, tls);
        let started = now();
        let outcome = try_once(&cluster, &host, (req, tls), policy.per_try_timeout, deadline).await;
        // A try that failed because the client's body did says nothing about the host.
        let client_left = rec.downstream_failed() != 0;
        if let Some(o) = outlier_outcome(&outcome).filter(|_| !client_left) {
            cluster.record(&host, o);
        }
        if matches!(outcome, Outcome::Response(_) | Outcome::PerTryTimeout | Outcome::RouteTimeout) {
            host.ewma.observe(started.elapsed());
        }
        let retriable = !client_left && retriable(&policy, &outcome);
        let can_retry = retriable
            && attempt < policy.num_retries
            && replay.as_ref().is_some_and(|r| r.replay().is_some())
            && deadline.is_none_or(|d| now() < d);
        if can_retry {
            if let Some(_permit) = cluster.retries.try_acquire() {
                attempt += 1;
                cluster.stats.rq_retry.increment(1);
                debug!(cluster = %cluster.config.name, attempt, "retrying");
                backoff(&policy, attempt, deadline).await;
                continue;
            }
            cluster.stats.rq_retry_overflow.increment(1);
        }
        if retriable && attempt > 0 {
            rec.flags.push(Flag::RetryLimitExceeded);
        }
        return finish(rec, &cluster, outcome, started, deadline);
    }
}

/// The router's timeout for a request, as Envoy's `finalTimeout` computes it: none on a route
/// with `max_stream_duration` (Envoy's "new timeouts"); for a gRPC request under
/// `max_grpc_timeout`, its `grpc-timeout` (none when absent) capped by that (`0s`: uncapped);
/// otherwise the route's `timeout`.
fn route_timeout(fwd: &Forward, headers: &http::HeaderMap, grpc: bool) -> Option<Duration> {
    if fwd.max_stream_duration.is_some() {
        return None;
    }
    match fwd.max_grpc_timeout {
        Some(max) if grpc => {
            let t = super::stream_limits::grpc_timeout(headers).unwrap_or(Duration::ZERO);
            let t = if !max.is_zero() && (t.is_zero() || t > max) { max } else { t };
            (!t.is_zero()).then_some(t)
        }
        _ => fwd.timeout,
    }
}

/// A `grpc-timeout` value for `t`: milliseconds while they fit gRPC's eight digits, else
/// seconds, minutes, hours.
fn grpc_timeout_value(t: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let ms = t.as_millis().max(1);
    if ms <= MAX {
        return format!("{ms}m");
    }
    let s = t.as_secs();
    if u128::from(s) <= MAX {
        format!("{s}S")
    } else if u128::from(s / 60) <= MAX {
        format!("{}M", s / 60)
    } else {
        format!("{}H", (s / 3600).min(99_999_999))
    }
}

fn fail(rec: &mut Record, flag: Flag) -> Response<ProxyBody> {
    rec.flags.push(flag);
    reply::local(flag, rec.grpc)
}

fn upstream_request(
    parts: &request::Parts,
    body: ProxyBody,
    addr: SocketAddr,
    proto: UpstreamProtocol,
    tls: bool,
) -> Request<ProxyBody> {
    let h2 = match proto {
        UpstreamProtocol::Http2 => true,
        UpstreamProtocol::Http1 => false,
        UpstreamProtocol::Downstream => parts.version == Version::HTTP_2,
    };
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    // The scheme keys the pool (TLS and plaintext connections to one address never mix) and
    // is the upstream's `:scheme`. HTTP/2 carries the client's authority (after
    // `host_rewrite`), as Envoy does; the HTTP/2 pool dials `addr` whatever the URI says.
    let scheme = if tls { "https" } else { "http" };
    let host = parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).filter(|h| !h.is_empty());
    let authority = match (h2, host) {
        (true, Some(h)) => h.to_string(),
        _ => addr.to_string(),
    };
    // HTTP/1.1 sends the origin form (the connection already goes to `addr`); HTTP/2's URI
    // carries `:scheme` and `:authority`.
    let uri: Uri = if h2 {
        format!("{scheme}://{authority}{pq}").parse().or_else(|_| format!("{scheme}://{addr}{pq}").parse())
    } else {
        pq.parse()
    }
    .unwrap_or_else(|_| Uri::from_static("/"));
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = if h2 { Version::HTTP_2 } else { Version::HTTP_11 };
    *req.headers_mut() = parts.headers.clone();
    if h2 {
        // :authority comes from the URI; a Host header beside it would be a second source.
        req.headers_mut().remove(http::header::HOST);
    } else if !req.headers().contains_key(http::header::HOST) {
        if let Ok(v) = HeaderValue::from_str(&addr.to_string()) {
            req.headers_mut().insert(http::header::HOST, v);
        }
    }
    req
}

async fn try_once(
    cluster: &ClusterRuntime,
    host: &Arc<Host>,
    (req, tls): (Request<ProxyBody>, bool),
    per_try: Option<Duration>,
    deadline: Option<Instant>,
) -> Outcome {
    let _active = host.start_request();
    cluster.stats.rq_total.increment(1);
    let try_deadline = per_try.map(|p| now() + p);
    let limit = match (try_deadline, deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let fut = async {
        if req.version() == Version::HTTP_2 {
            let r = cluster.h2.request(host.addr, tls, req).await.map_err(Failure::H2)?;
            Ok(r.map(|body| UpstreamBody::H2 { body }))
        } else {
            let r = cluster.h1.request(host.addr, tls, req).await.map_err(Failure::H1)?;
            Ok(r.map(|body| UpstreamBody::H1 { body }))
        }
    };
    let res = match limit {
        Some(at) => match tokio::time::timeout_at(at.into(), fut).await {
            Ok(r) => r,
            Err(_) => {
                host.rq_error.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return if deadline.is_some_and(|d| at >= d) {
                    cluster.stats.rq_timeout.increment(1);
                    Outcome::RouteTimeout
                } else {
                    cluster.stats.rq_per_try_timeout.increment(1);
                    Outcome::PerTryTimeout
                };
            }
        },
        None => fut.await,
    };
    match res {
        Ok(resp) => {
            if resp.status().is_server_error() {
                host.rq_error.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Outcome::Response(resp)
        }
        Err(e) => {
            host.rq_error.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            debug!(upstream = %host.addr, error = %e, "upstream request failed");
            classify(&e)
        }
    }
}

/// A failed try, from either client.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    H1(crate::cluster::h1pool::H1Error),
    #[error(transparent)]
    H2(crate::cluster::h2pool::H2Error),
}

fn classify(f: &Failure) -> Outcome {
    use crate::cluster::h2pool::H2Error;
    match f {
        Failure::H1(e) => classify_h1(e),
        Failure::H2(H2Error::Connect(ConnectError::Overflow)) => Outcome::Overflow,
        Failure::H2(H2Error::Connect(_) | H2Error::Handshake(_)) => Outcome::ConnectFailure,
        Failure::H2(H2Error::Stream(e)) if refused(e) => Outcome::RefusedStream,
        Failure::H2(H2Error::Stream(_)) => Outcome::Reset,
    }
}

/// Whether an HTTP/2 stream error is the peer's `REFUSED_STREAM`.
fn refused(e: &hyper::Error) -> bool {
    super::record::find_source::<h2::Error>(e).is_some_and(|h| h.reason() == Some(h2::Reason::REFUSED_STREAM))
}

fn classify_h1(e: &crate::cluster::h1pool::H1Error) -> Outcome {
    use crate::cluster::h1pool::H1Error;
    match e {
        H1Error::Connect(ConnectError::Overflow) => Outcome::Overflow,
        H1Error::Connect(_) | H1Error::Handshake(_) => Outcome::ConnectFailure,
        H1Error::Request(h) if h.is_parse() => Outcome::ProtocolError,
        H1Error::Request(_) => Outcome::Reset,
    }
}

/// What outlier detection learns from a try (gRPC status in trailers-only responses is
/// mapped to HTTP; circuit-breaker overflow is not the host's fault and is not reported).
fn outlier_outcome(o: &Outcome) -> Option<crate::outlier::Outcome> {
    use crate::outlier::Outcome as O;
    Some(match o {
        Outcome::Response(r) => {
            let grpc = r.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u32>().ok());
            match grpc {
                Some(g) if r.status() == StatusCode::OK => O::Status(crate::outlier::grpc_to_http(g)),
                _ => O::Status(r.status().as_u16()),
            }
        }
        Outcome::ConnectFailure => O::ConnectFailure,
        Outcome::Reset | Outcome::ProtocolError | Outcome::RefusedStream => O::Reset,
        Outcome::PerTryTimeout | Outcome::RouteTimeout => O::Timeout,
        Outcome::Overflow => return None,
    })
}

fn retriable(p: &RetryPolicy, o: &Outcome) -> bool {
    let on = p.on;
    match o {
        Outcome::Response(r) => {
            let s = r.status().as_u16();
            let grpc =
                r.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
            grpc.is_some_and(|g| on.grpc_statuses.get(g).copied().unwrap_or(false))
                || (on.server_error && s >= 500)
                || (on.gateway_error && matches!(s, 502..=504))
                || (on.retriable_status_codes && p.retriable_status_codes.contains(&s))
        }
        Outcome::ConnectFailure => on.connect_failure || on.server_error || on.gateway_error,
        Outcome::Reset => on.reset || on.server_error || on.gateway_error,
        Outcome::RefusedStream => on.refused_stream || on.reset || on.server_error || on.gateway_error,
        // Answered as a 502.
        Outcome::ProtocolError => on.server_error || on.gateway_error,
        Outcome::PerTryTimeout => on.server_error || on.gateway_error,
        Outcome::Overflow | Outcome::RouteTimeout => false,
    }
}

/// Fully jittered exponential back-off, never past the route deadline.
async fn backoff(p: &RetryPolicy, attempt: u32, deadline: Option<Instant>) {
    let cap = p.base_interval.saturating_mul(1u32 << attempt.min(16)).min(p.max_interval);
    let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut wait = Duration::from_millis(rand::rng().random_range(0..ms));
    if let Some(d) = deadline {
        wait = wait.min(d.saturating_duration_since(now()));
    }
    tokio::time::sleep(wait).await;
}

fn finish(
    rec: &mut Record,
    cluster: &ClusterRuntime,
    outcome: Outcome,
    started: Instant,
    deadline: Option<Instant>,
) -> Response<ProxyBody> {
    let flag = match outcome {
        Outcome::Response(resp) => {
            // The route timeout goes on over the body, as Envoy's does.
            rec.limits.route = deadline;
            let (mut parts, body) = resp.into_parts();
            cluster.stats.response(parts.status.as_u16());
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            rec.entry.upstream_service_time = Some(ms);
            parts.headers.insert("x-envoy-upstream-service-time", HeaderValue::from(ms));
            if let Some(s) = parts.headers.get("grpc-status").and_then(|v| v.to_str().ok()) {
                rec.grpc_status = Some(s.to_string());
            }
            if parts.status != StatusCode::SWITCHING_PROTOCOLS {
                super::headers::strip_hop_by_hop(&mut parts.headers);
            }
            return Response::from_parts(parts, body.map_err(Into::into).boxed_unsync());
        }
        Outcome::ConnectFailure => Flag::UpstreamConnectFailure,
        Outcome::Overflow => Flag::Overflow,
        // The try failed because the client's body did: the client left, or sent a bad chunk.
        _ if rec.downstream_failed() == super::record::MALFORMED => Flag::DownstreamProtocolError,
        _ if rec.downstream_failed() == super::record::GONE => Flag::DownstreamTerminated,
        Outcome::Reset => Flag::UpstreamReset,
        Outcome::RefusedStream => Flag::UpstreamRemoteReset,
        Outcome::ProtocolError => Flag::UpstreamProtocolError,
        Outcome::PerTryTimeout => {
            rec.entry.response_code_details = Some("upstream_per_try_timeout".into());
            Flag::UpstreamTimeout
        }
        Outcome::RouteTimeout => {
            rec.entry.response_code_details = Some("response_timeout".into());
            Flag::UpstreamTimeout
        }
    };
    fail(rec, flag)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// On a paused clock: the jittered back-off stays under `base × 2^attempt` (capped at
    /// `max_interval`), and never sleeps past the route deadline.
    #[tokio::test(start_paused = true)]
    async fn backoff_stays_under_its_cap_and_the_deadline() {
        let p = RetryPolicy {
            base_interval: Duration::from_millis(25),
            max_interval: Duration::from_millis(250),
            ..RetryPolicy::default()
        };
        for (attempt, cap) in [(0, 25), (1, 50), (3, 200), (10, 250)] {
            for _ in 0..20 {
                let t0 = tokio::time::Instant::now();
                backoff(&p, attempt, None).await;
                assert!(t0.elapsed() < Duration::from_millis(cap), "attempt {attempt}: {:?}", t0.elapsed());
            }
        }
        for _ in 0..20 {
            let t0 = tokio::time::Instant::now();
            backoff(&p, 10, Some(now() + Duration::from_millis(5))).await;
            assert!(t0.elapsed() <= Duration::from_millis(5), "{:?}", t0.elapsed());
        }
    }
}
