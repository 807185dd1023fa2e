//! Route selection: pure functions from a request's host, path, headers and query to a route.

use http::HeaderMap;

use crate::config::route::{DomainPattern, HeaderMatcher, PathMatch, Route, RouteConfig, VirtualHost};

/// Picks the virtual host for `host` with Envoy's precedence: exact, then the longest suffix
/// wildcard, then the longest prefix wildcard, then `*`. As in Envoy, a port in `host` is part
/// of the name (`reviews:9080` does not match domain `reviews`) unless the table sets
/// `ignore_port_in_host_matching`, which istiod sets on every route table.
pub fn virtual_host<'a>(rc: &'a RouteConfig, host: &str) -> Option<&'a VirtualHost> {
    let lower = host.to_ascii_lowercase();
    let host = if rc.ignore_port_in_host_matching { strip_port(&lower) } else { lower.as_str() };
    let mut best: Option<(u8, usize, &VirtualHost)> = None;
    for vh in &rc.virtual_hosts {
        for d in &vh.domains {
            let rank = match d {
                DomainPattern::Exact(e) if e == host => Some((4, e.len())),
                DomainPattern::Suffix(s) if matches_suffix(host, s) => Some((3, s.len())),
                DomainPattern::Prefix(p) if matches_prefix(host, p) => Some((2, p.len())),
                DomainPattern::Any => Some((1, 0)),
                _ => None,
            };
            if let Some((r, len)) = rank {
                if best.is_none_or(|(br, bl, _)| (r, len) > (br, bl)) {
                    best = Some((r, len, vh));
                }
            }
        }
    }
    best.map(|(_, _, vh)| vh)
}

/// A wildcard matches at least one character (Envoy: `*.foo.com` does not match `.foo.com`).
fn matches_suffix(host: &str, suffix: &str) -> bool {
    host.len() > suffix.len() && host.ends_with(suffix)
}

fn matches_prefix(host: &str, prefix: &str) -> bool {
    host.len() > prefix.len() && host.starts_with(prefix)
}

/// `host` without a trailing `:port` (IPv6 literals keep their brackets).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.rfind("]:").map_or(host, |i| &host[..=i]);
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) && host.matches(':').count() == 1 => &host[..i],
        _ => host,
    }
}

/// The first route of `vh` that matches.
pub fn route<'a>(vh: &'a VirtualHost, path_and_query: &str, headers: &HeaderMap) -> Option<&'a Route> {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    vh.routes.iter().find(|r| matches(r, path, query, headers))
}

fn matches(r: &Route, path: &str, query: &str, headers: &HeaderMap) -> bool {
    let m = &r.matcher;
    let path_ok = match &m.path {
        PathMatch::Prefix(p) => starts_with(path, p, m.case_sensitive),
        PathMatch::Exact(p) => {
            if m.case_sensitive {
                path == p
            } else {
                path.eq_ignore_ascii_case(p)
            }
        }
        PathMatch::Regex(re) => re.is_match(path),
        PathMatch::PathSeparatedPrefix(p) => {
            starts_with(path, p, m.case_sensitive) && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
        }
    };
    if !path_ok {
        return false;
    }
    if m.grpc && !is_grpc(headers) {
        return false;
    }
    if !m.headers.iter().all(|h| header_matches(h, headers)) {
        return false;
    }
    m.query_parameters.iter().all(|q| {
        let value = query
            .split('&')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == q.name).then_some(v)
            })
            .next();
        q.test.matches(value)
    })
}

fn starts_with(path: &str, prefix: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        path.starts_with(prefix)
    } else {
        path.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    }
}

/// Whether the request is gRPC (`content-type: application/grpc` or `application/grpc+…`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        ct == "application/grpc" || ct.starts_with("application/grpc+") || ct.starts_with("application/grpc;")
    })
}

