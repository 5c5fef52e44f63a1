#!/bin/sh
# Short run of every cargo-fuzz target (issue 9): SECONDS (default 10) each, from the
# kept corpus (fuzz/corpus/<target>), failing on the first crash. Needs a nightly
# toolchain and cargo-fuzz (`cargo install cargo-fuzz`, about 1.5 min to build once).
#
#   scripts/fuzz-smoke.sh          # 10 s per target
#   SECONDS_PER_TARGET=120 scripts/fuzz-smoke.sh
#
# New inputs libFuzzer finds go to a scratch corpus, so the kept one does not grow;
# crashes go to fuzz/artifacts/<target>/.
set -eu
cd "$(dirname "$0")/.."
secs=${SECONDS_PER_TARGET:-${1:-10}}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
if ! cargo fuzz --help >/dev/null 2>&1; then
    echo "fuzz-smoke: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2
    exit 1
fi
targets=$(cargo "+$toolchain" fuzz list)
cargo "+$toolchain" fuzz build
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in $targets; do
    mkdir -p "$scratch/$t"
    echo "== $t (${secs}s)"
    cargo "+$toolchain" fuzz run "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 2>&1 |
        grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|==[0-9]+==|SUMMARY|.*panicked)' || true
    # cargo fuzz's own status decides (grep above only filters the report).
    if ls fuzz/artifacts/"$t"/crash-* fuzz/artifacts/"$t"/timeout-* >/dev/null 2>&1; then
        echo "fuzz-smoke: $t found a failing input: $(ls fuzz/artifacts/"$t"/)" >&2
        exit 1
    fi
done
echo "fuzz-smoke: all targets ran ${secs}s without a failure"
