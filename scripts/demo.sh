#!/bin/sh
# Records a small C program that prints nondeterministic values (time, random bytes,
# rdtsc), then replays it: the replay prints the same values, re-computed by the
# replayed program from the recorded nondeterminism.
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet -p cargo-chaos
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/demo.c" <<'C'
#include <stdio.h>
#include <time.h>
#include <sys/random.h>
#include <x86intrin.h>
int main(void) {
    struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts);
    unsigned char r[8]; getrandom(r, sizeof r, 0);
    printf("time %lld.%09ld  random %02x%02x%02x%02x%02x%02x%02x%02x  rdtsc %llu\n",
           (long long)ts.tv_sec, ts.tv_nsec, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
           (unsigned long long)__rdtsc());
    return 0;
}
C
cc -O1 -o "$work/demo" "$work/demo.c"
echo "== record"
./target/debug/cargo-chaos record --trace-dir "$work/trace" -- "$work/demo"
rm "$work/demo"
echo "== replay (the program binary is gone; it runs from the trace)"
./target/debug/cargo-chaos replay "$work/trace"
