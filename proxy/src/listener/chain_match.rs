//! Filter-chain selection with Envoy's precedence: destination port, destination IP, server
//! name, transport protocol, application protocols, source IP, source port. At each step the
//! most specific matching criterion wins; chains that leave the criterion empty are the
//! fallback only when no chain names a matching value.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use crate::config::listener::{ChainMatch, CidrRange, FilterChain, Listener};

/// What is known about a connection when its chain is chosen.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// Local (original destination) address.
    pub local: Option<SocketAddr>,
    /// Peer address.
    pub peer: Option<SocketAddr>,
    /// TLS SNI, lower case.
    pub sni: Option<String>,
    /// `tls` or `raw_buffer`.
    pub transport: &'static str,
    /// ALPN (TLS) or the sniffed HTTP protocol.
    pub alpn: Vec<String>,
}

/// The chain for `conn`, or the listener's default chain.
pub fn select<'a>(l: &'a Listener, conn: &ConnInfo) -> Option<&'a Arc<FilterChain>> {
    select_in(l, &l.filter_chains, l.default_filter_chain.as_ref(), conn)
}

/// [`select`] over any list of chains in the listener's order (the running listener's chains
/// carry their built TLS contexts).
pub fn select_in<'a, C: Deref<Target = FilterChain>>(
    l: &Listener,
    chains: &'a [C],
    default: Option<&'a C>,
    conn: &ConnInfo,
) -> Option<&'a C> {
    if let Some(m) = &l.chain_matcher {
        let inputs = crate::config::chain_matcher::Inputs {
            destination: conn.local,
            source: conn.peer,
            server_name: conn.sni.as_deref(),
            transport: conn.transport,
            application_protocols: &conn.alpn,
        };
        let by_name = m.select(&inputs).and_then(|name| chains.iter().find(|c| c.name == name));
        return by_name.or(default);
    }
    let mut c: Vec<&C> = chains.iter().collect();
    c = narrow(c, |m| match m.destination_port {
        None => 0,
        Some(p) if conn.local.is_some_and(|a| a.port() == p) => 1,
        Some(_) => -1,
    });
    c = narrow(c, |m| cidr_score(&m.prefix_ranges, conn.local));
    c = narrow(c, |m| sni_score(&m.server_names, conn.sni.as_deref()));
    c = narrow(c, |m| match &m.transport_protocol {
        None => 0,
        Some(t) if t == conn.transport => 1,
        Some(_) => -1,
    });
    c = narrow(c, |m| {
        if m.application_protocols.is_empty() {
            0
        } else if m.application_protocols.iter().any(|p| conn.alpn.contains(p)) {
            1
        } else {
            -1
        }
    });
    c = narrow(c, |m| cidr_score(&m.source_prefix_ranges, conn.peer));
    c = narrow(c, |m| {
        if m.source_ports.is_empty() {
            0
        } else if conn.peer.is_some_and(|p| m.source_ports.contains(&p.port())) {
            1
        } else {
            -1
        }
    });
    c.first().copied().or(default)
}

/// Keeps the chains with the best positive score, else those with score 0 (criterion empty).
/// A negative score means the chain names the criterion and the connection does not match.
fn narrow<C: Deref<Target = FilterChain>>(chains: Vec<&C>, score: impl Fn(&ChainMatch) -> i32) -> Vec<&C> {
    let scored: Vec<(i32, &C)> = chains.into_iter().map(|c| (score(&c.matcher), c)).collect();
    let best = scored.iter().map(|(s, _)| *s).max().unwrap_or(-1);
    if best < 0 {
        return Vec::new();
    }
    scored.into_iter().filter(|(s, _)| *s == best).map(|(_, c)| c).collect()
}

/// Longest matching prefix wins (score = prefix length + 1).
fn cidr_score(ranges: &[CidrRange], addr: Option<SocketAddr>) -> i32 {
    if ranges.is_empty() {
        return 0;
    }
    let Some(a) = addr else { return -1 };
    ranges.iter().filter(|r| r.contains(a.ip())).map(|r| i32::from(r.len) + 1).max().unwrap_or(-1)
}

