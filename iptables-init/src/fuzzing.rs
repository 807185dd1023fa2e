//! Fuzz harness for the capture planner, shared by `fuzz/` and the corpus replay test: the
//! flags an operator (or an injector's annotations) supply, as text, are parsed and validated;
//! options that pass must render rules in which every line is a table, a chain, a rule or
//! COMMIT — no flag value may smuggle in a line of its own.

use crate::options::{self, Cidrs, Options, Ports};
use crate::plan::{render, Family};

/// Lines of `data`: mode, include CIDRs, exclude CIDRs, inbound ports, inbound excludes,
/// outbound include ports, outbound exclude ports, virtual interfaces, excluded interfaces.
pub fn plan(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut f = text.split('\n');
    let mut next = || f.next().unwrap_or("").to_string();
    let (mode, inc, exc, inb, inb_x, out_i, out_x, virt, excl) =
        (next(), next(), next(), next(), next(), next(), next(), next(), next());
    let list = |p: Ports| match p {
        Ports::List(v) => v,
        _ => Vec::new(),
    };
    let words =
        |s: &str| -> Vec<String> { s.split(',').map(str::trim).filter(|w| !w.is_empty()).map(String::from).collect() };
    let build = || -> Result<Options, options::OptionsError> {
        let o = Options {
            mode: options::mode(if mode.is_empty() { "REDIRECT" } else { &mode })?,
            include_cidrs: options::cidrs("-i", &inc, true)?,
            exclude_cidrs: match options::cidrs("-x", &exc, false)? {
                Cidrs::List(v) => v,
                _ => Vec::new(),
            },
            include_inbound: options::ports("-b", &inb, true)?,
            exclude_inbound: list(options::ports("-d", &inb_x, false)?),
            include_outbound_ports: list(options::ports("-q", &out_i, false)?),
            exclude_outbound_ports: list(options::ports("-o", &out_x, false)?),
            virtual_interfaces: words(&virt),
            exclude_interfaces: words(&excl),
            ipv6: true,
            ..Options::default()
        };
        o.validate()?;
        Ok(o)
    };
    let Ok(o) = build() else { return };
    for family in [Family::V4, Family::V6] {
        for line in render(&o, family).lines() {
            let ok = line.is_empty()
                || line.starts_with('#')
                || line.starts_with('*')
                || line.starts_with(':')
                || line.starts_with("-A ")
                || line.starts_with("-I ")
                || line.starts_with("-N ")
                || line == "COMMIT";
            assert!(ok, "a rendered line is not a rule: {line:?}");
            if let Some(rule) = line.strip_prefix("-A ") {
                assert!(!rule.contains(" -A ") && !rule.contains("COMMIT"), "one rule line holds two: {line:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_interface_name_cannot_smuggle_a_rule() {
        // `-c 'eth0 -j ACCEPT'`: spaces would split the name into more arguments.
        super::plan(b"REDIRECT\n*\n\n*\n\n\n\n\neth0 -j ACCEPT -A OUTPUT");
        super::plan(b"REDIRECT\n*\n\n*\n\n\n\nveth0,eth1\nlo");
    }
}
