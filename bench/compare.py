"""This tree's gurugrow against the same service at an earlier commit, on one stack.

``make bench``'s ratios (gurugrow ÷ the bare baseline) swing with this shared machine: the
same code measured 0.75 one hour and 0.86 the next. Whether a change cost throughput is
answered better by running both versions side by side: the tree and ``REF`` (a
``git archive`` of it, run with this tree's installed packages) against the same
redis-server and stand-ins, and the baseline as in ``make bench``, back to back in each
round (which goes first rotates). Prints, per endpoint, the median over the rounds of
tree ÷ REF throughput (with its range), of each against the baseline, and of the CPU
milliseconds each app's processes spent per request (steadier than throughput).

    python -m bench.compare REF [ENDPOINT ...]     # e.g. 0b7238c "POST /auth/check"
Settings (env): as bench.run (BENCH_REQUESTS, BENCH_CONCURRENCY, BENCH_ROUNDS,
BENCH_LATENCY_MS).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.common import GUNICORN, ROOT, SCRATCH, free_port, spawn, wait_http
from bench.cpu import tree_cpu_seconds
from bench.run import GOVERNED_RATE_LIMIT, REQUESTS, ROUNDS, Stack, measure, scenarios

APPS = ("tree", "ref", "baseline")


def export(ref: str) -> Path:
    """``ref``'s files in a scratch directory (``git archive``: committed files only)."""
    tree = SCRATCH / ("ref-" + "".join(c if c.isalnum() else "-" for c in ref))  # origin/main
    tree.mkdir()
    archived = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True)
    if archived.returncode != 0:
        sys.exit(f"git archive {ref}: {archived.stderr.decode().strip()}")
    archive = archived.stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


class CompareStack(Stack):
    """redis-server, the free stand-ins, gurugrow from this tree and from ``ref_tree``
    (each under its own Redis prefix), and the baseline."""

    def __init__(self, ref_tree: Path) -> None:
        super().__init__()
        self.ref_tree = ref_tree
        self.ports = {name: free_port() for name in APPS}

    def start(self) -> None:
        self.start_shared()
        governed = {"RETAILCRM_RATE_LIMIT": GOVERNED_RATE_LIMIT}
        apps = {"tree": ("wsgi:app", self.app_env(self.upstream, governed), ROOT),
                "ref": ("wsgi:app", self.app_env(self.upstream, {
                    **governed, "REDIS_PREFIX": "ref:"}), self.ref_tree),
                "baseline": ("bench.baseline:app", {**self.app_env(self.upstream, {}),
                                                    "BASELINE_UPSTREAM": self.upstream},
                             ROOT)}
        for name, (target, env, cwd) in apps.items():
            env.update(APP_HOST="127.0.0.1", APP_PORT=str(self.ports[name]))
            self.procs[name] = spawn([GUNICORN, "-c", "gunicorn.conf.py", target], env,
                                     name, cwd)
            wait_http(f"http://127.0.0.1:{self.ports[name]}/health")


def ratios(top: list[float], bottom: list[float]) -> list[float]:
    """Each round's ``top ÷ bottom``."""
    return [t / b for t, b in zip(top, bottom, strict=True)]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ref, wanted = sys.argv[1], sys.argv[2:]
    stack = CompareStack(export(ref))
    try:
        stack.start()
        bases = {name: f"http://127.0.0.1:{stack.ports[name]}" for name in APPS}
        plans = {name: scenarios(stack, base, name != "baseline")
                 for name, base in bases.items()}
        print(f"tree ({ROOT}) against {ref}, {ROUNDS} rounds of {REQUESTS - 5} requests")
        for endpoint in plans["tree"]:
            if wanted and endpoint not in wanted:
                continue
            rps: dict[str, list[float]] = {name: [] for name in APPS}
            cpu: dict[str, list[float]] = {name: [] for name in APPS}
            for round_no in range(ROUNDS):
                order = APPS[round_no % 3:] + APPS[:round_no % 3]
                for name in order:
                    calls = plans[name][endpoint](REQUESTS, f"cmp-{name}{round_no}")
                    before = tree_cpu_seconds(stack.procs[name].pid)
                    rps[name].append(measure(stack, bases[name], calls)["rps"])
                    cpu[name].append((tree_cpu_seconds(stack.procs[name].pid) - before)
                                     * 1000 / len(calls))
            versus = ratios(rps["tree"], rps["ref"])
            print(f"{endpoint:34} tree ÷ ref {median(versus):.2f} "
                  f"({min(versus):.2f}–{max(versus):.2f});  ÷ baseline: tree "
                  f"{median(ratios(rps['tree'], rps['baseline'])):.2f}, "
                  f"ref {median(ratios(rps['ref'], rps['baseline'])):.2f};  app CPU ms/request: "
                  + ", ".join(f"{name} {median(cpu[name]):.2f}" for name in APPS), flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
