//! W3C trace context (`traceparent`, `tracestate`), what Envoy's OpenTelemetry tracer reads
//! and writes.

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

use super::b3::{hex16, SpanContext};

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Why a `traceparent` could not be used: Envoy then makes no span for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

fn hex(s: &str, len: usize) -> Option<u128> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| u128::from_str_radix(s, 16).ok()).flatten()
}

/// The caller's context, if it sent one; `Err` for a header that is present but malformed.
pub fn extract(h: &HeaderMap) -> Result<Option<(SpanContext, Option<String>)>, Malformed> {
    let Some(tp) = h.get(TRACEPARENT) else { return Ok(None) };
    let tp = tp.to_str().map_err(|_| Malformed)?;
    let parts: Vec<&str> = tp.split('-').collect();
    let [version, trace, span, flags] = parts.as_slice() else { return Err(Malformed) };
    if tp.len() != 55 || hex(version, 2).is_none() || *version == "ff" {
        return Err(Malformed);
    }
    let trace = hex(trace, 32).filter(|t| *t != 0).ok_or(Malformed)?;
    let span = hex(span, 16).filter(|s| *s != 0).ok_or(Malformed)? as u64;
    let flags = hex(flags, 2).ok_or(Malformed)?;
    let state = h.get(TRACESTATE).and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty()).map(str::to_string);
    Ok(Some((
        SpanContext {
            trace_high: (trace >> 64) as u64,
            trace_low: trace as u64,
            span_id: span,
            parent_id: 0,
            sampled: flags & 1 == 1,
        },
        state,
    )))
}

/// Writes `traceparent` and `tracestate` for the upstream.
pub fn inject(h: &mut HeaderMap, c: &SpanContext, state: Option<&str>) {
    // `00-{trace}-{span}-{flags}`, built on the stack.
    let mut tp = [0u8; 55];
    tp[..3].copy_from_slice(b"00-");
    tp[3..19].copy_from_slice(&hex16(c.trace_high));
    tp[19..35].copy_from_slice(&hex16(c.trace_low));
    tp[35] = b'-';
    tp[36..52].copy_from_slice(&hex16(c.span_id));
    tp[52..].copy_from_slice(if c.sampled { b"-01" } else { b"-00" });
    if let Ok(v) = HeaderValue::from_bytes(&tp) {
        h.insert(TRACEPARENT, v);
    }
    // Envoy's OpenTelemetry tracer always writes `tracestate`, empty when there is none.
    let v = state.and_then(|s| HeaderValue::from_str(s).ok()).unwrap_or_else(|| HeaderValue::from_static(""));
    h.insert(TRACESTATE, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(tp: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_str(tp).unwrap());
        h
    }

    #[test]
    fn the_spec_example_round_trips() {
        let mut h = with("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        h.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
        let (c, state) = extract(&h).unwrap().unwrap();
        assert_eq!(c.trace_id(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!((c.span_id, c.sampled), (0xb7ad6b7169203331, true));
        let mut out = HeaderMap::new();
        inject(&mut out, &c, state.as_deref());
        assert_eq!(out["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert_eq!(out["tracestate"], "congo=t61rcWkgMzE");
    }

    #[test]
    fn malformed_and_zero_ids_are_refused() {
        assert_eq!(extract(&HeaderMap::new()), Ok(None));
        for bad in [
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert_eq!(extract(&with(bad)), Err(Malformed), "{bad}");
        }
    }
}
