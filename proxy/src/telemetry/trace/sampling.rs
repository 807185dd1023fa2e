//! The trace decision, exactly as Envoy's HCM makes it (`mutateTracingRequestHeader` with the
//! UUID request-id extension): the decision is packed into `x-request-id` so every later hop
//! that shares the id makes the same one, and sampling is by the id's first 32 bits, so two
//! proxies given the same id decide the same way.

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

use crate::config::listener::{RequestId, Tracing};

/// Why a request is traced (Envoy's `Tracing::Reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not traced.
    NotTraceable,
    /// Random sampling chose it.
    Sampling,
    /// `x-envoy-force-trace`.
    ServiceForced,
    /// `x-client-trace-id` with client sampling.
    ClientForced,
}

impl Reason {
    /// Whether a span is reported.
    pub fn traced(self) -> bool {
        self != Reason::NotTraceable
    }
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_CLIENT_TRACE_ID: HeaderName = HeaderName::from_static("x-client-trace-id");
const X_ENVOY_FORCE_TRACE: HeaderName = HeaderName::from_static("x-envoy-force-trace");

/// Position of the trace-reason nibble in a UUID (the version nibble, which Envoy re-uses).
const TRACE_BYTE: usize = 14;
const UUID_LEN: usize = 36;

fn packed(rid: &[u8]) -> Reason {
    if rid.len() != UUID_LEN {
        return Reason::NotTraceable;
    }
    match rid[TRACE_BYTE] {
        b'a' => Reason::ServiceForced,
        b'9' => Reason::Sampling,
        b'b' => Reason::ClientForced,
        _ => Reason::NotTraceable,
    }
}

/// Rewrites the reason nibble of a UUID-shaped id (a copy on the stack: the request path
/// allocates nothing here).
fn pack(h: &mut HeaderMap, rid: &[u8; UUID_LEN], reason: Reason, cfg: &RequestId) {
    if !cfg.pack_trace_reason {
        return;
    }
    let mut id = *rid;
    id[TRACE_BYTE] = match reason {
        Reason::ServiceForced => b'a',
        Reason::ClientForced => b'b',
        Reason::Sampling => b'9',
        Reason::NotTraceable => b'4',
    };
    if let Ok(v) = HeaderValue::from_bytes(&id) {
        h.insert(X_REQUEST_ID, v);
    }
}

/// Envoy's `featureEnabled(key, FractionalPercent)`: percentages are kept as a numerator over
/// 10,000 (two decimals), compared with `value % 10000`.
fn enabled(percent: f64, value: u64) -> bool {
    let numerator = (percent * 100.0).round() as u64;
    value % 10_000 < numerator
}

/// Decides and packs the decision into `x-request-id`. `random` is drawn only when client
/// sampling needs a coin (Envoy draws one there too).
pub fn decide(
    h: &mut HeaderMap,
    t: &Tracing,
    rid_cfg: &RequestId,
    internal: bool,
    random: impl FnOnce() -> u64,
) -> Reason {
    if !rid_cfg.use_request_id_for_trace_sampling {
        // Envoy: every request is a candidate; the tracer's own sampling (B3 headers, or a
        // coin) decides.
        return Reason::Sampling;
    }
    let (value, uuid, packed_reason) = {
        let Some(bytes) = h.get(X_REQUEST_ID).map(HeaderValue::as_bytes) else {
            return Reason::NotTraceable;
        };
        // The first 8 hex digits, as Envoy's `UUIDRequestIDExtension::getInteger`.
        let value =
            bytes.get(..8).and_then(|p| std::str::from_utf8(p).ok()).and_then(|p| u64::from_str_radix(p, 16).ok());
        // A UUID-shaped id can carry the decision; any other id is used for sampling only.
        let uuid: Option<[u8; UUID_LEN]> = bytes.try_into().ok();
        (value, uuid, packed(bytes))
    };
    let Some(value) = value else { return Reason::NotTraceable };
    let result = value % 10_000;
    let mut reason = if rid_cfg.pack_trace_reason { packed_reason } else { Reason::NotTraceable };
    let set = |h: &mut HeaderMap, r: Reason| {
        if let Some(id) = &uuid {
            pack(h, id, r, rid_cfg);
        }
    };
    if reason == Reason::NotTraceable {
        if h.contains_key(X_CLIENT_TRACE_ID) && enabled(t.client_sampling, random()) {
            reason = Reason::ClientForced;
            set(h, reason);
        } else if internal && h.contains_key(X_ENVOY_FORCE_TRACE) {
            reason = Reason::ServiceForced;
            set(h, reason);
        } else if enabled(t.random_sampling, result) {
            reason = Reason::Sampling;
            set(h, reason);
        }
    }
    if reason != Reason::NotTraceable && !enabled(t.overall_sampling, result) {
        reason = Reason::NotTraceable;
        set(h, reason);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracing(random: f64) -> Tracing {
        Tracing {
            client_sampling: 100.0,
            random_sampling: random,
            overall_sampling: 100.0,
            provider: None,
            custom_tags: Vec::new(),
            max_path_tag_length: 256,
        }
    }

    fn with_rid(rid: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_str(rid).unwrap());
        h
    }

    #[test]
    fn the_first_32_bits_of_the_id_decide_and_the_decision_is_packed() {
        // 0x00000457 = 1111 → 1111 % 10000 = 1111 < 1200 (12 %) → sampled, packed as '9'.
        let mut h = with_rid("00000457-1111-4111-8111-111111111111");
        assert_eq!(decide(&mut h, &tracing(12.0), &RequestId::default(), true, || 0), Reason::Sampling);
        assert_eq!(h["x-request-id"], "00000457-1111-9111-8111-111111111111");
        // 1111 ≥ 1100 (11 %) → not sampled, packed as '4' only if it was changed: it is not.
        let mut h = with_rid("00000457-1111-4111-8111-111111111111");
        assert_eq!(decide(&mut h, &tracing(11.0), &RequestId::default(), true, || 0), Reason::NotTraceable);
        assert_eq!(h["x-request-id"], "00000457-1111-4111-8111-111111111111");
    }

    #[test]
    fn a_packed_decision_holds_at_the_next_hop_whatever_its_sampling() {
        let mut h = with_rid("ffffffff-1111-9111-8111-111111111111");
        assert_eq!(decide(&mut h, &tracing(0.0), &RequestId::default(), true, || 0), Reason::Sampling);
        // Overall sampling still caps it, and the cap is packed for later hops.
        let mut t = tracing(0.0);
        t.overall_sampling = 0.0;
        assert_eq!(decide(&mut h, &t, &RequestId::default(), true, || 0), Reason::NotTraceable);
        assert_eq!(h["x-request-id"], "ffffffff-1111-4111-8111-111111111111");
    }

    #[test]
    fn forced_and_client_traces() {
        let mut h = with_rid("ffffffff-1111-4111-8111-111111111111");
        h.insert("x-envoy-force-trace", HeaderValue::from_static("1"));
        // From outside (Envoy 1.40's default: no address is internal) it is ignored.
        assert_eq!(decide(&mut h.clone(), &tracing(0.0), &RequestId::default(), false, || 0), Reason::NotTraceable);
        assert_eq!(decide(&mut h, &tracing(0.0), &RequestId::default(), true, || 0), Reason::ServiceForced);
        assert_eq!(&h["x-request-id"].as_bytes()[14..15], b"a");
        let mut h = with_rid("ffffffff-1111-4111-8111-111111111111");
        h.insert("x-client-trace-id", HeaderValue::from_static("c1"));
        assert_eq!(decide(&mut h, &tracing(0.0), &RequestId::default(), true, || 0), Reason::ClientForced);
        assert_eq!(&h["x-request-id"].as_bytes()[14..15], b"b");
    }

    #[test]
    fn no_packing_when_the_extension_says_so_and_no_id_no_trace() {
        let cfg = RequestId { pack_trace_reason: false, use_request_id_for_trace_sampling: true };
        let mut h = with_rid("00000001-1111-4111-8111-111111111111");
        assert_eq!(decide(&mut h, &tracing(100.0), &cfg, true, || 0), Reason::Sampling);
        assert_eq!(h["x-request-id"], "00000001-1111-4111-8111-111111111111");
        assert_eq!(
            decide(&mut HeaderMap::new(), &tracing(100.0), &RequestId::default(), true, || 0),
            Reason::NotTraceable
        );
    }
}
