//! The per-request handler: route, then forward, answer locally, or redirect; header edits
//! and the request record around it.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::Instrument;

use super::headers::{append_forwarded_for, edit_request, edit_response, ensure_request_id, strip_hop_by_hop};
use super::record::{Counting, Record, Tracked};
use super::reply::{self, Flag};
use super::ConnCtx;
use super::{forward, router, stream_limits, upgrade};
use crate::cluster::ProxyBody;
use crate::config::route::{HeaderEdits, Redirect, RouteAction};

/// Handles one request. Never fails: errors become local replies.
pub async fn handle(
    ctx: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<Tracked<ProxyBody>>, std::convert::Infallible> {
    let span =
        tracing::debug_span!("request", method = %req.method(), path = %req.uri().path(), client.addr = %ctx.peer);
    Ok(handle_inner(ctx, req).instrument(span).await)
}

async fn handle_inner(ctx: Arc<ConnCtx>, req: Request<Incoming>) -> Response<Tracked<ProxyBody>> {
    let mut rec = Record::new(&ctx.hcm.access_log, ctx.source.clone());
    rec.inbound = ctx.inbound;
    rec.peer_principal = ctx.peer_principal.clone();
    rec.grpc = router::is_grpc(req.headers());
    let host = authority(&req).unwrap_or_default();
    if rec.log {
        // Only the access log reads these; formatting them costs every request otherwise.
        fill_entry(&mut rec, &ctx, &req, &host);
    }
    let resp = if crate::overload::active(crate::config::overload::Action::StopAcceptingRequests) {
        // Envoy's HCM answers before any filter runs.
        rec.entry.response_code_details = Some("overload".into());
        rec.flags.push(Flag::Overloaded);
        reply::local(Flag::Overloaded, rec.grpc)
    } else {
        route_and_send(&ctx, req, &host, &mut rec).await
    };
    // A client gone before its response got none: Envoy logs code 0.
    rec.entry.response_code = if rec.flags.contains(&Flag::DownstreamTerminated) { 0 } else { resp.status().as_u16() };
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Tracked::new(body, rec))
}

