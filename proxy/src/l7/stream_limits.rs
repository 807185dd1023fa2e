//! A stream's timers, as Envoy's HCM and router run them: `stream_idle_timeout` (a route's
//! `idle_timeout` replaces it), `request_timeout` (until the request is complete or the
//! response starts), the stream's duration (`max_stream_duration`, or the `grpc-timeout` header
//! under a route's `grpc_timeout_header_max`) and, once the response has started, the route
//! timeout (Envoy's covers the whole response, not only its headers).
//!
//! Before the response headers the handler races the upstream request against
//! [`before_response`]; after them the response body polls [`BodyTimer`]. Both read one
//! [`StreamState`]: the request body and the response body note each frame there, and an idle
//! timer that fires early re-arms at the last activity instead of being reset on every frame.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderMap, Response, StatusCode};

use super::record::{Record, StreamState};
use super::reply::{self, Flag};
use crate::clock::now;
use crate::cluster::ProxyBody;
use crate::config::listener::HttpConnectionManager;
use crate::config::route::Forward;

/// Which timer ended a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No frame either way for the idle timeout.
    Idle,
    /// The request was not complete within `request_timeout`.
    Request,
    /// The stream outlived its maximum duration.
    Duration,
    /// The response did not complete within the route timeout.
    Route,
}

impl Expiry {
    /// The expiry stored as `self as u8`.
    pub fn from_index(i: u8) -> Option<Expiry> {
        [Expiry::Idle, Expiry::Request, Expiry::Duration, Expiry::Route].get(usize::from(i)).copied()
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for it.
    pub fn details(self) -> &'static str {
        match self {
            Expiry::Idle => "stream_idle_timeout",
            Expiry::Request => "request_overall_timeout",
            Expiry::Duration => "max_duration_timeout",
            Expiry::Route => "response_timeout",
        }
    }

    /// The response flag it sets (the duration and request timers set none, as in Envoy).
    pub fn flag(self) -> Option<Flag> {
        match self {
            Expiry::Idle => Some(Flag::StreamIdleTimeout),
            Expiry::Route => Some(Flag::UpstreamTimeout),
            Expiry::Request | Expiry::Duration => None,
        }
    }
}

/// The timers armed for one stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Idle timeout.
    pub idle: Option<Duration>,
    /// Request timeout (from the stream's start).
    pub request: Option<Duration>,
    /// Maximum duration (from the stream's start).
    pub duration: Option<Duration>,
    /// The route deadline, applied to the response body (before the headers the router
    /// enforces it itself, with retries).
    pub route: Option<Instant>,
}

impl Limits {
    /// The timers of a request routed by `fwd` on an HCM: the HCM's, replaced by the route's
    /// where it sets them. The stream's duration comes from `grpc-timeout` when the route has
    /// `grpc_timeout_header_max` (for any request that carries the header, as Envoy reads it),
    /// else from the route's `max_stream_duration`, else from the HCM's.
    pub fn for_route(hcm: &HttpConnectionManager, fwd: &Forward, headers: &HeaderMap) -> Limits {
        let idle = match fwd.idle_timeout {
            Some(route) => route,
            None => hcm.stream_idle_timeout,
        };
        let msd = fwd.max_stream_duration.unwrap_or_default();
        let header = msd.grpc_header_max.and_then(|max| grpc_timeout(headers).map(|t| (t, max)));
        let duration = match (header, msd.max) {
            (Some((mut t, max)), _) => {
                if !max.is_zero() && t > max {
                    t = max;
                }
                // As Envoy: an offset that eats the whole timeout leaves none (it fires now).
                if let Some(o) = msd.grpc_header_offset.filter(|_| !t.is_zero()) {
                    t = t.saturating_sub(o);
                }
                Some(t)
            }
            (None, Some(max)) => (!max.is_zero()).then_some(max),
            (None, None) => hcm.max_stream_duration,
        };
        Limits { idle, request: hcm.request_timeout, duration, route: None }
    }

