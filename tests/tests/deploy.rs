//! The deployment artefacts in `deploy/` and the `Dockerfile`: every Kubernetes object passes the
//! Kubernetes API schemas in strict mode, the injection templates keep the sidecar contract, the
//! ConfigMaps hold exactly the standalone bootstraps, and the Dockerfile lints clean — all checked
//! by `tests/peers/check_deploy.py` with the kubernetes-validate and hadolint that
//! scripts/test-deps.sh pins; and the binary accepts the bootstraps those manifests ship.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Command;

#[test]
fn manifests_validate_and_dockerfile_lints() {
    let script = tests::repo_root().join("tests/peers/check_deploy.py");
    let out = Command::new(tests::python())
        .arg(&script)
        .current_dir(tests::repo_root())
        .output()
        .expect("run tests/peers/check_deploy.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} failed ({}):\n{stdout}\n{stderr}", script.display(), out.status);
    assert!(stdout.contains("check_deploy: all passed"), "no closing line from the checker:\n{stdout}\n{stderr}");
}

/// `isthmus --mode validate -c deploy/<file>` succeeds.
fn validates(file: &str) {
    let path = tests::repo_root().join("deploy").join(file);
    let out = tests::proxy::run(&["--mode", "validate", "-c", path.to_str().expect("UTF-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} is refused ({}):\n{stdout}\n{stderr}", path.display(), out.status);
    assert!(stdout.contains("OK"), "{}: no OK line:\n{stdout}\n{stderr}", path.display());
}

#[test]
fn edge_gateway_bootstrap_validates() {
    validates("edge-gateway-bootstrap.yaml");
}

#[test]
fn sidecar_bootstrap_validates() {
    validates("sidecar-bootstrap.yaml");
}

/// Under Istio the injector's exact `istio-init` arguments (deploy/istio-injection.yaml) go to
/// iptables-init: it must accept every one of them (a dry run plans the rules, writes nothing).
#[test]
fn iptables_init_accepts_the_istio_injectors_arguments() {
    let text = std::fs::read_to_string(tests::repo_root().join("deploy/istio-injection.yaml")).unwrap();
    let pod: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["name"], "istio-init");
    let args: Vec<String> = init["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    assert!(args.iter().any(|a| a.starts_with("--log_output_level")), "{args:?}");
    let mut cmd = Command::new(tests::bin("iptables-init"));
    cmd.args(&args).arg("--dry-run");
    let out = cmd.output().expect("run iptables-init");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("-A ISTIO_OUTPUT") && stdout.contains("--to-ports 15001"), "{stdout}");
}
