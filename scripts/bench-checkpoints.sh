#!/usr/bin/env bash
# Checkpoint figures for docs/benchmarks.md (issue 14): tests/fixtures/c/long_run.c
# recorded with ITERATIONS getrandom calls in its worker (default 500,000), once per
# kind in RECORDINGS (default "buffered traced": with syscall buffering, the default,
# where the worker's calls run without a stop; and `--no-syscallbuf`, every call
# traced: a replay of about 10 s here). Its `marker` is last stored at 90% of the
# calls, so about 10% of the replay before the end. Then, per recording (median of
# RUNS runs each, interleaved):
#   replay    plain `cargo-chaos replay --quiet` (the baseline)
#   to end    `replay --gdb --gdb-at-end` up to `monitor when` answered (a forward run
#             to the end, taking checkpoints on the way)
#   reverse   the same, then `watch marker` + `reverse-continue` + `monitor stats`
#             (reverse-continue's own time: reverse minus to end)
# Needs `cargo build --release -p cargo-chaos`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
chaos=${CHAOS:-$root/target/release/cargo-chaos}
runs=${RUNS:-5}
iterations=${ITERATIONS:-500000}
recordings=${RECORDINGS:-buffered traced}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O1 -g -pthread -o "$work/long_run" "$root/tests/fixtures/c/long_run.c"
printf 'monitor when\n' >"$work/end.gdb"
printf 'watch marker\nreverse-continue\nmonitor when\nmonitor stats\n' >"$work/reverse.gdb"
now() { date +%s.%N; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for kind in $recordings; do
    case $kind in
    buffered) flag=--syscallbuf ;;
    traced) flag=--no-syscallbuf ;;
    *) echo "unknown recording kind $kind (buffered, traced)" >&2; exit 2 ;;
    esac
    t="$work/t-$kind"
    "$chaos" record "$flag" --trace-dir "$t" -- "$work/long_run" "$iterations" >/dev/null 2>&1
    events=$("$chaos" dump "$t" | wc -l)
    gdbcmd() { "$chaos" replay "$t" --quiet --gdb --gdb-at-end --gdb-arg=-batch --gdb-arg=-nx "$@"; }
    declare -A times=()
    for _ in $(seq "$runs"); do
        for what in replay end reverse; do
            t0=$(now)
            case $what in
            replay) "$chaos" replay "$t" --quiet >/dev/null 2>&1 ;;
            end) gdbcmd --gdb-arg=-x --gdb-arg="$work/end.gdb" >/dev/null 2>&1 ;;
            reverse) gdbcmd --gdb-arg=-x --gdb-arg="$work/reverse.gdb" >"$work/reverse.out" 2>&1 ;;
            esac
            t1=$(now)
            times[$what]+="$(echo "$t1 - $t0" | bc) "
        done
    done
    echo "== $kind recording ($flag): long_run $iterations, $events events, $runs runs each (median, s)"
    base=$(echo "${times[replay]}" | median)
    for what in replay end reverse; do
        m=$(echo "${times[$what]}" | median)
        printf '%-8s %8.3f s  %5.2fx replay   (%s)\n' "$what" "$m" "$(echo "$m / $base" | bc -l)" "${times[$what]}"
    done
    printf 'reverse-continue alone: %.3f s\n' "$(echo "$(echo "${times[reverse]}" | median) - $(echo "${times[end]}" | median)" | bc -l)"
    grep -E 'Current event|events replayed|checkpoints:' "$work/reverse.out"
done
