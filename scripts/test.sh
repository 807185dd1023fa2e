#!/usr/bin/env bash
# The one command that runs the whole suite (README, and CI via .ci/run).
# Extra arguments go to `cargo nextest run`, e.g. scripts/test.sh -E 'test(grpc)'.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

scripts/test-deps.sh

# Integration tests spawn tests/peers/*.py with this interpreter (has grpcio).
export ISTHMUS_PYTHON="$REPO/.venv/bin/python"

# The style the code declares, enforced: formatting and clippy (workspace lints deny
# unwrap/expect outside tests and `todo!`; every warning is an error here).
cargo fmt --all -- --check
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --workspace --all-targets --quiet -- -D warnings
else
    echo "test.sh: clippy is not installed for this toolchain; lint step skipped" >&2
fi

# Build the binaries first: integration tests launch them as subprocesses.
cargo build --workspace --bins
# Each test process keeps its files (bootstraps, logs) in a fresh isthmus-tests-* directory;
# the previous run's are removed here, this run's stay for a failure's post-mortem.
rm -rf "${TMPDIR:-/tmp}"/isthmus-tests-*
exec cargo nextest run --workspace --no-fail-fast "$@"
