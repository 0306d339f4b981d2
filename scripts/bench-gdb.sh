#!/usr/bin/env bash
# Debugger figures for docs/benchmarks.md (issue 14): the Rust fixture suite's failing
# `panic` test binary, recorded once, then (median of RUNS runs each, in one
# invocation, interleaved):
#   replay      plain `cargo-chaos replay --quiet` (the baseline)
#   gdb alone   `gdb -batch -nx` loading the test binary's symbols, no replay
#   prompt      `replay --gdb` up to gdb's first command answered (`monitor when`)
#   to panic    the same, then `break rust_panic` + `continue`
#   + reverse   the same, then `reverse-continue` (back to the start: a full re-run)
# Needs `cargo build --release -p cargo-chaos` and the fixture suite built
# (`cargo test --no-run --manifest-path tests/fixtures/rust-suite/Cargo.toml
# --target-dir target/fixture-rust-suite`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
chaos=$root/target/release/cargo-chaos
runs=${RUNS:-5}
bin=$(ls "$root"/target/fixture-rust-suite/debug/deps/panic-* | grep -E '/panic-[0-9a-f]+$' | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
RUST_BACKTRACE=0 "$chaos" record --trace-dir "$work/t" -- "$bin" panics_with_a_backtrace >/dev/null 2>&1 || true
events=$("$chaos" dump "$work/t" | wc -l)
printf 'set breakpoint pending on\nbreak rust_panic\ncontinue\n' >"$work/panic.gdb"
printf 'set breakpoint pending on\nbreak rust_panic\ncontinue\nreverse-continue\n' >"$work/reverse.gdb"
gdbcmd() { "$chaos" replay "$work/t" --quiet --gdb --gdb-arg=-batch --gdb-arg=-nx "$@" >/dev/null 2>&1; }
now() { date +%s.%N; }
declare -A times
for _ in $(seq "$runs"); do
    for what in replay gdb-alone prompt panic reverse; do
        t0=$(now)
        case $what in
        replay) "$chaos" replay "$work/t" --quiet >/dev/null 2>&1 || true ;;
        gdb-alone) gdb -batch -nx -ex "file $bin" >/dev/null 2>&1 ;;
        prompt) gdbcmd --gdb-arg=-ex --gdb-arg='monitor when' ;;
        panic) gdbcmd --gdb-arg=-x --gdb-arg="$work/panic.gdb" ;;
        reverse) gdbcmd --gdb-arg=-x --gdb-arg="$work/reverse.gdb" ;;
        esac
        t1=$(now)
        times[$what]+="$(echo "$t1 - $t0" | bc) "
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "input: $(basename "$bin") panics_with_a_backtrace, $events events, $runs runs each (median, s)"
base=$(echo "${times[replay]}" | median)
for what in replay gdb-alone prompt panic reverse; do
    m=$(echo "${times[$what]}" | median)
    printf '%-10s %8.3f s  %5.2fx replay   (%s)\n' "$what" "$m" "$(echo "$m / $base" | bc -l)" "${times[$what]}"
done
