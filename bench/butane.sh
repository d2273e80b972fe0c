#!/usr/bin/env bash
# Benchmark: Butane compile and Ignition validation.
#  1. Time to compile the whole conformance corpus (230 cases) with `bootplane butane`,
#     one process per case, as a user's script would.
#  2. Per-invocation time (hyperfine) of `bootplane ignition validate` vs Debian's
#     `ignition-validate` on the same file, and of `bootplane butane` vs `butane` when a
#     `butane` binary is on PATH (Debian 12 does not package it).
# Usage: bash bench/butane.sh   (needs hyperfine, ignition; ../shared beside the repo)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p bootplane
BIN=$PWD/target/release/bootplane
CORPUS=${BOOTPLANE_BUTANE_CORPUS:-$PWD/../shared/conformance/butane}
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT

t0=$(date +%s.%N); n=0
for c in "$CORPUS"/*/; do
    args=(--pretty); [ -d "$c/files" ] && args+=(--files-dir files)
    (cd "$c" && "$BIN" butane "${args[@]}" input.bu >/dev/null 2>&1) || true
    n=$((n + 1))
done
t1=$(date +%s.%N)
printf 'compile %d conformance cases, one process each: %.3f s (%.2f ms per case)\n' "$n" "$(echo "$t1 - $t0" | bc -l)" "$(echo "($t1 - $t0) * 1000 / $n" | bc -l)"

CASE="$CORPUS/fcos-1.4.0--docs--filesystem-format-none"
[ -d "$CASE" ] || CASE=$(ls -d "$CORPUS"/fcos-1.4.0--*/ | head -1)
"$BIN" butane "$CASE/input.bu" > "$WORK/c.ign"
hyperfine -N --warmup 5 --runs 200 --export-markdown "$WORK/v.md" \
    "$BIN ignition validate $WORK/c.ign" "ignition-validate $WORK/c.ign" 2>/dev/null | grep -E "Time|±|faster" || true
if command -v butane >/dev/null; then
    hyperfine -N --warmup 5 --runs 200 "$BIN butane $CASE/input.bu" "butane $CASE/input.bu" | grep -E "Time|faster"
else
    echo "butane (Go) not installed: no side-by-side compile timing; bootplane alone:"
    hyperfine -N --warmup 5 --runs 200 "$BIN butane $CASE/input.bu" 2>/dev/null | grep -E "Time"
fi
