#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and grows the corpora in fuzz/corpus/.
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); CI does not run this —
# it replays the corpora on stable (`cargo nextest run`: tests/tests/fuzz_corpora.rs).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 60 s, every target)
#
# A crash leaves its input in fuzz/artifacts/<target>/; fix the bug, then copy the input into
# fuzz/corpus/<target>/ so the replay tests keep it.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO/fuzz"
SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(detect config_yaml config_proto xds_response iptables_plan http_request)
fi

cargo +nightly fuzz build
failed=()
for t in "${TARGETS[@]}"; do
    echo "fuzz: $t for ${SECONDS_PER_TARGET}s"
    log="$(mktemp)"
    if cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1; then
        :
    else
        failed+=("$t")
    fi
    # libFuzzer's closing statistics: executions and corpus growth (and any crash report).
    grep -E "^(stat::number_of_executed_units|stat::new_units_added)|ERROR|panicked|^artifact_prefix|Test unit written" "$log" || true
    rm -f "$log"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: no crashes"