    /// The earliest instant a timer may fire, and which; `started`: the response headers have
    /// been sent (the request timer is off then, the route timer on).
    fn next(&self, s: &StreamState, started: bool) -> Option<(Instant, Expiry)> {
        let request = if started || s.request_done() { None } else { self.request };
        [
            self.idle.map(|d| (s.last_activity() + d, Expiry::Idle)),
            request.map(|d| (s.start + d, Expiry::Request)),
            self.duration.map(|d| (s.start + d, Expiry::Duration)),
            self.route.filter(|_| started).map(|at| (at, Expiry::Route)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
    }

    /// Whether any timer is armed.
    pub fn any(&self) -> bool {
        self.idle.is_some() || self.request.is_some() || self.duration.is_some() || self.route.is_some()
    }
}

/// Resolves when a timer fires before the response starts (never, when none is armed).
pub async fn before_response(limits: Limits, s: &StreamState) -> Expiry {
    loop {
        let Some((at, _)) = limits.next(s, false) else { return std::future::pending().await };
        tokio::time::sleep_until(at.into()).await;
        // Activity, or the request completing, may have moved the deadline since it was set.
        if let Some((at, why)) = limits.next(s, false) {
            if at <= now() {
                return why;
            }
        }
    }
}

/// Resolves when a timer fires on a response being sent; used by an HTTP/1 connection's
/// watchdog, which must act even when hyper is not polling the body (no room to write). Never
/// resolves once the response is done.
pub async fn after_response(limits: Limits, s: &StreamState) -> Expiry {
    loop {
        if s.response_done() {
            return std::future::pending().await;
        }
        let Some((at, _)) = limits.next(s, true) else { return std::future::pending().await };
        tokio::time::sleep_until(at.into()).await;
        if s.response_done() {
            return std::future::pending().await;
        }
        if let Some((at, why)) = limits.next(s, true) {
            if at <= now() {
                return why;
            }
        }
    }
}

/// The local reply for a timer that fired before the response started: Envoy's
/// `sendLocalReply` — `408` while the request is incomplete, else `504`; gRPC requests get the
/// status in trailers-only form (`DEADLINE_EXCEEDED` for the duration).
pub fn reply(why: Expiry, rec: &mut Record) -> Response<ProxyBody> {
    let status = if rec.stream.request_done() { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::REQUEST_TIMEOUT };
    rec.entry.response_code_details = Some(why.details().into());
    if let Some(f) = why.flag() {
        rec.flags.push(f);
    }
    let (text, grpc) = match why {
        Expiry::Idle => ("stream timeout", None),
        Expiry::Request => ("request timeout", None),
        Expiry::Duration => ("downstream duration timeout", Some(4)),
        Expiry::Route => ("upstream request timeout", None),
    };
    reply::filter_reply(why.flag(), status, text, rec.grpc, grpc)
}

/// A `grpc-timeout` header's value (gRPC's `TimeoutValue TimeoutUnit`: up to eight digits and
/// one of `H M S m u n`); `None` when absent or malformed, as Envoy reads it.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.as_bytes();
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n.checked_mul(3600)?),
        b"M" => Duration::from_secs(n.checked_mul(60)?),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The timers of a response body being sent: polled when the body has nothing ready.
#[derive(Debug)]
pub struct BodyTimer {
    limits: Limits,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl BodyTimer {
    /// A timer for `limits`; `None` when nothing is armed.
    pub fn new(limits: Limits) -> Option<Self> {
        limits.any().then_some(BodyTimer { limits, sleep: None })
    }

    /// `Ready` with the timer that fired; else registers a wake-up for the earliest one. The
    /// sleep is re-armed only when a deadline comes earlier: one that moved later (activity
    /// since) is found when the sleep fires and rechecked.
    pub fn poll_expired(&mut self, s: &StreamState, cx: &mut Context<'_>) -> Poll<Expiry> {
        loop {
            let Some((at, why)) = self.limits.next(s, true) else { return Poll::Pending };
            if at <= now() {
                return Poll::Ready(why);
            }
            let at_tokio = tokio::time::Instant::from_std(at);
            let sleep = match &mut self.sleep {
                Some(sl) => {
                    if at_tokio < sl.deadline() {
                        sl.as_mut().reset(at_tokio);
                    }
                    sl
                }
                None => self.sleep.insert(Box::pin(tokio::time::sleep_until(at_tokio))),
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Fired: the loop rechecks against the activity since and re-arms.
            if let Some(sl) = &mut self.sleep {
                let far = tokio::time::Instant::from_std(now() + Duration::from_secs(86400 * 365));
                sl.as_mut().reset(far);
            }
        }
    }
}

/// The error a response body ends with when a timer cuts it (hyper resets the stream or
/// closes the connection).
#[derive(Debug, thiserror::Error)]
#[error("stream ended by its {0:?} timer")]
pub struct TimedOut(pub Expiry);

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-timeout", v.parse().unwrap_or_else(|_| http::HeaderValue::from_static("x")));
        h
    }

    #[test]
    fn grpc_timeout_headers_parse_as_grpc_defines_them() {
        assert_eq!(grpc_timeout(&headers("200m")), Some(Duration::from_millis(200)));
        assert_eq!(grpc_timeout(&headers("1H")), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout(&headers("5S")), Some(Duration::from_secs(5)));
        assert_eq!(grpc_timeout(&headers("99999999n")), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "12x", "-1m", "1.5S", "10"] {
            assert_eq!(grpc_timeout(&headers(bad)), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }
}
