#!/usr/bin/env bash
# Checkpoint figures for docs/benchmarks.md (issue 14): tests/fixtures/c/long_run.c
# recorded with ITERATIONS getrandom calls in its worker (default 500,000), once per
# kind in RECORDINGS (default "buffered traced": with syscall buffering, the default,
# where the worker's calls run without a stop; and `--no-syscallbuf`, every call
# traced: a replay of about 10 s here). Its `marker` is last stored at 90% of the
# calls, so about 10% of the replay before the end. Then, per recording (median of
# RUNS runs each, interleaved):
#   replay    plain `cargo-chaos replay --quiet` (the baseline)
#   serve     `replay --gdb-server 127.0.0.1:0 --gdb-at-end` up to its "listening"
#             line: the debugger's forward run to the end (taking checkpoints on the
#             way), without gdb
#   gdb       gdb alone: `replay --gdb --gdb-at-end` + `monitor when` on a recording
#             of 10 iterations (gdb's start, symbols, connection)
#   to end    `replay --gdb --gdb-at-end` up to `monitor when` answered (serve + gdb)
#   reverse   the same, then `watch marker` + `reverse-continue` + `monitor stats`
#             (reverse-continue's own time is taken inside gdb, with its Python)
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
cat >"$work/reverse.gdb" <<'GDB'
watch marker
python import time; t0 = time.time()
reverse-continue
python print("reverse-continue took %.3f s" % (time.time() - t0))
monitor when
monitor stats
GDB
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
    "$chaos" record "$flag" --trace-dir "$t.tiny" -- "$work/long_run" 10 >/dev/null 2>&1
    events=$("$chaos" dump "$t" | wc -l)
    gdbcmd() { "$chaos" replay "${trace:-$t}" --quiet --gdb --gdb-at-end --gdb-arg=-batch --gdb-arg=-nx "$@"; }
    serve() {
        rm -f "$work/serve.out"
        "$chaos" replay "$t" --quiet --gdb-server 127.0.0.1:0 --gdb-at-end >"$work/serve.out" 2>&1 &
        local pid=$!
        until grep -qs listening "$work/serve.out"; do
            kill -0 "$pid" 2>/dev/null || { cat "$work/serve.out" >&2; exit 1; }
            sleep 0.01
        done
        ready=$(now)
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    }
    declare -A times=()
    for _ in $(seq "$runs"); do
        for what in replay serve gdb end reverse; do
            t0=$(now)
            case $what in
            replay) "$chaos" replay "$t" --quiet >/dev/null 2>&1 ;;
            serve) serve ;;
            gdb) trace=$t.tiny gdbcmd --gdb-arg=-x --gdb-arg="$work/end.gdb" >/dev/null 2>&1 ;;
            end) gdbcmd --gdb-arg=-x --gdb-arg="$work/end.gdb" >/dev/null 2>&1 ;;
            reverse) gdbcmd --gdb-arg=-x --gdb-arg="$work/reverse.gdb" >"$work/reverse.out" 2>&1 ;;
            esac
            t1=$(now)
            if [ "$what" = serve ]; then t1=$ready; fi
            times[$what]+="$(echo "$t1 - $t0" | bc) "
            if [ "$what" = reverse ]; then
                times[rc]+="$(sed -n 's/^reverse-continue took \([0-9.]*\) s$/\1/p' "$work/reverse.out") "
            fi
        done
    done
    echo "== $kind recording ($flag): long_run $iterations, $events events, $runs runs each (median, s)"
    base=$(echo "${times[replay]}" | median)
    for what in replay serve gdb end reverse; do
        m=$(echo "${times[$what]}" | median)
        printf '%-8s %8.3f s  %5.2fx replay   (%s)\n' "$what" "$m" "$(echo "$m / $base" | bc -l)" "${times[$what]}"
    done
    printf 'reverse-continue alone: %.3f s (timed inside gdb: %s)\n' "$(echo "${times[rc]}" | median)" "${times[rc]}"
    grep -E 'Current event|events replayed|checkpoints:' "$work/reverse.out"
done
