"""What the benchmarks share: paths, the caller token, the stand-ins' latency and quota,
and starting and waiting for a process (bench/run.py and bench/mirror.py both use it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
LATENCY_MS = float(os.environ.get("BENCH_LATENCY_MS", "20"))
CRM_QUOTA = 10  # calls per second the burst's stand-in allows, as RetailCRM does
# gurugrow refuses callers without a token; the baseline ignores the header.
API_TOKEN = "benchmark-caller-token-0123456789"
AUTH = {"X-API-Token": API_TOKEN}
SCRATCH = Path(tempfile.mkdtemp(prefix="gurugrow-bench-"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def spawn(args: list[str], env: dict[str, str], name: str, cwd: Path = ROOT
          ) -> subprocess.Popen:
    """Start a process in ``cwd`` (the project, unless another tree of it), logging to
    the scratch directory."""
    log = (SCRATCH / f"{name}.log").open("w")
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(round(q * (len(ordered) - 1))), len(ordered) - 1)] * 1000
