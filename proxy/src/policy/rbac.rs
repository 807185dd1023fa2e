//! RBAC evaluation, as Envoy's RBAC engine: a policy matches when any of its permissions and
//! any of its principals match; ALLOW admits only matched requests, DENY refuses matched
//! ones, LOG admits everything. One function for HTTP requests and TCP connections: a
//! connection simply has no request, so request-only rules (headers, paths) never match it.

use std::net::SocketAddr;

use http::{HeaderMap, Method};

use crate::config::filters::rbac::{Action, HeaderKey, HeaderRule, Permission, Principal, Rbac};
use crate::tls::san::Sans;

/// The verified client certificate, when there is one.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    /// Its subject alternative names.
    pub sans: &'a Sans,
    /// Its subject, RFC 2253.
    pub subject: &'a str,
}

/// The request part of what RBAC reads.
#[derive(Debug, Clone, Copy)]
pub struct RequestAttrs<'a> {
    /// Method.
    pub method: &'a Method,
    /// Path and query as received.
    pub path: &'a str,
    /// `:authority` / `Host`.
    pub host: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// The client address (Envoy's downstream remote address: the peer, or an
    /// `x-forwarded-for` entry — see `l7::filters::rbac`), what `remote_ip` tests.
    pub remote: std::net::IpAddr,
}

/// Everything a rule may test.
#[derive(Debug, Clone, Copy)]
pub struct Attrs<'a> {
    /// The connection's peer.
    pub peer: SocketAddr,
    /// The (original) destination.
    pub local: SocketAddr,
    /// SNI the client sent.
    pub sni: Option<&'a str>,
    /// The verified client certificate.
    pub cert: Option<Peer<'a>>,
    /// The request (HTTP only).
    pub request: Option<RequestAttrs<'a>>,
}

/// The verdict of one rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'r> {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The policy that matched, first in name order.
    pub matched: Option<&'r str>,
}

/// Evaluates `rbac` against `a`.
pub fn evaluate<'r>(rbac: &'r Rbac, a: &Attrs<'_>) -> Verdict<'r> {
    let matched = rbac
        .policies
        .iter()
        .find(|(_, p)| p.permissions.iter().any(|x| permits(x, a)) && p.principals.iter().any(|x| identifies(x, a)))
        .map(|(n, _)| n.as_str());
    let allowed = match rbac.action {
        Action::Allow => matched.is_some(),
        Action::Deny => matched.is_none(),
        Action::Log => true,
    };
    Verdict { allowed, matched }
}

fn permits(p: &Permission, a: &Attrs<'_>) -> bool {
    match p {
        Permission::Any => true,
        Permission::And(v) => v.iter().all(|x| permits(x, a)),
        Permission::Or(v) => v.iter().any(|x| permits(x, a)),
        Permission::Not(x) => !permits(x, a),
        Permission::Header(h) => a.request.is_some_and(|r| header(h, &r)),
        Permission::UrlPath(m) => a.request.is_some_and(|r| m.matches(Some(path_only(r.path)))),
        Permission::DestinationIp(c) => c.contains(a.local.ip()),
        Permission::DestinationPort(p) => a.local.port() == *p,
        Permission::DestinationPortRange(lo, hi) => (*lo..*hi).contains(&u32::from(a.local.port())),
        Permission::ServerName(m) => m.matches(Some(a.sni.unwrap_or(""))),
    }
}

fn identifies(p: &Principal, a: &Attrs<'_>) -> bool {
    match p {
        Principal::Any => true,
        Principal::And(v) => v.iter().all(|x| identifies(x, a)),
        Principal::Or(v) => v.iter().any(|x| identifies(x, a)),
        Principal::Not(x) => !identifies(x, a),
        Principal::Authenticated(m) => match (a.cert, m) {
            (None, _) => false,
            (Some(_), None) => true,
            // Envoy: URI SANs, then DNS SANs, then the subject.
            (Some(c), Some(m)) => {
                c.sans.uri.iter().any(|u| m.matches(Some(u)))
                    || c.sans.dns.iter().any(|d| m.matches(Some(d)))
                    || m.matches(Some(c.subject))
            }
        },
        Principal::DirectRemoteIp(c) => c.contains(a.peer.ip()),
        Principal::RemoteIp(c) => c.contains(a.request.map_or(a.peer.ip(), |r| r.remote)),
        Principal::Header(h) => a.request.is_some_and(|r| header(h, &r)),
        Principal::UrlPath(m) => a.request.is_some_and(|r| m.matches(Some(path_only(r.path)))),
    }
}

fn path_only(pq: &str) -> &str {
    let end = pq.find(['?', '#']).unwrap_or(pq.len());
    &pq[..end]
}

