//! The request hash for consistent-hash clusters, computed from the route's `hash_policy`
//! exactly as Envoy combines policies: each new hash is XORed into the previous one rotated
//! left by one bit; a `terminal` policy that produced a hash stops the walk.

use std::net::IpAddr;

use http::request::Parts;

use crate::balance::hashing::xx_hash64;
use crate::config::route::{HashPolicy, HashSource};

/// The hash, or None when no policy produced one (the cluster then picks at random).
pub fn request_hash(policies: &[HashPolicy], parts: &Parts, peer: IpAddr) -> Option<u64> {
    let mut hash: Option<u64> = None;
    for p in policies {
        if let Some(new) = evaluate(&p.source, parts, peer) {
            let old = hash.map_or(0, |h| h.rotate_left(1));
            hash = Some(old ^ new);
        }
        if p.terminal && hash.is_some() {
            break;
        }
    }
    hash
}

fn evaluate(source: &HashSource, parts: &Parts, peer: IpAddr) -> Option<u64> {
    match source {
        HashSource::Header(name) => parts.headers.get(name).map(|v| xx_hash64(v.as_bytes())),
        HashSource::SourceIp => Some(xx_hash64(peer.to_string().as_bytes())),
        HashSource::QueryParameter(name) => {
            let q = parts.uri.query()?;
            q.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == name).then(|| xx_hash64(v.as_bytes()))
            })
        }
        HashSource::Cookie(name) => parts.headers.get_all(http::header::COOKIE).iter().find_map(|v| {
            v.to_str().ok()?.split(';').find_map(|c| {
                let (k, val) = c.trim().split_once('=')?;
                (k == name).then(|| xx_hash64(val.as_bytes()))
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn hp(source: HashSource, terminal: bool) -> HashPolicy {
        HashPolicy { source, terminal }
    }

    #[test]
    fn combines_like_envoy_and_stops_at_terminal() {
        let p = parts("/x?user=42", &[("x-user", "alice"), ("cookie", "a=1; session=s9")]);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let header = hp(HashSource::Header(http::HeaderName::from_static("x-user")), false);
        assert_eq!(request_hash(std::slice::from_ref(&header), &p, ip), Some(xx_hash64(b"alice")));
        let both = [header.clone(), hp(HashSource::SourceIp, false)];
        assert_eq!(request_hash(&both, &p, ip), Some(xx_hash64(b"alice").rotate_left(1) ^ xx_hash64(b"10.0.0.1")));
        let terminal =
            [hp(HashSource::Header(http::HeaderName::from_static("x-user")), true), hp(HashSource::SourceIp, false)];
        assert_eq!(request_hash(&terminal, &p, ip), Some(xx_hash64(b"alice")));
        assert_eq!(request_hash(&[hp(HashSource::Cookie("session".into()), false)], &p, ip), Some(xx_hash64(b"s9")));
        assert_eq!(
            request_hash(&[hp(HashSource::QueryParameter("user".into()), false)], &p, ip),
            Some(xx_hash64(b"42"))
        );
        assert_eq!(request_hash(&[hp(HashSource::Cookie("none".into()), false)], &p, ip), None);
    }
}
