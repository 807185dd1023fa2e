//! Header handling on the request path: hop-by-hop removal, forwarding headers, and the
//! route table's edits.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::route::{AppendAction, HeaderAdd, HeaderEdits};

const HOP_BY_HOP_COUNT: usize = 6;

/// Connection-level headers that must not be forwarded (RFC 9110 §7.6.1). `te: trailers` is
/// kept: gRPC needs it end to end.
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // One pass over the few distinct names finds what is there: probing the map for each
    // hop-by-hop name hashed eight names per message (6 % of an HTTP/1.1 request's
    // instructions), and most messages carry none but `Connection: keep-alive`.
    let mut present = [false; HOP_BY_HOP_COUNT];
    let mut te = false;
    for k in h.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|n| n == k) {
            present[i] = true;
        } else if *k == header::TE {
            te = true;
        }
    }
    if present[0] {
        // The names `Connection` nominates (`from_bytes` lowercases them); `keep-alive` is
        // in the fixed set already, and skipping it spares the usual message an allocation.
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        for n in &named {
            h.remove(n);
        }
    }
    for (n, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, there)| *there) {
        h.remove(n);
    }
    if te && h.get(header::TE).is_some_and(|v| v.as_bytes() != b"trailers") {
        h.remove(header::TE);
    }
}

/// Applies one level of request edits.
pub fn edit_request(h: &mut HeaderMap, e: &HeaderEdits) {
    for n in &e.request_remove {
        h.remove(n);
    }
    add(h, &e.request_add);
}

/// Applies one level of response edits.
pub fn edit_response(h: &mut HeaderMap, e: &HeaderEdits) {
    for n in &e.response_remove {
        h.remove(n);
    }
    add(h, &e.response_add);
}

/// Applies header additions with their append actions.
pub fn add(h: &mut HeaderMap, adds: &[HeaderAdd]) {
    for a in adds {
        match a.action {
            AppendAction::Append => {
                h.append(a.name.clone(), a.value.clone());
            }
            AppendAction::OverwriteOrAdd => {
                h.insert(a.name.clone(), a.value.clone());
            }
            AppendAction::AddIfAbsent => {
                if !h.contains_key(&a.name) {
                    h.insert(a.name.clone(), a.value.clone());
                }
            }
            AppendAction::OverwriteIfExists => {
                if h.contains_key(&a.name) {
                    h.insert(a.name.clone(), a.value.clone());
                }
            }
        }
    }
}

/// Appends the peer to `x-forwarded-for` (Envoy `use_remote_address: true`).
pub fn append_forwarded_for(h: &mut HeaderMap, peer: std::net::IpAddr) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let value = match h.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {peer}"),
        _ => peer.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(xff, v);
    }
}

/// Sets `x-request-id` to a random UUID v4 when absent; returns the value in use.
pub fn ensure_request_id(h: &mut HeaderMap, generate: bool) -> Option<String> {
    let name = HeaderName::from_static("x-request-id");
    if let Some(v) = h.get(&name).and_then(|v| v.to_str().ok()) {
        return Some(v.to_string());
    }
    if !generate {
        return None;
    }
    let id = uuid_v4();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert(name, v);
    }
    Some(id)
}

fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(char::from_digit(u32::from(x >> 4), 16).unwrap_or('0'));
        s.push(char::from_digit(u32::from(x & 0x0f), 16).unwrap_or('0'));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_connection_named_headers_but_keeps_te_trailers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none() && h.get(header::CONNECTION).is_none());
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert!(h.get("x-keep").is_some());
    }

    #[test]
    fn strips_each_hop_by_hop_header_with_or_without_connection() {
        let mut h = HeaderMap::new();
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert(header::PROXY_AUTHORIZATION, "Basic x".parse().unwrap());
        h.insert(header::TE, "gzip".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        let mut with_connection = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(HeaderName::as_str).collect::<Vec<_>>(), ["x-keep"]);
        // Nominated names are matched case-insensitively; `keep-alive` is removed either way.
        with_connection.insert(header::CONNECTION, "Keep-Alive, X-Keep".parse().unwrap());
        strip_hop_by_hop(&mut with_connection);
        assert!(with_connection.is_empty(), "{with_connection:?}");
        let mut plain = HeaderMap::new();
        plain.insert(header::HOST, "a".parse().unwrap());
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain.len(), 1);
    }

    #[test]
    fn append_actions() {
        let name = HeaderName::from_static("x-a");
        let mk = |action| HeaderEdits {
            request_add: vec![HeaderAdd { name: name.clone(), value: HeaderValue::from_static("new"), action }],
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        h.insert(&name, HeaderValue::from_static("old"));
        let mut a = h.clone();
        edit_request(&mut a, &mk(AppendAction::Append));
        assert_eq!(a.get_all(&name).iter().count(), 2);
        let mut b = h.clone();
        edit_request(&mut b, &mk(AppendAction::AddIfAbsent));
        assert_eq!(b.get(&name).unwrap(), "old");
        let mut c = HeaderMap::new();
        edit_request(&mut c, &mk(AppendAction::OverwriteIfExists));
        assert!(c.get(&name).is_none());
        let mut d = h.clone();
        edit_request(&mut d, &mk(AppendAction::OverwriteOrAdd));
        assert_eq!(d.get(&name).unwrap(), "new");
    }

    #[test]
    fn request_id_is_uuid_shaped_and_kept_when_present() {
        let mut h = HeaderMap::new();
        let id = ensure_request_id(&mut h, true).unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(ensure_request_id(&mut h, true).unwrap(), id);
    }
}
