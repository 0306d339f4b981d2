#!/usr/bin/env python3
"""A/B of the desched event (docs/benchmarks.md, "Blocking calls: the desched event
opened lazily"): `taskset -c 1 cargo-chaos chaos record` of each program under each arm,
interleaved (one run of every arm per round, in an order that rotates each round,
after a warm-up round), medians of wall
time and CPU time (user + sys of the recorder and its program tree), ratios against
the "off" arm, plain and paired (median of the per-round ratios).

    scripts/bench-desched.py ROUNDS MAIN_BINARY [ONLY]

This tree's `target/release/cargo-chaos` is the branch; MAIN_BINARY another build (main).
The Rust suites come from `target/fixture-rust-suite` (built by the e2e tests); the C
ping-pong is compiled here. ONLY: comma-separated program names."""
import glob, json, os, resource, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
rounds, main = int(sys.argv[1]), sys.argv[2]
only = sys.argv[3].split(",") if len(sys.argv) > 3 else None
branch = os.path.join(ROOT, "target/release/cargo-chaos")
work = tempfile.mkdtemp(prefix="bench-desched-")
pingpong = os.path.join(work, "threads_pingpong")
subprocess.run(["cc", "-O2", "-pthread", "-o", pingpong,
                os.path.join(ROOT, "tests/fixtures/c/threads_pingpong.c")], check=True)
deps = os.path.join(ROOT, "target/fixture-rust-suite/debug/deps/")
def suite(name):
    return [p for p in glob.glob(deps + name + "-*") if os.access(p, os.X_OK) and "." not in os.path.basename(p)][0]
arms = [
    ("lazy (branch default)", branch, {}),
    ("off (branch, DESCHED=0)", branch, {"CARGO_CHAOS_DESCHED": "0"}),
    ("main (default: off)", main, {}),
    ("main eager (DESCHED=1)", main, {"CARGO_CHAOS_DESCHED": "1"}),
]
progs = [
    ("threads_pingpong 2000", [pingpong, "2000"]),
    ("tokio_net", [suite("tokio_net"), "--test-threads=2"]),
    ("std_threads", [suite("std_threads"), "--test-threads=2"]),
]
progs = [p for p in progs if not only or p[0].split()[0] in only]
res = {(a[0], p[0]): ([], [], []) for a in arms for p in progs}
trace = os.path.join(work, "trace")
for i in range(rounds + 1):
    for pname, cmd in progs:
        # The arms' order rotates each round: the first run after another program's
        # may be slower (with a fixed order the first arm, running the same code as the
        # second on the Rust suites, came out 1-6% above it in 5 of 6 invocations).
        for aname, binary, env in arms[i % len(arms):] + arms[:i % len(arms)]:
            shutil.rmtree(trace, ignore_errors=True)
            e = dict(os.environ)
            e.pop("CARGO_CHAOS_DESCHED", None)
            e.update(env)
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            p = subprocess.run(["taskset", "-c", "1", binary, "chaos", "record", "--trace-dir", trace] + cmd,
                               env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t1 = time.monotonic()
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            assert p.returncode == 0, (aname, pname, p.returncode)
            if i == 0:
                continue
            rj = json.load(open(os.path.join(trace, "result.json")))
            w, c, s = res[(aname, pname)]
            w.append((t1 - t0) * 1000)
            c.append((r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000)
            s.append((rj.get("desched_events", 0), rj.get("desched_signals", 0), rj["events"]))
shutil.rmtree(work, ignore_errors=True)
print(f"rounds={rounds} load={os.getloadavg()}")
for pname, _ in progs:
    ow, oc, _ = res[(arms[1][0], pname)]
    for aname, _, _ in arms:
        w, c, s = res[(aname, pname)]
        mw, mc = statistics.median(w), statistics.median(c)
        pw = statistics.median([a / b for a, b in zip(w, ow)])
        pc = statistics.median([a / b for a, b in zip(c, oc)])
        ev, sg, n = (statistics.median([x[k] for x in s]) for k in range(3))
        print(f"{pname:22} {aname:24} wall {mw:7.1f} ms ({mw / statistics.median(ow):.3f}x, paired {pw:.3f}x)"
              f"  cpu {mc:7.1f} ms ({mc / statistics.median(oc):.3f}x, paired {pc:.3f}x)"
              f"  events {n:.0f} opened {ev:.0f} signals {sg:.0f}")