async fn route_and_send(
    ctx: &ConnCtx,
    mut req: Request<Incoming>,
    host: &str,
    rec: &mut Record,
) -> Response<ProxyBody> {
    let Some(rc) = ctx.routes.resolve(&ctx.hcm.routes) else {
        rec.flags.push(Flag::NoRoute);
        return reply::local(Flag::NoRoute, rec.grpc);
    };
    let rc = &*rc;
    if ctx.hcm.normalize_path || ctx.hcm.merge_slashes {
        // Before routing and filters, as Envoy's HCM does: what RBAC and routes judge is what
        // the upstream will resolve.
        normalize(&mut req, ctx.hcm.normalize_path, ctx.hcm.merge_slashes);
    }
    // Before routing, as Envoy's HCM does: routes may match on the caller's identity.
    super::xfcc::apply(req.headers_mut(), &ctx.hcm.xfcc, ctx.tls.as_ref());
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let matched = router::virtual_host(rc, host).and_then(|vh| router::route(vh, &pq, req.headers()).map(|r| (vh, r)));
    let mut filter_headers = super::filters::ResponseHeaders::default();
    if !ctx.hcm.filters.is_empty() {
        let input = super::filters::Input { ctx, route: matched, host, grpc: rec.grpc };
        if let Some(mut r) = super::filters::run(&ctx.hcm.filters, &mut req, &input, rec, &mut filter_headers).await {
            // A filter's local reply skips the router, and with it the route's header edits
            // (Envoy applies those in the router).
            filter_headers.apply(&mut r);
            return r;
        }
    }
    let Some((vh, route)) = matched else {
        rec.flags.push(Flag::NoRoute);
        let mut r = reply::local(Flag::NoRoute, rec.grpc);
        filter_headers.apply(&mut r);
        return r;
    };
    rec.entry.route_name = (!route.name.is_empty()).then(|| route.name.clone());
    let levels: [&HeaderEdits; 3] = [&route.edits, &vh.edits, &rc.edits];
    let mut resp = match &route.action {
        RouteAction::Direct { status, body } => {
            let mut r = Response::new(body.clone().map_or_else(reply::empty, reply::full));
            *r.status_mut() = *status;
            if body.is_some() {
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            }
            r
        }
        RouteAction::Redirect(rd) => redirect(rd, &req, host, &route.matcher.path),
        RouteAction::Forward(fwd) => {
            let upgrade = ctx.hcm.websocket && upgrade::is_websocket(&req);
            let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
            let (mut parts, body) = req.into_parts();
            prepare_headers(ctx, &mut parts, (fwd, route), host, &levels, rec);
            if upgrade {
                upgrade::restore_headers(&mut parts.headers);
            }
            let body = Counting::new(body, rec).boxed_unsync();
            let retry = fwd.retry_policy.as_ref().or(vh.retry_policy.as_ref());
            let version = parts.version;
            rec.limits = stream_limits::Limits::for_route(&ctx.hcm, fwd, &parts.headers);
            let (limits, stream) = (rec.limits, rec.stream.clone());
            // The stream's own timers race the router (which enforces the route timeout
            // itself until the response headers).
            let raced = {
                let upstream = forward::forward(ctx, parts, body, fwd, retry, rec);
                tokio::pin!(upstream);
                tokio::select! {
                    biased;
                    r = &mut upstream => Ok(r),
                    why = stream_limits::before_response(limits, &stream) => Err(why),
                }
            };
            let mut resp = match raced {
                Ok(r) => r,
                Err(why) => stream_limits::reply(why, rec),
            };
            // The downstream protocol decides the response's version (an HTTP/1.0 upstream
            // answer goes back to an HTTP/1.1 client as HTTP/1.1, as Envoy does).
            *resp.version_mut() = version;
            if let Some(down) = downstream_upgrade {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    upgrade::splice_later(down, &mut resp);
                }
            }
            resp
        }
    };
    for e in levels {
        edit_response(resp.headers_mut(), e);
    }
    filter_headers.apply(&mut resp);
    resp
}

/// Rewrites the request's path in place when normalization changes it.
fn normalize<B>(req: &mut Request<B>, dots: bool, merge: bool) {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Some(new) = super::path::normalize(pq, dots, merge) else { return };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = new.parse().ok();
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

fn authority<B>(req: &Request<B>) -> Option<String> {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string))
}

fn fill_entry<B>(rec: &mut Record, ctx: &ConnCtx, req: &Request<B>, host: &str) {
    let e = &mut rec.entry;
    e.method = req.method().to_string();
    e.path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    e.protocol = protocol(req.version()).into();
    e.authority = (!host.is_empty()).then(|| host.to_string());
    let hv = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    e.user_agent = hv("user-agent");
    e.x_forwarded_for = hv("x-forwarded-for");
    e.downstream_remote_address = ctx.peer.to_string();
    e.downstream_local_address = ctx.local.to_string();
    e.requested_server_name = ctx.sni.clone();
    if let Some(t) = &ctx.tls {
        e.downstream_tls = true;
        e.downstream_peer_uri_san = t.sans.identity().map(str::to_string);
    }
}

const X_ENVOY_FORCE_TRACE: header::HeaderName = header::HeaderName::from_static("x-envoy-force-trace");

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

