//! `filter_chain_matcher`: Envoy's unified matcher choosing a filter chain by name, in the
//! shapes istiod emits for waypoints — match trees over the destination IP (an `IPMatcher`),
//! the destination port, the application protocol, SNI or transport, with `on_no_match`.

use std::collections::HashMap;
use std::net::IpAddr;

use super::listener::CidrRange as Cidr;

/// A matcher tree node.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainMatcher {
    /// What the tree looks at.
    pub input: Input,
    /// How the value is looked up.
    pub lookup: Lookup,
    /// When nothing matched here.
    pub on_no_match: Option<Box<OnMatch>>,
}

/// A connection property (Envoy's `envoy.matching.inputs.*` network inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// `DestinationIPInput` (the original destination).
    DestinationIp,
    /// `DestinationPortInput`.
    DestinationPort,
    /// `SourceIPInput`.
    SourceIp,
    /// `SourcePortInput`.
    SourcePort,
    /// `ServerNameInput` (SNI).
    ServerName,
    /// `TransportProtocolInput` (`tls` / `raw_buffer`).
    TransportProtocol,
    /// `ApplicationProtocolInput`: the ALPN list as `'h2','http/1.1'`.
    ApplicationProtocol,
}

/// The lookup of a tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// `exact_match_map`.
    Exact(HashMap<String, OnMatch>),
    /// `prefix_match_map`: the longest matching prefix wins.
    Prefix(Vec<(String, OnMatch)>),
    /// `custom_match` with `xds.type.matcher.v3.IPMatcher`: the most specific range wins;
    /// `exclude` ranges never match.
    Ip(Vec<(Cidr, bool, OnMatch)>),
}

/// What a match leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum OnMatch {
    /// The name of a filter chain.
    Chain(String),
    /// A nested tree.
    Matcher(Box<ChainMatcher>),
}

/// The values the inputs read, for one connection.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    /// Original destination.
    pub destination: Option<std::net::SocketAddr>,
    /// Peer.
    pub source: Option<std::net::SocketAddr>,
    /// SNI.
    pub server_name: Option<&'a str>,
    /// `tls` / `raw_buffer`.
    pub transport: &'a str,
    /// ALPN offer or sniffed HTTP protocol.
    pub application_protocols: &'a [String],
}

impl ChainMatcher {
    /// The chain name for `i`, or `None` (then the default chain applies).
    pub fn select(&self, i: &Inputs<'_>) -> Option<&str> {
        let value: Option<String> = match self.input {
            Input::DestinationIp => i.destination.map(|a| a.ip().to_string()),
            Input::DestinationPort => i.destination.map(|a| a.port().to_string()),
            Input::SourceIp => i.source.map(|a| a.ip().to_string()),
            Input::SourcePort => i.source.map(|a| a.port().to_string()),
            Input::ServerName => i.server_name.map(str::to_string),
            Input::TransportProtocol => Some(i.transport.to_string()),
            Input::ApplicationProtocol => (!i.application_protocols.is_empty())
                .then(|| i.application_protocols.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(",")),
        };
        let hit = value.as_deref().and_then(|v| match &self.lookup {
            Lookup::Exact(m) => m.get(v),
            Lookup::Prefix(list) => {
                list.iter().filter(|(p, _)| v.starts_with(p.as_str())).max_by_key(|(p, _)| p.len()).map(|(_, m)| m)
            }
            Lookup::Ip(ranges) => {
                let ip: IpAddr = v.parse().ok()?;
                ranges
                    .iter()
                    .filter(|(c, exclude, _)| !exclude && c.contains(ip))
                    .max_by_key(|(c, ..)| c.len)
                    .map(|(.., m)| m)
            }
        });
        // A nested tree that does not match falls back to this level's on_no_match.
        hit.and_then(|m| m.resolve(i)).or_else(|| self.on_no_match.as_ref().and_then(|m| m.resolve(i)))
    }
}

impl OnMatch {
    fn resolve(&self, i: &Inputs<'_>) -> Option<&str> {
        match self {
            OnMatch::Chain(name) => Some(name),
            OnMatch::Matcher(m) => m.select(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Istio 1.21's waypoint `main_internal` (tests/fixtures/istio).
    fn waypoint() -> ChainMatcher {
        let by_port = ChainMatcher {
            input: Input::DestinationPort,
            lookup: Lookup::Exact(HashMap::from([("8000".to_string(), OnMatch::Chain("vip-8000".into()))])),
            on_no_match: None,
        };
        let by_alpn = ChainMatcher {
            input: Input::ApplicationProtocol,
            lookup: Lookup::Exact(HashMap::from([
                ("'h2c'".to_string(), OnMatch::Chain("direct-http".into())),
                ("'http/1.1'".to_string(), OnMatch::Chain("direct-http".into())),
            ])),
            on_no_match: Some(Box::new(OnMatch::Chain("direct-tcp".into()))),
        };
        let cidr = |s: &str, len| Cidr { addr: s.parse().unwrap(), len };
        ChainMatcher {
            input: Input::DestinationIp,
            lookup: Lookup::Ip(vec![
                (cidr("10.104.171.68", 32), false, OnMatch::Matcher(Box::new(by_port))),
                (cidr("192.168.195.248", 32), false, OnMatch::Matcher(Box::new(by_alpn))),
            ]),
            on_no_match: None,
        }
    }

    #[test]
    fn waypoint_tree() {
        let m = waypoint();
        let http = ["http/1.1".to_string()];
        let at = |dst: &str, alpn: &'static [String]| Inputs {
            destination: Some(dst.parse().unwrap()),
            transport: "raw_buffer",
            application_protocols: alpn,
            ..Inputs::default()
        };
        assert_eq!(m.select(&at("10.104.171.68:8000", &[])), Some("vip-8000"));
        assert_eq!(m.select(&at("10.104.171.68:9999", &[])), None, "no port: no chain (default chain)");
        let h: &'static [String] = Box::leak(Box::new(http));
        assert_eq!(m.select(&at("192.168.195.248:80", h)), Some("direct-http"));
        assert_eq!(m.select(&at("192.168.195.248:80", &[])), Some("direct-tcp"));
        assert_eq!(m.select(&at("1.2.3.4:80", h)), None);
    }
}
