//! Options → `iptables-restore` text, in istio-iptables' exact rule order (spec
//! capture-injection §1.2–1.4). Pure; the golden files under `testdata/` pin the output.

use std::fmt::Write;
use std::net::IpAddr;

use crate::options::{Cidrs, Mode, Options, Ports};

/// Address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// iptables.
    V4,
    /// ip6tables.
    V6,
}

/// What to apply: restore payloads per family and the policy-routing commands (TPROXY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `iptables-restore --noflush` input.
    pub v4: String,
    /// `ip6tables-restore --noflush` input (empty when IPv6 is off).
    pub v6: String,
    /// `ip` commands (argument lists) for TPROXY policy routing and the `::6` loopback address.
    pub routes: Vec<Vec<String>>,
}

/// Renders the plan.
pub fn plan(o: &Options) -> Plan {
    let v6 = if o.ipv6 { render(o, Family::V6) } else { String::new() };
    let mut routes = Vec::new();
    if o.mode == Mode::Tproxy {
        let (mark, table) = (o.mark.to_string(), o.route_table.to_string());
        for fam in std::iter::once("-4").chain(o.ipv6.then_some("-6")) {
            routes.push(["ip", fam, "rule", "add", "fwmark", &mark, "lookup", &table].map(String::from).to_vec());
            routes.push(
                ["ip", fam, "route", "add", "local", "default", "dev", "lo", "table", &table]
                    .map(String::from)
                    .to_vec(),
            );
        }
    }
    if o.ipv6 {
        routes.push(["ip", "-6", "addr", "add", "::6/128", "dev", "lo"].map(String::from).to_vec());
    }
    Plan { v4: render(o, Family::V4), v6, routes }
}

struct Fam {
    localhost: &'static str,
    passthrough: &'static str,
}

fn fam(f: Family) -> Fam {
    match f {
        Family::V4 => Fam { localhost: "127.0.0.1/32", passthrough: "127.0.0.6/32" },
        Family::V6 => Fam { localhost: "::1/128", passthrough: "::6/128" },
    }
}

fn of_family(ip: &IpAddr, f: Family) -> bool {
    ip.is_ipv4() == (f == Family::V4)
}

fn cidr(ip: &IpAddr, len: u8) -> String {
    format!("{ip}/{len}")
}

/// One family's payload: nat (always), raw (DNS), mangle (TPROXY).
pub fn render(o: &Options, f: Family) -> String {
    let mut out = String::new();
    out.push_str(&nat(o, f));
    if o.redirect_dns {
        out.push_str(&raw(o, f));
    }
    if o.mode == Mode::Tproxy {
        out.push_str(&mangle(o, f));
    }
    out
}