/// Exact names beat wildcards; longer wildcard suffixes beat shorter ones.
fn sni_score(names: &[String], sni: Option<&str>) -> i32 {
    if names.is_empty() {
        return 0;
    }
    let Some(sni) = sni else { return -1 };
    names
        .iter()
        .filter_map(|n| {
            if n == sni {
                Some(10_000)
            } else if let Some(suffix) = n.strip_prefix('*') {
                (sni.len() > suffix.len() && sni.ends_with(suffix))
                    .then(|| i32::try_from(suffix.len()).unwrap_or(0) + 1)
            } else {
                None
            }
        })
        .max()
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cluster::ClusterTarget;
    use crate::config::listener::{NetworkFilter, TcpProxy};

    fn chain(name: &str, m: ChainMatch) -> Arc<FilterChain> {
        Arc::new(FilterChain {
            name: name.into(),
            matcher: m,
            filter: NetworkFilter::TcpProxy(TcpProxy {
                stat_prefix: String::new(),
                target: ClusterTarget::Single("c".into()),
                idle_timeout: None,
                access_log: Default::default(),
                sni_cluster: false,
            }),
            tls: None,
            handshake_timeout: None,
            policies: Vec::new(),
            fingerprint: 0,
        })
    }

    fn listener(chains: Vec<Arc<FilterChain>>) -> Listener {
        Listener {
            base_fingerprint: 0,
            name: "l".into(),
            address: "127.0.0.1:0".parse().unwrap(),
            additional_addresses: vec![],
            chain_matcher: None,
            filter_chains: chains,
            default_filter_chain: None,
            inspect: true,
            inspect_timeout: Some(std::time::Duration::from_secs(1)),
            continue_on_inspect_timeout: false,
            backlog: 128,
            inbound: false,
            outbound: false,
            internal: false,
            use_original_dst: false,
            bind_to_port: true,
            transparent: false,
        }
    }

    fn pick(l: &Listener, c: &ConnInfo) -> Option<String> {
        select(l, c).map(|c| c.name.clone())
    }

    #[test]
    fn port_is_decided_before_server_name() {
        // Envoy: a chain naming the destination port wins even if another chain names the SNI.
        let l = listener(vec![
            chain("sni", ChainMatch { server_names: vec!["a.com".into()], ..Default::default() }),
            chain("port", ChainMatch { destination_port: Some(443), ..Default::default() }),
        ]);
        let conn = ConnInfo {
            local: Some("10.0.0.1:443".parse().unwrap()),
            sni: Some("a.com".into()),
            transport: "tls",
            ..Default::default()
        };
        assert_eq!(pick(&l, &conn).as_deref(), Some("port"));
        let other = ConnInfo {
            local: Some("10.0.0.1:80".parse().unwrap()),
            sni: Some("a.com".into()),
            transport: "tls",
            ..Default::default()
        };
        assert_eq!(pick(&l, &other).as_deref(), Some("sni"));
    }

    #[test]
    fn exact_sni_beats_wildcard_and_empty_is_fallback() {
        let l = listener(vec![
            chain("any", ChainMatch::default()),
            chain("wild", ChainMatch { server_names: vec!["*.example.com".into()], ..Default::default() }),
            chain("exact", ChainMatch { server_names: vec!["api.example.com".into()], ..Default::default() }),
        ]);
        let c = |s: &str| ConnInfo { sni: Some(s.into()), transport: "tls", ..Default::default() };
        assert_eq!(pick(&l, &c("api.example.com")).as_deref(), Some("exact"));
        assert_eq!(pick(&l, &c("www.example.com")).as_deref(), Some("wild"));
        assert_eq!(pick(&l, &c("other.org")).as_deref(), Some("any"));
    }

    #[test]
    fn transport_and_alpn_then_default_chain() {
        let mut l = listener(vec![
            chain("tls", ChainMatch { transport_protocol: Some("tls".into()), ..Default::default() }),
            chain(
                "h2c",
                ChainMatch {
                    transport_protocol: Some("raw_buffer".into()),
                    application_protocols: vec!["h2c".into()],
                    ..Default::default()
                },
            ),
        ]);
        let raw = |alpn: &str| ConnInfo { transport: "raw_buffer", alpn: vec![alpn.into()], ..Default::default() };
        assert_eq!(pick(&l, &raw("h2c")).as_deref(), Some("h2c"));
        assert_eq!(pick(&l, &raw("http/1.1")), None);
        l.default_filter_chain = Some(chain("default", ChainMatch::default()));
        assert_eq!(pick(&l, &raw("http/1.1")).as_deref(), Some("default"));
    }

    #[test]
    fn longest_prefix_wins() {
        let r = |s: &str, len| CidrRange { addr: s.parse().unwrap(), len };
        let l = listener(vec![
            chain("wide", ChainMatch { prefix_ranges: vec![r("10.0.0.0", 8)], ..Default::default() }),
            chain("narrow", ChainMatch { prefix_ranges: vec![r("10.1.0.0", 16)], ..Default::default() }),
        ]);
        let c = |a: &str| ConnInfo { local: Some(a.parse().unwrap()), ..Default::default() };
        assert_eq!(pick(&l, &c("10.1.2.3:1")).as_deref(), Some("narrow"));
        assert_eq!(pick(&l, &c("10.2.2.3:1")).as_deref(), Some("wide"));
        assert_eq!(pick(&l, &c("11.0.0.1:1")), None);
    }
}
