#!/usr/bin/env python3
"""A/B speed of two cargo-chaos binaries (e.g. a branch against its base), in one
invocation: record and replay of the C fixtures below, rounds interleaved (the order of
A and B alternates every round), CPU time (user + sys of the tool and the program,
from RUSAGE_CHILDREN; less noisy than wall time on a shared machine) and wall time.
Prints a markdown table: medians per binary and the median of the per-round ratios B/A.

    python3 cargo-chaos/benches/ab_cpu_time.py --a BASE/cargo-chaos --b NEW/cargo-chaos \\
        [--rounds 7]

Fixtures are compiled with `cc -O1` from tests/fixtures/c.
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time

WORK = [
    ("many_syscalls", ["100000"], "100,000 getppid calls"),
    ("mixed", ["20000"], "file IO and time calls, 20,000 rounds"),
    ("threads_pipe", [], "two threads, a blocked read on a pipe"),
    ("breakpoint_target", [], "short program (startup, exec capture)"),
]


def run(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed ({p.returncode}): {p.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="baseline cargo-chaos binary")
    ap.add_argument("--b", required=True, help="new cargo-chaos binary")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tmp = tempfile.mkdtemp(prefix="chaos-ab-")
    try:
        exes = {}
        for name, _, _ in WORK:
            exe = os.path.join(tmp, name)
            src = os.path.join(root, "tests", "fixtures", "c", name + ".c")
            subprocess.run(["cc", "-O1", "-o", exe, src, "-lpthread"], check=True)
            exes[name] = exe
        bins = {"A": args.a, "B": args.b}
        # samples[(name, phase, label)] = list of (cpu, wall), one per round
        samples = {}
        for r in range(args.rounds + 1):  # round 0 is a warm-up, not counted
            order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
            for name, wargs, _ in WORK:
                for label in order:
                    trace = os.path.join(tmp, f"trace-{label}-{name}-{r}")
                    rec = run([bins[label], "record", "--trace-dir", trace, "--",
                               exes[name], *wargs])
                    rep = run([bins[label], "replay", "--quiet", trace])
                    shutil.rmtree(trace, ignore_errors=True)
                    if r == 0:
                        continue
                    samples.setdefault((name, "record", label), []).append(rec)
                    samples.setdefault((name, "replay", label), []).append(rep)
        print(f"{args.rounds} rounds (after one warm-up), A/B order alternating; CPU = "
              "user+sys of the tool and the program; ratios are medians of per-round B/A.\n")
        print("| program | phase | A cpu (ms) | B cpu (ms) | B/A cpu | A wall (ms) | "
              "B wall (ms) | B/A wall |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for name, _, what in WORK:
            for phase in ("record", "replay"):
                a = samples[(name, phase, "A")]
                b = samples[(name, phase, "B")]
                rc = statistics.median(y[0] / x[0] for x, y in zip(a, b) if x[0] > 0)
                rw = statistics.median(y[1] / x[1] for x, y in zip(a, b))
                print(f"| {what} (`{name}`) | {phase} | "
                      f"{statistics.median(x[0] for x in a) * 1e3:.1f} | "
                      f"{statistics.median(x[0] for x in b) * 1e3:.1f} | {rc:.3f} | "
                      f"{statistics.median(x[1] for x in a) * 1e3:.1f} | "
                      f"{statistics.median(x[1] for x in b) * 1e3:.1f} | {rw:.3f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