fn prepare_headers(
    ctx: &ConnCtx,
    parts: &mut http::request::Parts,
    (fwd, route): (&crate::config::route::Forward, &crate::config::route::Route),
    host: &str,
    levels: &[&HeaderEdits; 3],
    rec: &mut Record,
) {
    let path_match = &route.matcher.path;
    let h = &mut parts.headers;
    strip_hop_by_hop(h);
    if !ctx.hcm.proxy_100_continue {
        // Envoy's default: the proxy answers `100 Continue` itself (hyper does, when the body
        // is first read) and the upstream never sees the expectation.
        h.remove(header::EXPECT);
    }
    if ctx.hcm.use_remote_address {
        append_forwarded_for(h, ctx.peer.ip());
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static(if ctx.tls.is_some() { "https" } else { "http" }));
    rec.entry.request_id = ensure_request_id(h, ctx.hcm.generate_request_id);
    let internal = ctx.hcm.internal_cidrs.iter().any(|c| c.contains(ctx.peer.ip()));
    if !internal {
        // Envoy strips it from external requests: only internal callers may force a trace.
        h.remove(X_ENVOY_FORCE_TRACE);
    }
    if let Some(tracing) = &ctx.hcm.tracing {
        // Room for the trace context (up to five headers): one growth of the map, not several.
        h.reserve(5);
        let start = crate::telemetry::trace::Start {
            tracing,
            request_id: &ctx.hcm.request_id,
            egress: ctx.outbound,
            host,
            decorator: route.decorator.as_ref(),
            scheme: if ctx.tls.is_some() { "https" } else { "http" },
            method: parts.method.as_str(),
            path: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
            protocol: protocol(parts.version),
            peer: ctx.peer,
            internal,
            local: ctx.local,
        };
        if let Some(started) = crate::telemetry::trace::start(&start, h) {
            if rec.log {
                // The decision may have been packed into the id.
                rec.entry.request_id = h.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
                rec.entry.trace_id = Some(started.context.trace_id());
            }
            rec.span = started.span;
        }
    }
    if let Some(host) = &fwd.host_rewrite {
        if let Ok(v) = HeaderValue::from_str(host) {
            h.insert(header::HOST, v);
        }
    } else if parts.version == Version::HTTP_2 && !h.contains_key(header::HOST) {
        if let Some(a) = parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
            h.insert(header::HOST, a);
        }
    }
    if let (Some(new), crate::config::route::PathMatch::Prefix(old)) = (&fwd.prefix_rewrite, path_match) {
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        if let Some(rest) = pq.get(old.len()..) {
            if let Ok(uri) = format!("{new}{rest}").parse() {
                parts.uri = uri;
            }
        }
    }
    for e in levels {
        edit_request(h, e);
    }
}

/// `host[:port]` → host and port (IPv6 literals keep their brackets).
fn split_host_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((h, p))
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']')) =>
        {
            (h, Some(p))
        }
        _ => (host, None),
    }
}

fn redirect<B>(
    rd: &Redirect,
    req: &Request<B>,
    host: &str,
    pm: &crate::config::route::PathMatch,
) -> Response<ProxyBody> {
    let scheme = rd.scheme.clone().unwrap_or_else(|| "http".into());
    // Envoy replaces only the parts the redirect names: the host keeps its port unless
    // `port_redirect` is set (checked against Envoy 1.40 in tests/envoy_reference.rs).
    let (orig_host, orig_port) = split_host_port(host);
    let new_host = rd.host.clone().unwrap_or_else(|| orig_host.to_string());
    let authority = match (rd.port, orig_port) {
        (Some(p), _) => format!("{new_host}:{p}"),
        (None, Some(p)) => format!("{new_host}:{p}"),
        (None, None) => new_host,
    };
    let (path, query) = {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let (p, q) = pq.split_once('?').map_or((pq, None), |(p, q)| (p, Some(q)));
        (p.to_string(), q.map(str::to_string))
    };
    let mut new_path = match (&rd.path, &rd.prefix_rewrite, pm) {
        (Some(p), _, _) => p.clone(),
        (None, Some(newp), crate::config::route::PathMatch::Prefix(old)) => {
            format!("{newp}{}", path.get(old.len()..).unwrap_or(""))
        }
        _ => path,
    };
    if let (false, Some(q)) = (rd.strip_query, query) {
        if !new_path.contains('?') {
            new_path = format!("{new_path}?{q}");
        }
    }
    let mut r = Response::new(reply::empty());
    *r.status_mut() = rd.status;
    if let Ok(v) = HeaderValue::from_str(&format!("{scheme}://{authority}{new_path}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