fn nat(o: &Options, f: Family) -> String {
    let a = fam(f);
    let mut r: Vec<String> = Vec::new();
    let mut chains = vec!["ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT"];
    let dns = o.redirect_dns && (o.capture_all_dns || o.dns_servers.iter().any(|s| of_family(s, f)));
    if dns {
        chains.push("ISTIO_OUTPUT_DNS");
    }
    // Row 0: excluded interfaces never reach Istio's chains.
    for i in &o.exclude_interfaces {
        r.push(format!("-A PREROUTING -i {i} -j RETURN"));
        r.push(format!("-A OUTPUT -o {i} -j RETURN"));
    }
    // Rows 1–3.
    r.push(format!("-A ISTIO_INBOUND -p tcp --dport {} -j RETURN", o.tunnel_port));
    r.push(format!("-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {}", o.proxy_port));
    r.push(format!("-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}", o.inbound_port));
    // Rows 4–6 (REDIRECT mode; TPROXY handles inbound in mangle).
    if o.mode == Mode::Redirect && o.include_inbound != Ports::None {
        r.push("-A PREROUTING -p tcp -j ISTIO_INBOUND".into());
        match &o.include_inbound {
            Ports::All => {
                for p in &o.exclude_inbound {
                    r.push(format!("-A ISTIO_INBOUND -p tcp --dport {p} -j RETURN"));
                }
                r.push("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT".into());
            }
            Ports::List(ps) => {
                for p in ps {
                    r.push(format!("-A ISTIO_INBOUND -p tcp --dport {p} -j ISTIO_IN_REDIRECT"));
                }
            }
            Ports::None => {}
        }
    }
    // Row 0 (-k): virtual interfaces' inbound traffic is outbound; inserted at the top.
    for i in &o.virtual_interfaces {
        match &o.include_cidrs {
            Cidrs::All => {
                r.push(format!("-I PREROUTING 1 -i {i} -j ISTIO_REDIRECT"));
                for (ip, len) in o.exclude_cidrs.iter().filter(|(ip, _)| of_family(ip, f)) {
                    r.push(format!("-I PREROUTING 1 -i {i} -d {} -j RETURN", cidr(ip, *len)));
                }
            }
            Cidrs::List(list) => {
                for (ip, len) in list.iter().filter(|(ip, _)| of_family(ip, f)) {
                    r.push(format!("-I PREROUTING 1 -i {i} -d {} -j ISTIO_REDIRECT", cidr(ip, *len)));
                }
                r.push(format!("-A PREROUTING -i {i} -j RETURN"));
            }
            Cidrs::None => {}
        }
    }
    // Row 7.
    r.push("-A OUTPUT -j ISTIO_OUTPUT".into());
    // Row 8: outbound port exclusions first.
    for p in &o.exclude_outbound_ports {
        r.push(format!("-A ISTIO_OUTPUT -p tcp --dport {p} -j RETURN"));
        r.push(format!("-A ISTIO_OUTPUT -p udp --dport {p} -j RETURN"));
    }
    // Row 9: inbound passthrough source.
    r.push(format!("-A ISTIO_OUTPUT -o lo -s {} -j RETURN", a.passthrough));
    let loopback_included = matches!(&o.include_cidrs, Cidrs::List(l) if l.iter().any(|(ip, _)| ip.is_loopback()));
    // Rows 10–15: hairpin, app-over-lo, proxy loop prevention, for uid then gid.
    for (kind, id) in [("uid", o.uid), ("gid", o.gid)] {
        let ports = if dns {
            "-m multiport ! --dports 53,".to_string() + &o.tunnel_port.to_string()
        } else {
            format!("! --dport {}", o.tunnel_port)
        };
        r.push(format!(
            "-A ISTIO_OUTPUT -o lo ! -d {} -p tcp {ports} -m owner --{kind}-owner {id} -j ISTIO_IN_REDIRECT",
            a.localhost
        ));
        if !loopback_included {
            if dns {
                r.push(format!("-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --{kind}-owner {id} -j RETURN"));
            } else {
                r.push(format!("-A ISTIO_OUTPUT -o lo -m owner ! --{kind}-owner {id} -j RETURN"));
            }
        }
        r.push(format!("-A ISTIO_OUTPUT -m owner --{kind}-owner {id} -j RETURN"));
    }
    // Row 17: DNS capture after the owner rules.
    if dns {
        r.push("-A ISTIO_OUTPUT -j ISTIO_OUTPUT_DNS".into());
        for proto in ["tcp", "udp"] {
            if o.capture_all_dns {
                r.push(format!("-A ISTIO_OUTPUT_DNS -p {proto} --dport 53 -j REDIRECT --to-ports 15053"));
            } else {
                for s in o.dns_servers.iter().filter(|s| of_family(s, f)) {
                    let len = if s.is_ipv4() { 32 } else { 128 };
                    r.push(format!(
                        "-A ISTIO_OUTPUT_DNS -p {proto} --dport 53 -d {} -j REDIRECT --to-ports 15053",
                        cidr(s, len)
                    ));
                }
            }
        }
    }
    // Row 18.
    r.push(format!("-A ISTIO_OUTPUT -d {} -j RETURN", a.localhost));
    // Row 19.
    for (ip, len) in o.exclude_cidrs.iter().filter(|(ip, _)| of_family(ip, f)) {
        r.push(format!("-A ISTIO_OUTPUT -d {} -j RETURN", cidr(ip, *len)));
    }
    // Row 20.
    for p in &o.include_outbound_ports {
        r.push(format!("-A ISTIO_OUTPUT -p tcp --dport {p} -j ISTIO_REDIRECT"));
    }
    // Row 21.
    match &o.include_cidrs {
        Cidrs::All => r.push("-A ISTIO_OUTPUT -j ISTIO_REDIRECT".into()),
        Cidrs::List(list) => {
            for (ip, len) in list.iter().filter(|(ip, _)| of_family(ip, f)) {
                r.push(format!("-A ISTIO_OUTPUT -d {} -j ISTIO_REDIRECT", cidr(ip, *len)));
            }
        }
        Cidrs::None => {}
    }
    table("nat", &chains, &r)
}

