//! Subject alternative names: reading them from a certificate and matching them against
//! `match_subject_alt_names` / `match_typed_subject_alt_names`. Identity in the mesh is the
//! URI SAN (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>`), never the SNI.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::config::matcher::ValueMatch;

/// The names a certificate vouches for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sans {
    /// URI SANs (SPIFFE IDs).
    pub uri: Vec<String>,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// Email SANs.
    pub email: Vec<String>,
    /// IP SANs, printed.
    pub ip: Vec<String>,
}

impl Sans {
    /// Reads the SAN extension (empty when absent).
    pub fn of(cert: &X509Certificate<'_>) -> Sans {
        let mut out = Sans::default();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::URI(u) => out.uri.push((*u).to_string()),
                    GeneralName::DNSName(d) => out.dns.push((*d).to_string()),
                    GeneralName::RFC822Name(e) => out.email.push((*e).to_string()),
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b).ok().map(|a| std::net::IpAddr::from(a).to_string()),
                            16 => <[u8; 16]>::try_from(*b).ok().map(|a| std::net::IpAddr::from(a).to_string()),
                            _ => None,
                        };
                        out.ip.extend(ip);
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Reads the SANs of a DER certificate (empty when it does not parse).
    pub fn of_der(der: &[u8]) -> Sans {
        x509_parser::parse_x509_certificate(der).map(|(_, c)| Sans::of(&c)).unwrap_or_default()
    }

    /// The first URI SAN: the SPIFFE identity in a mesh.
    pub fn identity(&self) -> Option<&str> {
        self.uri.first().map(String::as_str)
    }
}

/// A certificate's subject in RFC 2253 order (reverse of the encoding: `CN=…,O=…`), as
/// Envoy prints it; empty for Istio workload certificates.
pub fn subject_rfc2253(der: &[u8]) -> String {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return String::new() };
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|a| {
                    let key = x509_parser::objects::oid2abbrev(a.attr_type(), x509_parser::objects::oid_registry())
                        .map(str::to_string)
                        .unwrap_or_else(|_| a.attr_type().to_id_string());
                    format!("{key}={}", a.as_str().unwrap_or_default())
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

pub use crate::config::tls::{SanKind, SanMatcher};

/// True when the list is empty or any matcher accepts any of the SANs of its kind.
pub fn allowed(matchers: &[SanMatcher], sans: &Sans) -> bool {
    let test = |m: &SanMatcher, s: &str| m.test.matches(Some(s));
    matchers.is_empty()
        || matchers.iter().any(|m| {
            let dns = matches!(m.kind, SanKind::Any | SanKind::Dns)
                && sans.dns.iter().any(|s| test(m, s) || wildcard_covers(&m.test, s));
            let other: &[&Vec<String>] = match m.kind {
                SanKind::Any => &[&sans.uri, &sans.email, &sans.ip],
                SanKind::Uri => &[&sans.uri],
                SanKind::Email => &[&sans.email],
                SanKind::Ip => &[&sans.ip],
                SanKind::Dns => &[],
            };
            dns || other.iter().flat_map(|v| v.iter()).any(|s| test(m, s))
        })
}

/// Envoy's `dnsNameMatch` for exact matchers: a `*.example.com` SAN covers exactly one
/// label in front of `example.com`.
fn wildcard_covers(test: &ValueMatch, san: &str) -> bool {
    let ValueMatch::Exact(want) = test else { return false };
    let Some(suffix) = san.strip_prefix("*.") else { return false };
    match want.split_once('.') {
        Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(suffix),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans() -> Sans {
        Sans {
            uri: vec!["spiffe://cluster.local/ns/shop/sa/cart".into()],
            dns: vec!["cart.shop".into()],
            ..Sans::default()
        }
    }

    #[test]
    fn typed_matchers_look_at_their_kind_only() {
        let m = |kind, test| vec![SanMatcher { kind, test }];
        let s = sans();
        assert!(allowed(&[], &s));
        assert!(allowed(&m(SanKind::Uri, ValueMatch::Exact("spiffe://cluster.local/ns/shop/sa/cart".into())), &s));
        assert!(!allowed(&m(SanKind::Uri, ValueMatch::Exact("spiffe://cluster.local/ns/shop/sa/other".into())), &s));
        assert!(allowed(&m(SanKind::Uri, ValueMatch::Prefix("spiffe://cluster.local/".into())), &s));
        assert!(!allowed(&m(SanKind::Dns, ValueMatch::Prefix("spiffe://".into())), &s));
        assert!(allowed(&m(SanKind::Any, ValueMatch::Suffix(".shop".into())), &s));
        assert!(allowed(&m(SanKind::Uri, ValueMatch::Contains("/sa/".into())), &s));
        let wild = Sans { dns: vec!["*.googleapis.com".into()], ..Sans::default() };
        assert!(allowed(&m(SanKind::Dns, ValueMatch::Exact("storage.googleapis.com".into())), &wild));
        assert!(!allowed(&m(SanKind::Dns, ValueMatch::Exact("a.b.googleapis.com".into())), &wild));
        assert!(!allowed(&m(SanKind::Uri, ValueMatch::Exact("storage.googleapis.com".into())), &wild));
        let re = regex::Regex::new("^spiffe://cluster\\.local/ns/[a-z]+/sa/cart$").unwrap();
        assert!(allowed(&m(SanKind::Uri, ValueMatch::Regex(re)), &s));
    }
}