/// A header test, pseudo-headers included; several values are joined with `,` as Envoy does.
/// A value that is not UTF-8 is still present (read lossily): dropping it would let a client
/// walk around a `present_match` DENY with one odd byte.
fn header(h: &HeaderRule, r: &RequestAttrs<'_>) -> bool {
    let joined: std::borrow::Cow<'_, str>;
    let value = match &h.key {
        HeaderKey::Method => Some(r.method.as_str()),
        HeaderKey::Path => Some(r.path),
        HeaderKey::Authority => Some(r.host),
        HeaderKey::Scheme => Some(r.scheme),
        HeaderKey::Named(name) => {
            let mut values = r.headers.get_all(name).iter();
            match (values.next(), values.next()) {
                (None, _) => None,
                (Some(one), None) => {
                    // Borrowed (no copy) when the value is UTF-8, as nearly all are.
                    joined = String::from_utf8_lossy(one.as_bytes());
                    Some(&*joined)
                }
                (Some(first), Some(second)) => {
                    joined = [first, second]
                        .into_iter()
                        .chain(values)
                        .map(|v| String::from_utf8_lossy(v.as_bytes()))
                        .collect::<Vec<_>>()
                        .join(",")
                        .into();
                    Some(&*joined)
                }
            }
        }
    };
    h.test.matches(value) != h.invert
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::filters::rbac::Policy;
    use crate::config::listener::CidrRange;
    use crate::config::matcher::ValueMatch;

    fn rbac(action: Action, permissions: Vec<Permission>, principals: Vec<Principal>) -> Rbac {
        Rbac { action, policies: vec![("p".into(), Policy { permissions, principals })] }
    }

    fn attrs<'a>(cert: Option<Peer<'a>>, request: Option<RequestAttrs<'a>>) -> Attrs<'a> {
        Attrs {
            peer: "10.1.2.3:5555".parse().unwrap(),
            local: "10.0.0.1:9080".parse().unwrap(),
            sni: None,
            cert,
            request,
        }
    }

    #[test]
    fn istio_allow_by_principal_path_and_method() {
        // The shape istiod emits for an ALLOW policy with `from.source.principals` and
        // `to.operation.{methods,paths}` (istio.io "HTTP Traffic" authorization task).
        let method = Permission::Header(HeaderRule {
            key: HeaderKey::Method,
            test: ValueMatch::Exact("GET".into()),
            invert: false,
        });
        let path = Permission::UrlPath(ValueMatch::Prefix("/api/".into()));
        let p = rbac(
            Action::Allow,
            vec![Permission::And(vec![Permission::Or(vec![method]), Permission::Or(vec![path])])],
            vec![Principal::And(vec![Principal::Or(vec![Principal::Authenticated(Some(ValueMatch::Exact(
                "spiffe://cluster.local/ns/a/sa/sleep".into(),
            )))])])],
        );
        let sleep = Sans { uri: vec!["spiffe://cluster.local/ns/a/sa/sleep".into()], ..Sans::default() };
        let other = Sans { uri: vec!["spiffe://cluster.local/ns/a/sa/other".into()], ..Sans::default() };
        let headers = HeaderMap::new();
        let get = RequestAttrs {
            method: &Method::GET,
            path: "/api/x?y=1",
            host: "h",
            scheme: "https",
            headers: &headers,
            remote: "10.1.2.3".parse().unwrap(),
        };
        let post = RequestAttrs { method: &Method::POST, ..get };
        let ok =
            |sans: &Sans, r: RequestAttrs<'_>| evaluate(&p, &attrs(Some(Peer { sans, subject: "" }), Some(r))).allowed;
        assert!(ok(&sleep, get));
        assert!(!ok(&sleep, post));
        assert!(!ok(&other, get));
        assert!(!evaluate(&p, &attrs(None, Some(get))).allowed, "no TLS is not authenticated");
    }

    #[test]
    fn a_header_that_is_not_utf8_is_still_present() {
        let deny = rbac(
            Action::Deny,
            vec![Permission::Header(HeaderRule {
                key: HeaderKey::Named(http::HeaderName::from_static("x-debug")),
                test: ValueMatch::Present(true),
                invert: false,
            })],
            vec![Principal::Any],
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-debug", http::HeaderValue::from_bytes(b"\xff").unwrap());
        let r = RequestAttrs {
            method: &Method::GET,
            path: "/",
            host: "h",
            scheme: "http",
            headers: &headers,
            remote: "10.1.2.3".parse().unwrap(),
        };
        assert!(!evaluate(&deny, &attrs(None, Some(r))).allowed);
    }

    #[test]
    fn deny_log_and_connection_rules() {
        let net = CidrRange { addr: "10.1.0.0".parse().unwrap(), len: 16 };
        let deny = rbac(Action::Deny, vec![Permission::DestinationPort(9080)], vec![Principal::DirectRemoteIp(net)]);
        assert_eq!(evaluate(&deny, &attrs(None, None)), Verdict { allowed: false, matched: Some("p") });
        let elsewhere = rbac(Action::Deny, vec![Permission::DestinationPort(1)], vec![Principal::Any]);
        assert!(evaluate(&elsewhere, &attrs(None, None)).allowed);
        let log = rbac(Action::Log, vec![Permission::Any], vec![Principal::Any]);
        assert_eq!(evaluate(&log, &attrs(None, None)), Verdict { allowed: true, matched: Some("p") });
        // Request-only rules never match a bare connection.
        let by_path =
            rbac(Action::Allow, vec![Permission::UrlPath(ValueMatch::Prefix("/".into()))], vec![Principal::Any]);
        assert!(!evaluate(&by_path, &attrs(None, None)).allowed);
        // 9080 is outside [9000, 9080): the negated range matches; a negated `any` never does.
        let not_range = |p: Principal| {
            rbac(Action::Allow, vec![Permission::Not(Box::new(Permission::DestinationPortRange(9000, 9080)))], vec![p])
        };
        assert!(evaluate(&not_range(Principal::Any), &attrs(None, None)).allowed);
        assert!(!evaluate(&not_range(Principal::Not(Box::new(Principal::Any))), &attrs(None, None)).allowed);
        let in_range = rbac(Action::Allow, vec![Permission::DestinationPortRange(9000, 9081)], vec![Principal::Any]);
        assert!(evaluate(&in_range, &attrs(None, None)).allowed);
    }
}