fn raw(o: &Options, f: Family) -> String {
    let mut r: Vec<String> = vec!["-A OUTPUT -j ISTIO_OUTPUT_DNS".into()];
    for (kind, id) in [("uid", o.uid), ("gid", o.gid)] {
        r.push(format!("-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --{kind}-owner {id} -j CT --zone 1"));
        r.push(format!("-A ISTIO_OUTPUT_DNS -p udp --sport 15053 -m owner --{kind}-owner {id} -j CT --zone 2"));
    }
    let servers: Vec<String> = if o.capture_all_dns {
        vec![String::new()]
    } else {
        o.dns_servers.iter().filter(|s| of_family(s, f)).map(|s| cidr(s, if s.is_ipv4() { 32 } else { 128 })).collect()
    };
    for s in &servers {
        let d = if s.is_empty() { String::new() } else { format!(" -d {s}") };
        r.push(format!("-A ISTIO_OUTPUT_DNS -p udp --dport 53{d} -j CT --zone 2"));
    }
    r.push("-A PREROUTING -j ISTIO_INBOUND".into());
    for s in &servers {
        let src = if s.is_empty() { String::new() } else { format!(" -s {s}") };
        r.push(format!("-A ISTIO_INBOUND -p udp --sport 53{src} -j CT --zone 1"));
    }
    table("raw", &["ISTIO_OUTPUT_DNS", "ISTIO_INBOUND"], &r)
}

fn mangle(o: &Options, f: Family) -> String {
    let a = fam(f);
    let mut r: Vec<String> = Vec::new();
    let (mark, port) = (o.mark, o.inbound_port);
    r.push(format!("-A ISTIO_DIVERT -j MARK --set-mark {mark}"));
    r.push("-A ISTIO_DIVERT -j ACCEPT".into());
    r.push(format!(
        "-A ISTIO_TPROXY ! -d {} -p tcp -j TPROXY --tproxy-mark {mark}/0xffffffff --on-port {port}",
        a.localhost
    ));
    if o.include_inbound != Ports::None {
        r.push("-A PREROUTING -p tcp -j ISTIO_INBOUND".into());
        r.push(format!("-A ISTIO_INBOUND -p tcp -m mark --mark {mark} -j RETURN"));
        r.push(format!("-A ISTIO_INBOUND -p tcp -s {} -i lo -j RETURN", a.passthrough));
        r.push(format!("-A ISTIO_INBOUND -p tcp -i lo -m mark ! --mark {} -j RETURN", mark + 1));
        r.push(format!("-A ISTIO_INBOUND -p tcp --dport {} -j RETURN", o.tunnel_port));
        match &o.include_inbound {
            Ports::All => {
                for p in &o.exclude_inbound {
                    r.push(format!("-A ISTIO_INBOUND -p tcp --dport {p} -j RETURN"));
                }
                r.push("-A ISTIO_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT".into());
                r.push("-A ISTIO_INBOUND -p tcp -j ISTIO_TPROXY".into());
            }
            Ports::List(ps) => {
                for p in ps {
                    r.push(format!("-A ISTIO_INBOUND -p tcp --dport {p} -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT"));
                    r.push(format!("-A ISTIO_INBOUND -p tcp --dport {p} -j ISTIO_TPROXY"));
                }
            }
            Ports::None => {}
        }
    }
    r.push(format!("-A PREROUTING -p tcp -m mark --mark {mark} -j CONNMARK --save-mark"));
    r.push(format!("-A OUTPUT -p tcp -o lo -m mark --mark {mark} -j RETURN"));
    for (kind, id) in [("uid", o.uid), ("gid", o.gid)] {
        r.push(format!(
            "-A OUTPUT ! -d {} -p tcp -o lo -m owner --{kind}-owner {id} -j MARK --set-mark {}",
            a.localhost,
            mark + 1
        ));
    }
    r.push(format!("-A OUTPUT -p tcp -m connmark --mark {mark} -j CONNMARK --restore-mark"));
    table("mangle", &["ISTIO_DIVERT", "ISTIO_TPROXY", "ISTIO_INBOUND"], &r)
}

