//! The README tells the truth: every config it shows is accepted, every command it shows runs
//! and says what the README says it says (the examples and bad examples themselves are checked
//! file by file in config_cli.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Command;
use std::time::Duration;

use tests::netns::Netns;

fn readme() -> String {
    std::fs::read_to_string(tests::repo_root().join("README.md")).unwrap()
}

/// The fenced blocks of one language, in order.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let open = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&open) {
        let body = &rest[i + open.len()..];
        let end = body.find("```").unwrap();
        out.push(body[..end].to_string());
        rest = &body[end..];
    }
    out
}

#[test]
fn every_yaml_block_of_the_readme_is_a_valid_bootstrap() {
    let yaml = blocks(&readme(), "yaml");
    assert!(yaml.len() >= 2, "{yaml:?}");
    for block in yaml {
        let out = tests::proxy::run(&["--mode", "validate", "--config-yaml", &block]);
        assert!(out.status.success(), "{block}\n{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn the_quoted_error_is_the_one_the_binary_prints() {
    let text = readme();
    let quoted = text
        .split('`')
        .find(|s| s.starts_with("examples/bad/") && s.contains(": "))
        .expect("the README quotes a refusal");
    let file = quoted.split(": ").next().unwrap();
    let out = tests::proxy::run(&["--mode", "validate", "-c", tests::repo_root().join(file).to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let message = quoted.strip_prefix(file).unwrap();
    assert!(err.contains(message), "README quotes {quoted:?}; the binary says {err}");
}

#[test]
fn running_it_check_only_command() {
    let text = readme();
    assert!(text.contains("isthmus -c examples/front-proxy.yaml --mode validate"));
    let path = tests::repo_root().join("examples/front-proxy.yaml");
    let out = tests::proxy::run(&["-c", path.to_str().unwrap(), "--mode", "validate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The hello.yaml session exactly as shown (fixed ports 10000 and 15000, so in a namespace of
/// its own): curl gets the greeting, `/ready` says LIVE, SIGTERM exits 0.
#[test]
fn the_hello_yaml_session() {
    let text = readme();
    let hello = blocks(&text, "yaml").into_iter().find(|b| b.starts_with("# hello.yaml")).expect("hello.yaml block");
    let session = blocks(&text, "sh").into_iter().find(|b| b.contains("-c hello.yaml")).expect("hello session");
    assert!(session.contains("hello from isthmus") && session.contains("LIVE"), "{session}");
    let ns = Netns::new("readme");
    let path = tests::scratch("hello.yaml");
    std::fs::write(&path, &hello).unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(tests::isthmus_bin())
        .arg("-c")
        .arg(&path)
        .spawn()
        .unwrap();
    let get = |url: &str| String::from_utf8_lossy(&ns.run(&["curl", "-s", "-m", "2", url]).stdout).into_owned();
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while get("localhost:15000/ready") != "LIVE\n" {
        assert!(std::time::Instant::now() < end, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get("localhost:10000/"), "hello from isthmus\n");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    // The exit is the event: wait for it on a thread, bounded.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx.recv_timeout(Duration::from_secs(20)).expect("no exit after SIGTERM").unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn the_iptables_init_command() {
    let text = readme();
    let line = blocks(&text, "sh")
        .into_iter()
        .flat_map(|b| b.lines().map(str::to_string).collect::<Vec<_>>())
        .find(|l| l.starts_with("iptables-init "))
        .expect("the iptables-init command");
    // `[--dry-run | --cleanup]` is the choice the README offers; take the dry run.
    let args = line.split(" [").next().unwrap().replace("'*'", "*").replace("\"\"", "");
    let mut argv: Vec<&str> = args.split_whitespace().skip(1).collect();
    let x = argv.iter().position(|a| *a == "-x").unwrap();
    argv.insert(x + 1, "");
    argv.push("--dry-run");
    let out = Command::new(tests::bin("iptables-init")).args(&argv).output().unwrap();
    assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ISTIO_OUTPUT"));
}

/// The main job, as the README's first line runs it (the default 15 s at 200 req/s): no failed
/// request, and the homecoming row is there.
#[test]
fn the_main_job_demo() {
    let first = readme().lines().find(|l| l.starts_with("cargo run")).unwrap().to_string();
    assert!(first.starts_with("cargo run -p proxy --bin isthmus -- demo "), "{first}");
    let out = tests::proxy::run(&["demo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("3000 requests, 0 failed"), "{text}");
    assert!(text.contains("<- traffic is home again"), "{text}");
}
