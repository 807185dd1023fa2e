//! `x-forwarded-client-cert`: what Envoy's `forward_client_cert_details` does with the
//! header, and the element this hop adds (`By=…;Hash=…;Subject="…";URI=…;DNS=…`), so a
//! workload behind Isthmus sees the caller's SPIFFE identity as it would behind Envoy.

use http::{HeaderMap, HeaderValue};

use crate::config::listener::{Xfcc, XfccMode};
use crate::tls::context::PeerInfo;

const XFCC: &str = "x-forwarded-client-cert";

/// Applies the policy to the request headers; `tls` is the downstream handshake, if any.
pub fn apply(h: &mut HeaderMap, cfg: &Xfcc, tls: Option<&PeerInfo>) {
    let peer = tls.filter(|p| p.cert_hash.is_some());
    match (cfg.mode, peer) {
        (XfccMode::AlwaysForwardOnly, _) => {}
        (XfccMode::Sanitize, _) | (_, None) => {
            h.remove(XFCC);
        }
        (XfccMode::ForwardOnly, Some(_)) => {}
        (XfccMode::AppendForward, Some(p)) => {
            let el = element(cfg, p);
            let v = match h.get(XFCC).and_then(|v| v.to_str().ok()) {
                Some(old) if !old.is_empty() => format!("{old},{el}"),
                _ => el,
            };
            set(h, &v);
        }
        (XfccMode::SanitizeSet, Some(p)) => set(h, &element(cfg, p)),
    }
}

fn set(h: &mut HeaderMap, v: &str) {
    match HeaderValue::from_str(v) {
        Ok(v) => {
            h.insert(XFCC, v);
        }
        Err(_) => {
            h.remove(XFCC);
        }
    }
}

/// This hop's element, in Envoy's order and form (`conn_manager_utility.cc`): `By` and
/// `Hash` always, `Subject` quoted, every URI SAN (`URI=` when there is none), every DNS SAN.
pub fn element(cfg: &Xfcc, p: &PeerInfo) -> String {
    let mut parts = Vec::new();
    if let Some(by) = &p.local_uri {
        parts.push(format!("By={by}"));
    }
    if let Some(hash) = &p.cert_hash {
        parts.push(format!("Hash={hash}"));
    }
    if cfg.cert {
        if let Some(der) = &p.leaf_der {
            parts.push(format!("Cert=\"{}\"", url_encoded_pem(der)));
        }
    }
    if cfg.subject {
        parts.push(format!("Subject=\"{}\"", p.subject.replace('"', "\\\"")));
    }
    if cfg.uri {
        if p.sans.uri.is_empty() {
            parts.push("URI=".to_string());
        }
        parts.extend(p.sans.uri.iter().map(|u| format!("URI={u}")));
    }
    if cfg.dns {
        parts.extend(p.sans.dns.iter().map(|d| format!("DNS={d}")));
    }
    parts.join(";")
}

/// The leaf as PEM, URL-encoded the way Envoy's `urlEncodedPemEncodedPeerCertificate` does
/// it (only newline, space, `+`, `/` and `=` are escaped).
fn url_encoded_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut out = String::with_capacity(pem.len() + pem.len() / 8);
    for c in pem.chars() {
        match c {
            '\n' => out.push_str("%0A"),
            ' ' => out.push_str("%20"),
            '+' => out.push_str("%2B"),
            '/' => out.push_str("%2F"),
            '=' => out.push_str("%3D"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::san::Sans;

    fn peer() -> PeerInfo {
        PeerInfo {
            sans: Sans { uri: vec!["spiffe://cluster.local/ns/a/sa/client".into()], ..Sans::default() },
            cert_hash: Some("abcd".into()),
            local_uri: Some("spiffe://cluster.local/ns/b/sa/server".into()),
            alpn: None,
            subject: String::new(),
            leaf_der: None,
        }
    }

    #[test]
    fn modes_follow_envoy() {
        let cfg = |mode| Xfcc { mode, uri: true, dns: false, subject: true, cert: false };
        let mut h = HeaderMap::new();
        h.insert(XFCC, HeaderValue::from_static("By=x;URI=y"));
        apply(&mut h, &cfg(XfccMode::AppendForward), Some(&peer()));
        assert_eq!(
            h[XFCC],
            "By=x;URI=y,By=spiffe://cluster.local/ns/b/sa/server;Hash=abcd;Subject=\"\";URI=spiffe://cluster.local/ns/a/sa/client"
        );
        apply(&mut h, &cfg(XfccMode::SanitizeSet), Some(&peer()));
        assert!(!h[XFCC].to_str().unwrap().contains("By=x"));
        apply(&mut h, &cfg(XfccMode::AppendForward), None);
        assert!(h.get(XFCC).is_none(), "plaintext requests lose a forged header");
        h.insert(XFCC, HeaderValue::from_static("forged"));
        apply(&mut h, &cfg(XfccMode::Sanitize), Some(&peer()));
        assert!(h.get(XFCC).is_none());
        h.insert(XFCC, HeaderValue::from_static("kept"));
        apply(&mut h, &cfg(XfccMode::AlwaysForwardOnly), None);
        assert_eq!(h[XFCC], "kept");
    }
}