fn table(name: &str, chains: &[&str], rules: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "*{name}");
    for c in chains {
        let _ = writeln!(s, "-N {c}");
    }
    for r in rules {
        let _ = writeln!(s, "{r}");
    }
    s.push_str("COMMIT\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options;

    /// Compares with `testdata/<name>.golden`; `UPDATE_GOLDEN=1` rewrites it (then review the diff).
    fn golden(name: &str, o: &Options) {
        let p = plan(o);
        let mut text = format!("# v4\n{}", p.v4);
        if o.ipv6 {
            text.push_str(&format!("# v6\n{}", p.v6));
        }
        for r in &p.routes {
            text.push_str(&format!("# route: {}\n", r.join(" ")));
        }
        let path = format!("{}/testdata/{name}.golden", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let want =
            std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing {path}; run with UPDATE_GOLDEN=1"));
        assert_eq!(text, want, "{name} differs from its golden file");
    }

    #[test]
    fn golden_default_injection() {
        golden("default", &Options::default());
    }

    #[test]
    fn golden_port_and_cidr_options() {
        let o = Options {
            exclude_outbound_ports: vec![8443, 3306],
            include_outbound_ports: vec![9999],
            exclude_cidrs: match options::cidrs("-x", "10.250.0.0/16,fd00:250::/32", false).unwrap() {
                Cidrs::List(l) => l,
                _ => unreachable!(),
            },
            ..Options::default()
        };
        golden("ports-cidrs", &o);
        let o = Options {
            include_cidrs: options::cidrs("-i", "10.96.0.0/12,127.0.0.0/8", true).unwrap(),
            include_inbound: Ports::List(vec![9080, 9443]),
            ..Options::default()
        };
        golden("ip-range-inbound-ports", &o);
        golden(
            "no-inbound",
            &Options { include_inbound: Ports::None, include_cidrs: Cidrs::None, ..Options::default() },
        );
    }

    #[test]
    fn golden_dns_tproxy_ipv6_interfaces() {
        golden(
            "dns-uid-gid",
            &Options {
                redirect_dns: true,
                dns_servers: vec!["10.96.0.10".parse().unwrap()],
                uid: 1337,
                gid: 1338,
                ..Options::default()
            },
        );
        golden(
            "dns-capture-all-ipv6",
            &Options { redirect_dns: true, capture_all_dns: true, ipv6: true, ..Options::default() },
        );
        golden("tproxy", &Options { mode: Mode::Tproxy, ..Options::default() });
        golden(
            "kube-virt-interfaces",
            &Options {
                virtual_interfaces: vec!["eth1".into()],
                exclude_interfaces: vec!["eth9".into()],
                exclude_cidrs: vec![("10.1.0.0".parse().unwrap(), 16)],
                ..Options::default()
            },
        );
    }

    #[test]
    fn default_rules_follow_istio_order() {
        let v4 = plan(&Options::default()).v4;
        let pos = |needle: &str| v4.find(needle).unwrap_or_else(|| panic!("missing {needle}\n{v4}"));
        assert!(pos("-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN") < pos("--uid-owner 1337 -j ISTIO_IN_REDIRECT"));
        assert!(
            pos("-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN")
                < pos("-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN")
        );
        assert!(v4.ends_with("-A ISTIO_OUTPUT -j ISTIO_REDIRECT\nCOMMIT\n"));
        assert!(pos("--dport 15090 -j RETURN") < pos("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT"));
    }
}
