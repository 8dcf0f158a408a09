"""Where the CPU of one request goes: per-process CPU milliseconds per request.

On the benchmark's machine every process (load generator, stand-ins, redis-server, the
app) shares the same cores, so throughput follows the CPU one request costs in all of
them together. This drives each endpoint at the benchmark's concurrency against
gurugrow and the baseline and reads each process's CPU time (/proc) around the run.

    python -m bench.cpu [ENDPOINT ...]     # e.g. "POST /auth/check"
Settings (env): as bench.run (BENCH_REQUESTS, BENCH_CONCURRENCY, BENCH_LATENCY_MS).
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

from bench.run import REQUESTS, Stack, drive, scenarios

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (a gunicorn master and
    its workers), read from /proc."""
    total, pids = 0.0, [pid]
    while pids:
        current = pids.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
            for task in Path(f"/proc/{current}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return total


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def profile(stack: Stack, app: str, calls: list) -> dict[str, float]:
    """CPU milliseconds per request of each process while ``calls`` run against ``app``."""
    base = f"http://127.0.0.1:{stack.ports[app]}"
    drive(base, calls[:5], 1)
    watched = {"app": stack.procs[app].pid, "redis": stack.procs["redis"].pid,
               "stand-ins": stack.procs["upstreams"].pid}
    before = {name: tree_cpu_seconds(pid) for name, pid in watched.items()}
    before["load"] = self_cpu_seconds()
    seconds, _, failures = drive(base, calls[5:], int(os.environ.get("BENCH_CONCURRENCY",
                                                                     "16")))
    after = {name: tree_cpu_seconds(pid) for name, pid in watched.items()}
    after["load"] = self_cpu_seconds()
    n = len(calls) - 5
    spent = {name: (after[name] - before[name]) * 1000 / n for name in after}
    spent["total"] = sum(spent.values())
    spent["req/s"] = n / seconds
    spent["failures"] = failures
    return spent


def main() -> None:
    stack = Stack()
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    try:
        stack.start()
        wanted = sys.argv[1:]
        plans = {app: scenarios(stack, f"http://127.0.0.1:{stack.ports[app]}",
                                app != "baseline") for app in ("gurugrow", "baseline")}
        for endpoint in plans["gurugrow"]:
            if wanted and endpoint not in wanted:
                continue
            print(endpoint)
            ratios = []
            for round_no in range(rounds):
                # Back to back, which goes first alternating: a passing disturbance of
                # the shared machine hits both alike.
                order = ("gurugrow", "baseline")[::1 if round_no % 2 == 0 else -1]
                spent = {app: profile(stack, app, plans[app][endpoint](
                    REQUESTS, f"cpu-{app}-{round_no}")) for app in order}
                for app in ("gurugrow", "baseline"):
                    shown = "  ".join(f"{k} {v:.0f}" if k == "req/s" else f"{k} {v:.2f}"
                                      for k, v in spent[app].items())
                    print(f"  {app:9} ms CPU/request: {shown}", flush=True)
                ratios.append(spent["baseline"]["total"] / spent["gurugrow"]["total"])
            print(f"  baseline CPU ÷ gurugrow CPU per round: "
                  f"{'  '.join(f'{r:.2f}' for r in ratios)}", flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
