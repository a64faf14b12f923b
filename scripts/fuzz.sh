#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/, libFuzzer) for a bounded time:
# `scripts/fuzz.sh [seconds] [target...]`, 60 seconds per target by default, every target
# unless some are named. Not part of `make test` or CI (it needs the nightly
# toolchain and `cargo install cargo-fuzz`, and takes minutes).
#
# Each target starts from its committed seeds (fuzz/seeds/<target>) plus the corpus of earlier
# runs (fuzz/corpus/<target>, not committed), with a dictionary of its grammar's tokens
# (fuzz/dict/<target>.dict). A crash leaves its input in fuzz/artifacts/<target>/; rerun it
# with `cargo +nightly fuzz run <target> <file>`, then keep it as a regression test in tests/.
# Logs go to fuzz/logs/<target>.log. The exit status is non-zero if any target failed.
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [seconds per target, default 60] [target...]" >&2
    exit 2
fi
shift $(($# > 0 ? 1 : 0))
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
cd "$(dirname "$0")/.."

if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: install it with \`cargo install cargo-fuzz\`" \
        "(and the $toolchain toolchain with \`rustup toolchain install $toolchain\`)" >&2
    exit 2
fi
# The fuzz crate links libtorch through tch-patch, as the tests do.
bash scripts/install-libtorch.sh

all_targets=(
    patch_string     # arbitrary UTF-8 -> parse_calls and Registry::global()?.parse
    glob             # arbitrary "glob\npath" -> Glob::new, matches, distance
    adapter_manifest # arbitrary bytes -> AdapterManifest::from_json, to_json
    checkpoint_load  # arbitrary bytes as a file -> load_safetensors, read_adapter
)
targets=("${all_targets[@]}")
if [ "$#" -gt 0 ]; then
    targets=("$@")
    for target in "${targets[@]}"; do
        if ! [[ " ${all_targets[*]} " == *" $target "* ]]; then
            echo "unknown target \`$target\`; the targets are: ${all_targets[*]}" >&2
            exit 2
        fi
    done
fi

for target in "${targets[@]}"; do
    cargo "+$toolchain" fuzz build "$target"
done
mkdir -p fuzz/logs
failed=()
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    dict=()
    if [ -f "fuzz/dict/$target.dict" ]; then
        dict=("-dict=fuzz/dict/$target.dict")
    fi
    log="fuzz/logs/$target.log"
    echo "== $target: ${seconds}s"
    if cargo "+$toolchain" fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 \
        "${dict[@]}" >"$log" 2>&1; then
        status=ok
    else
        status="FAILED (see $log and fuzz/artifacts/$target/)"
        failed+=("$target")
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    echo "   $status; executions: ${execs:-?}; corpus: $corpus inputs"
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