fn header_matches(h: &HeaderMatcher, headers: &HeaderMap) -> bool {
    let values: Vec<&str> = headers.get_all(&h.name).iter().filter_map(|v| v.to_str().ok()).collect();
    // Envoy matches multiple values joined with ",".
    let joined = (!values.is_empty()).then(|| values.join(","));
    h.test.matches(joined.as_deref()) != h.invert
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::matcher::ValueMatch;
    use crate::config::route::*;

    fn vh(name: &str, domains: Vec<DomainPattern>, routes: Vec<Route>) -> VirtualHost {
        VirtualHost {
            name: name.into(),
            domains,
            routes,
            edits: Default::default(),
            retry_policy: None,
            per_filter: Default::default(),
        }
    }

    fn r(name: &str, path: PathMatch) -> Route {
        Route {
            name: name.into(),
            matcher: RouteMatch { path, case_sensitive: true, headers: vec![], query_parameters: vec![], grpc: false },
            action: RouteAction::Direct { status: http::StatusCode::OK, body: None },
            edits: Default::default(),
            decorator: None,
            per_filter: Default::default(),
        }
    }

    #[test]
    fn domain_precedence() {
        let rc = RouteConfig {
            name: "rc".into(),
            virtual_hosts: vec![
                vh("any", vec![DomainPattern::Any], vec![]),
                vh("prefix", vec![DomainPattern::Prefix("api.".into())], vec![]),
                vh("suffix", vec![DomainPattern::Suffix(".example.com".into())], vec![]),
                vh("exact", vec![DomainPattern::Exact("api.example.com".into())], vec![]),
            ],
            edits: Default::default(),
            ignore_port_in_host_matching: false,
        };
        let name = |h: &str| virtual_host(&rc, h).map(|v| v.name.clone());
        assert_eq!(name("api.example.com").as_deref(), Some("exact"));
        // Envoy keeps the port unless the table says to ignore it (Envoy 1.40 answers the same:
        // tests/tests/http_proxy.rs virtual_hosts_by_domain): only the prefix wildcard still
        // matches `api.example.com:8080`.
        assert_eq!(name("API.example.com:8080").as_deref(), Some("prefix"));
        assert_eq!(name("www.example.com:80").as_deref(), Some("any"));
        let rc = RouteConfig { ignore_port_in_host_matching: true, ..rc };
        let name = |h: &str| virtual_host(&rc, h).map(|v| v.name.clone());
        assert_eq!(name("API.example.com:8080").as_deref(), Some("exact"));
        assert_eq!(name("www.example.com:80").as_deref(), Some("suffix"));
        assert_eq!(name("[::1]:80").as_deref(), Some("any"));
        assert_eq!(name("www.example.com").as_deref(), Some("suffix"));
        assert_eq!(name("api.other.org").as_deref(), Some("prefix"));
        assert_eq!(name("other.org").as_deref(), Some("any"));
        assert_eq!(name(".example.com").as_deref(), Some("any"));
    }

    #[test]
    fn path_header_query_matching() {
        let mut with_header = r("hdr", PathMatch::Prefix("/".into()));
        with_header.matcher.headers.push(HeaderMatcher {
            name: http::HeaderName::from_static("x-canary"),
            test: ValueMatch::Exact("1".into()),
            invert: false,
        });
        let mut with_query = r("q", PathMatch::Prefix("/".into()));
        with_query
            .matcher
            .query_parameters
            .push(QueryMatcher { name: "v".into(), test: ValueMatch::Exact("2".into()) });
        let v = vh(
            "v",
            vec![DomainPattern::Any],
            vec![
                r("exact", PathMatch::Exact("/health".into())),
                r("sep", PathMatch::PathSeparatedPrefix("/api".into())),
                r("re", PathMatch::Regex(regex::Regex::new("^(?:/u/[0-9]+)$").unwrap())),
                with_header,
                with_query,
                r("fallback", PathMatch::Prefix("/".into())),
            ],
        );
        let mut h = HeaderMap::new();
        let pick = |p: &str, h: &HeaderMap| route(&v, p, h).map(|r| r.name.clone()).unwrap();
        assert_eq!(pick("/health", &h), "exact");
        assert_eq!(pick("/health/x", &h), "fallback");
        assert_eq!(pick("/api/x", &h), "sep");
        assert_eq!(pick("/apix", &h), "fallback");
        assert_eq!(pick("/u/42", &h), "re");
        assert_eq!(pick("/u/4a", &h), "fallback");
        assert_eq!(pick("/x?a=1&v=2", &h), "q");
        h.insert("x-canary", "1".parse().unwrap());
        assert_eq!(pick("/x", &h), "hdr");
    }
}
