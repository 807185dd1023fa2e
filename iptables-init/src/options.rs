//! Capture options, as istio-iptables takes them, validated and split per address family.

use std::net::IpAddr;

/// Why the options are unusable (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// A port list entry is not a port.
    #[error("{flag}: \"{value}\" is not a port")]
    Port {
        /// The flag.
        flag: &'static str,
        /// The bad entry.
        value: String,
    },
    /// A CIDR is malformed.
    #[error("{flag}: \"{value}\" is not a CIDR")]
    Cidr {
        /// The flag.
        flag: &'static str,
        /// The bad entry.
        value: String,
    },
    /// `-x '*'` would exclude everything (Istio rejects it too).
    #[error("-x: '*' is not allowed (use an empty -i to capture no outbound traffic)")]
    ExcludeAll,
    /// An interface name that is not one (it would become extra `iptables` arguments).
    #[error("{flag}: \"{value}\" is not an interface name (1 to 15 of A-Z a-z 0-9 _ . : @ + -, starting with a letter or digit)")]
    Interface {
        /// The flag.
        flag: &'static str,
        /// The bad entry.
        value: String,
    },
    /// `-m` is neither REDIRECT nor TPROXY.
    #[error("-m: \"{0}\" is not REDIRECT or TPROXY")]
    Mode(String),
    /// `-u 0`: root's traffic would bypass capture entirely.
    #[error("-u: uid 0 cannot be the proxy uid (every root process would bypass capture)")]
    RootUid,
    /// An exclude range covers an include range, so the `-i` entry could never capture.
    /// (An exclude strictly inside an include is a carve-out istio-iptables users rely on,
    /// and is allowed.)
    #[error("-x: {exclude} overlaps the included range {include} (-i) and would exclude all of it")]
    Overlap {
        /// The exclude CIDR.
        exclude: String,
        /// The include CIDR.
        include: String,
    },
}

/// Whether `outer` contains every address of `inner` (same family, prefix no longer).
pub fn covers(outer: (IpAddr, u8), inner: (IpAddr, u8)) -> bool {
    if outer.1 > inner.1 {
        return false;
    }
    let len = outer.1;
    match (outer.0, inner.0) {
        (IpAddr::V4(x), IpAddr::V4(y)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
            u32::from(x) & mask == u32::from(y) & mask
        }
        (IpAddr::V6(x), IpAddr::V6(y)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
            u128::from(x) & mask == u128::from(y) & mask
        }
        _ => false,
    }
}

/// A Linux interface name iptables can take as one argument (`+` is its wildcard suffix):
/// anything else in a flag value would be spliced into the rule as further arguments, and a
/// leading `-` would read as an option (the fuzzer found `-k -A`).
pub fn interface_name(n: &str) -> bool {
    (1..=15).contains(&n.len())
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:@+-".contains(&b))
}

impl Options {
    /// Checks combinations istio-iptables refuses, before anything is written.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.uid == 0 {
            return Err(OptionsError::RootUid);
        }
        for (flag, names) in [("-k", &self.virtual_interfaces), ("-c", &self.exclude_interfaces)] {
            if let Some(bad) = names.iter().find(|n| !interface_name(n)) {
                return Err(OptionsError::Interface { flag, value: bad.clone() });
            }
        }
        if let Cidrs::List(include) = &self.include_cidrs {
            for x in &self.exclude_cidrs {
                if let Some(i) = include.iter().find(|i| covers(*x, **i)) {
                    return Err(OptionsError::Overlap {
                        exclude: format!("{}/{}", x.0, x.1),
                        include: format!("{}/{}", i.0, i.1),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Inbound interception mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// nat REDIRECT to the inbound port.
    Redirect,
    /// mangle TPROXY with policy routing (keeps the client's source address).
    Tproxy,
}

/// A CIDR list that may be the wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cidrs {
    /// Nothing.
    #[default]
    None,
    /// `*`.
    All,
    /// Explicit ranges.
    List(Vec<(IpAddr, u8)>),
}

/// A port list that may be the wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ports {
    /// Nothing.
    #[default]
    None,
    /// `*`.
    All,
    /// Explicit ports.
    List(Vec<u16>),
}

/// Everything the planner needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `-p`: outbound capture port.
    pub proxy_port: u16,
    /// `-z`: inbound capture port.
    pub inbound_port: u16,
    /// `-e`: inbound tunnel port, never captured.
    pub tunnel_port: u16,
    /// `-u`: proxy uid (never captured).
    pub uid: u32,
    /// `-g`: proxy gid.
    pub gid: u32,
    /// `-m`.
    pub mode: Mode,
    /// `-i`: outbound include CIDRs.
    pub include_cidrs: Cidrs,
    /// `-x`: outbound exclude CIDRs.
    pub exclude_cidrs: Vec<(IpAddr, u8)>,
    /// `-b`: inbound include ports.
    pub include_inbound: Ports,
    /// `-d`: inbound exclude ports.
    pub exclude_inbound: Vec<u16>,
    /// `-q`: outbound include ports.
    pub include_outbound_ports: Vec<u16>,
    /// `-o`: outbound exclude ports.
    pub exclude_outbound_ports: Vec<u16>,
    /// `-k`: virtual interfaces whose inbound traffic is outbound.
    pub virtual_interfaces: Vec<String>,
    /// `-c`: interfaces never captured.
    pub exclude_interfaces: Vec<String>,
    /// `-t`: TPROXY mark.
    pub mark: u32,
    /// `-r`: TPROXY routing table.
    pub route_table: u32,
    /// `--redirect-dns`: capture DNS to the agent on 15053.
    pub redirect_dns: bool,
    /// `--capture-all-dns`: all port-53 traffic, not only the resolv.conf servers.
    pub capture_all_dns: bool,
    /// DNS servers (from /etc/resolv.conf) when not capturing all.
    pub dns_servers: Vec<IpAddr>,
    /// Also render IPv6 rules.
    pub ipv6: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            proxy_port: 15001,
            inbound_port: 15006,
            tunnel_port: 15008,
            uid: 1337,
            gid: 1337,
            mode: Mode::Redirect,
            include_cidrs: Cidrs::All,
            exclude_cidrs: Vec::new(),
            include_inbound: Ports::All,
            exclude_inbound: vec![15090, 15021, 15020],
            include_outbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            virtual_interfaces: Vec::new(),
            exclude_interfaces: Vec::new(),
            mark: 1337,
            route_table: 133,
            redirect_dns: false,
            capture_all_dns: false,
            dns_servers: Vec::new(),
            ipv6: false,
        }
    }
}

