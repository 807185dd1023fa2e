//! Applying a plan: pick the iptables back end as istio-iptables does, restore each family's
//! rules atomically (`*-restore --noflush`), stay idempotent on re-runs, and clean up.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::plan::{Family, Plan};

/// Why applying failed (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A binary could not be run.
    #[error("cannot run {bin}: {source}")]
    Spawn {
        /// The binary.
        bin: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A binary ran and failed.
    #[error("{bin} failed ({status}): {stderr}")]
    Failed {
        /// The command.
        bin: String,
        /// Its exit status.
        status: String,
        /// What it printed.
        stderr: String,
    },
}

/// The iptables flavour in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `iptables-legacy`, `iptables-nft` or `iptables`.
    pub v4: String,
    /// The ip6tables counterpart.
    pub v6: String,
    /// Legacy needs `--wait` against the xtables lock.
    pub legacy: bool,
}

fn run(bin: &str, args: &[&str], input: Option<&str>) -> Result<String, ApplyError> {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ApplyError::Spawn { bin: bin.to_string(), source })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(|source| ApplyError::Spawn { bin: bin.to_string(), source })?;
    }
    let out = child.wait_with_output().map_err(|source| ApplyError::Spawn { bin: bin.to_string(), source })?;
    if !out.status.success() {
        return Err(ApplyError::Failed {
            bin: format!("{bin} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// istio-iptables' choice: legacy if it already holds rules, else nft if usable, else plain
/// `iptables` (spec §1.6).
pub fn detect_backend() -> Backend {
    let rules =
        |save: &str| run(save, &[], None).map(|s| s.lines().filter(|l| l.starts_with("-A")).count()).unwrap_or(0);
    if rules("iptables-legacy-save") > 0 {
        return Backend { v4: "iptables-legacy".into(), v6: "ip6tables-legacy".into(), legacy: true };
    }
    if run("iptables-nft-save", &[], None).is_ok() {
        return Backend { v4: "iptables-nft".into(), v6: "ip6tables-nft".into(), legacy: false };
    }
    Backend { v4: "iptables".into(), v6: "ip6tables".into(), legacy: false }
}

impl Backend {
    fn bin(&self, f: Family) -> &str {
        match f {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// The `ISTIO_*` rules now installed for a family, order-insensitive (sorted lines).
    pub fn current(&self, f: Family) -> Vec<String> {
        let Ok(save) = run(&format!("{}-save", self.bin(f)), &[], None) else { return Vec::new() };
        let mut lines: Vec<String> =
            save.lines().filter(|l| l.starts_with("-A") && l.contains("ISTIO_")).map(normalize).collect();
        lines.sort();
        lines
    }

    /// Restores one family's payload.
    pub fn restore(&self, f: Family, payload: &str) -> Result<(), ApplyError> {
        let bin = format!("{}-restore", self.bin(f));
        let mut args = vec!["--noflush"];
        if self.legacy {
            args.push("--wait=30");
        }
        run(&bin, &args, Some(payload)).map(drop)
    }

    /// Removes every jump into `ISTIO_*` chains and the chains themselves (nat, mangle, raw).
    pub fn cleanup(&self, f: Family) -> Result<(), ApplyError> {
        let bin = self.bin(f).to_string();
        for table in ["nat", "mangle", "raw"] {
            let Ok(save) = run(&format!("{bin}-save"), &["-t", table], None) else { continue };
            for line in save.lines() {
                if let Some(rule) = line.strip_prefix("-A ") {
                    let chain = rule.split_whitespace().next().unwrap_or_default();
                    if !chain.starts_with("ISTIO_") && rule.contains("-j ISTIO_") {
                        let mut args = vec!["-t", table, "-D"];
                        args.extend(rule.split_whitespace());
                        run(&bin, &args, None)?;
                    }
                }
            }
            // Flush every ISTIO_ chain first: they jump to each other, so none can be deleted
            // while another still references it.
            let chains: Vec<&str> = save
                .lines()
                .filter_map(|l| l.strip_prefix(':').and_then(|c| c.split_whitespace().next()))
                .filter(|c| c.starts_with("ISTIO_"))
                .collect();
            for chain in &chains {
                run(&bin, &["-t", table, "-F", chain], None)?;
            }
            for chain in &chains {
                run(&bin, &["-t", table, "-X", chain], None)?;
            }
        }
        Ok(())
    }
}

/// `-A` lines of a payload in the same normal form as [`Backend::current`].
pub fn desired(payload: &str) -> Vec<String> {
    let mut lines: Vec<String> = payload
        .lines()
        .filter_map(|l| {
            if let Some(rest) = l.strip_prefix("-I ") {
                // `-I CHAIN N rule` is saved as `-A CHAIN rule`.
                let mut parts = rest.split_whitespace();
                let chain = parts.next()?;
                let _position = parts.next();
                Some(format!("-A {chain} {}", parts.collect::<Vec<_>>().join(" ")))
            } else {
                l.starts_with("-A").then(|| l.to_string())
            }
        })
        .filter(|l| l.contains("ISTIO_"))
        .map(|l| normalize(&l))
        .collect();
    lines.sort();
    lines
}

/// Token-set form, so `iptables-save`'s reordering of matches and its implicit `-m tcp` /
/// `-m udp` compare equal to what we wrote.
fn normalize(line: &str) -> String {
    let raw: Vec<&str> = line.split_whitespace().collect();
    let mut t: Vec<&str> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw.get(i) == Some(&"-m") && matches!(raw.get(i + 1), Some(&"tcp") | Some(&"udp")) {
            i += 2;
            continue;
        }
        if let Some(tok) = raw.get(i) {
            t.push(tok);
        }
        i += 1;
    }
    t.sort_unstable();
    t.join(" ")
}

/// Applies the plan idempotently: identical rules → nothing; different → clean up, then apply.
/// Returns what was done, for the log.
pub fn apply(backend: &Backend, plan: &Plan) -> Result<&'static str, ApplyError> {
    let families: Vec<(Family, &String)> =
        [(Family::V4, &plan.v4), (Family::V6, &plan.v6)].into_iter().filter(|(_, p)| !p.is_empty()).collect();
    let same = families.iter().all(|(f, p)| backend.current(*f) == desired(p));
    if same && families.iter().any(|(f, _)| !backend.current(*f).is_empty()) {
        return Ok("rules already in place; nothing changed");
    }
    for (f, p) in &families {
        if !backend.current(*f).is_empty() {
            backend.cleanup(*f)?;
        }
        backend.restore(*f, p)?;
    }
    for r in &plan.routes {
        if let Some((bin, args)) = r.split_first() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // An existing rule/route (re-run) is fine.
            if let Err(e) = run(bin, &args, None) {
                if !e.to_string().contains("File exists") {
                    return Err(e);
                }
            }
        }
    }
    Ok("rules applied")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_matches_saved_forms() {
        let payload =
            "*nat\n-N ISTIO_X\n-I PREROUTING 1 -i eth1 -j ISTIO_REDIRECT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n";
        let d = desired(payload);
        assert!(d.contains(&normalize("-A PREROUTING -i eth1 -j ISTIO_REDIRECT")));
        assert!(d.contains(&normalize("-A OUTPUT -j ISTIO_OUTPUT")));
        assert_eq!(normalize("-A X -p tcp -j Y"), normalize("-A X -j Y -p tcp"));
        assert_eq!(normalize("-A X -p tcp --dport 1 -j Y"), normalize("-A X -p tcp -m tcp --dport 1 -j Y"));
    }
}