/// Parses a comma list of ports (`*` allowed when `wildcard`).
pub fn ports(flag: &'static str, s: &str, wildcard: bool) -> Result<Ports, OptionsError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Ports::None);
    }
    if wildcard && s == "*" {
        return Ok(Ports::All);
    }
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u16>().map_err(|_| OptionsError::Port { flag, value: p.to_string() }))
        .collect::<Result<Vec<_>, _>>()
        .map(Ports::List)
}

/// Parses a comma list of CIDRs (`*` allowed when `wildcard`); a bare IP is a host route.
pub fn cidrs(flag: &'static str, s: &str, wildcard: bool) -> Result<Cidrs, OptionsError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Cidrs::None);
    }
    if s == "*" {
        return if wildcard { Ok(Cidrs::All) } else { Err(OptionsError::ExcludeAll) };
    }
    let mut out = Vec::new();
    for c in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let bad = || OptionsError::Cidr { flag, value: c.to_string() };
        let (ip, len) = match c.split_once('/') {
            Some((ip, len)) => (ip.parse::<IpAddr>().map_err(|_| bad())?, Some(len.parse::<u8>().map_err(|_| bad())?)),
            None => (c.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(bad());
        }
        out.push((ip, len));
    }
    Ok(Cidrs::List(out))
}

/// `-m`.
pub fn mode(s: &str) -> Result<Mode, OptionsError> {
    match s {
        "REDIRECT" | "" => Ok(Mode::Redirect),
        "TPROXY" => Ok(Mode::Tproxy),
        other => Err(OptionsError::Mode(other.to_string())),
    }
}

/// Name servers listed in resolv.conf text.
pub fn resolv_conf_servers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_and_validation() {
        assert_eq!(ports("-d", "15090, 15021", false).unwrap(), Ports::List(vec![15090, 15021]));
        assert_eq!(ports("-b", "*", true).unwrap(), Ports::All);
        assert!(ports("-d", "x", false).is_err());
        assert!(matches!(cidrs("-x", "*", false), Err(OptionsError::ExcludeAll)));
        assert_eq!(
            cidrs("-x", "10.0.0.0/8,fd00::/8,1.2.3.4", false).unwrap(),
            Cidrs::List(vec![
                ("10.0.0.0".parse().unwrap(), 8),
                ("fd00::".parse().unwrap(), 8),
                ("1.2.3.4".parse().unwrap(), 32)
            ])
        );
        assert!(cidrs("-i", "10.0.0.0/33", true).is_err());
        assert!(mode("NONE").is_err());
        let o = Options { uid: 0, ..Options::default() };
        assert!(matches!(o.validate(), Err(OptionsError::RootUid)));
        let o = Options {
            include_cidrs: cidrs("-i", "10.0.0.0/8", true).unwrap(),
            exclude_cidrs: vec![("10.1.0.0".parse().unwrap(), 16)],
            ..Options::default()
        };
        assert!(o.validate().is_ok(), "a carve-out inside the include range is allowed");
        let o = Options { exclude_cidrs: vec![("10.0.0.0".parse().unwrap(), 8)], ..o };
        assert!(matches!(o.validate(), Err(OptionsError::Overlap { .. })));
        let o = Options { exclude_cidrs: vec![("0.0.0.0".parse().unwrap(), 0)], ..o };
        assert!(matches!(o.validate(), Err(OptionsError::Overlap { .. })));
        assert!(!covers(("10.0.0.0".parse().unwrap(), 16), ("10.1.0.0".parse().unwrap(), 16)));
        assert!(!covers(("10.1.0.0".parse().unwrap(), 16), ("10.0.0.0".parse().unwrap(), 8)));
        assert!(!covers(("fd00::".parse().unwrap(), 8), ("10.0.0.0".parse().unwrap(), 8)));
        assert_eq!(resolv_conf_servers("search x\nnameserver 10.96.0.10\nnameserver ::1 # c\n").len(), 2);
    }
}
