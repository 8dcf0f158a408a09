"""Benchmark: a broadcast burst with the RetailCRM mirror loaded (``make bench`` runs it
after the rest; ``python -m bench.mirror`` runs it alone).

Starts its own redis-server, the stand-ins enforcing RetailCRM's 10 calls/s (with the
benchmark's fixed latency) and gurugrow with CRM_MIRROR=1 at its default quota; seeds
BENCH_MIRROR_USERS bound customers with BENCH_MIRROR_ORDERS orders each; loads the
mirror (`flask gurugrow mirror --once`: its calls, time and the Redis memory it adds are
measured), starts the poller, then sends the burst: every user /auth/status then
/orders, BENCH_MIRROR_CONCURRENCY at a time. Writes bench/MIRROR-RESULTS.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
import requests

from bench.run import (
    API_TOKEN,
    AUTH,
    CRM_QUOTA,
    GUNICORN,
    LATENCY_MS,
    ROOT,
    SCRATCH,
    free_port,
    percentile,
    spawn,
    wait_http,
)
from gurugrow.stores import keys as redis_keys

USERS = int(os.environ.get("BENCH_MIRROR_USERS", "1000"))
ORDERS_EACH = int(os.environ.get("BENCH_MIRROR_ORDERS", "5"))
CONCURRENCY = int(os.environ.get("BENCH_MIRROR_CONCURRENCY", "50"))
FLASK = str(Path(sys.executable).with_name("flask"))
PREFIX = "mirror:"


def run() -> dict[str, Any]:
    """The burst row (see the module docstring)."""
    redis_port, up_port, app_port = free_port(), free_port(), free_port()
    up, base = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{app_port}"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(spawn([shutil.which("redis-server") or "redis-server", "--port",
                            str(redis_port), "--save", "", "--appendonly", "no"],
                           dict(os.environ), "mirror-redis"))
        plain_config = SCRATCH / "mirror-upstreams.conf.py"
        plain_config.write_text("")
        procs.append(spawn([GUNICORN, "-c", str(plain_config), "-k", "gthread", "-w", "1",
                            "--threads", "64", "-b", f"127.0.0.1:{up_port}", "--log-level",
                            "warning", "bench.standins:standins_from_env()"],
                           {**os.environ, "SANDBOX_LATENCY_MS": str(LATENCY_MS),
                            "SANDBOX_RATE_LIMIT": str(CRM_QUOTA)}, "mirror-upstreams"))
        wait_http(f"{up}/outbox")
        env = app_env(up, redis_port, app_port)
        accounts = requests.post(f"{up}/seed-customers", timeout=60, params={
            "from": "5001", "count": str(USERS), "orders": str(ORDERS_EACH)}).json()["accounts"]
        store = redis.Redis(port=redis_port)
        memory_before = int(store.info("memory")["used_memory"])
        calls_before = stats(up)
        began = time.perf_counter()
        subprocess.run([FLASK, "--app", "wsgi", "gurugrow", "mirror", "--once"], cwd=ROOT,
                       env=env, check=True, stdout=subprocess.DEVNULL)
        load_seconds = time.perf_counter() - began
        load_calls = stats(up)["retailcrm"] - calls_before["retailcrm"]
        memory = int(store.info("memory")["used_memory"]) - memory_before
        customers, orders = (int(store.hget(redis_keys.mirror_state(PREFIX), k) or 0)
                             for k in ("customers", "orders"))
        procs.append(spawn([FLASK, "--app", "wsgi", "gurugrow", "mirror"], env, "mirror"))
        procs.append(spawn([GUNICORN, "-c", "gunicorn.conf.py", "wsgi:app"], env,
                           "gurugrow-mirror"))
        wait_http(f"{base}/health")
        row = burst(up, base, accounts)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    total = USERS  # customers seeded, all bound
    return {**row, "load_calls": load_calls, "load_seconds": load_seconds,
            "mirrored_customers": customers, "mirrored_orders": orders,
            "memory_bytes": memory, "seeded_customers": total,
            "seeded_orders": total * ORDERS_EACH}


def app_env(up: str, redis_port: int, app_port: int) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("GURUGROW_")},
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "REDIS_PREFIX": PREFIX,
            "RETAILCRM_BASE_URL": f"{up}/retailcrm", "RETAILCRM_API_KEY":
            "sandbox-retailcrm-key", "RETAILCRM_SITE": "1minoxidil-ru",
            "GREENSMS_BASE_URL": f"{up}/greensms", "GREENSMS_TOKEN": "sandbox-greensms-token",
            "DEDUPE_BASE_URL": f"{up}/deduper", "DEDUPE_API_KEY": "sandbox-dedupe-key",
            "OTP_SECRET": "benchmark-pepper-0123456789-0123456789", "API_TOKENS": API_TOKEN,
            "CRM_MIRROR": "1", "APP_HOST": "127.0.0.1", "APP_PORT": str(app_port)}


def stats(up: str) -> dict[str, int]:
    return requests.get(f"{up}/stats", timeout=5).json()


def burst(up: str, base: str, accounts: list[str]) -> dict[str, Any]:
    before = stats(up)
    latencies: dict[str, list[float]] = {"/auth/status": [], "/orders": []}
    lock = threading.Lock()
    local = threading.local()

    def visit(account: str) -> bool:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update(AUTH)
        identity = {"channelType": "telegram", "messengerUserId": account}
        answers = []
        for path in ("/auth/status", "/orders"):
            started = time.perf_counter()
            answers.append(local.session.get(base + path, params=identity,
                                             timeout=60).json()["status"])
            with lock:
                latencies[path].append(time.perf_counter() - started)
        return answers == ["authorized", "ok"]

    began = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        served = sum(pool.map(visit, accounts, timeout=600))
    seconds = time.perf_counter() - began
    after = stats(up)
    calls = after["retailcrm"] - before["retailcrm"]
    return {"users": len(accounts), "served": served, "seconds": seconds,
            "calls_per_user": calls / len(accounts), "calls": calls,
            "over_quota": after["retailcrm_over_rate_limit"]
            - before["retailcrm_over_rate_limit"],
            **{f"p99 {path}": percentile(values, 0.99) for path, values in latencies.items()},
            **{f"p50 {path}": percentile(values, 0.5) for path, values in latencies.items()}}


def table(row: dict[str, Any]) -> list[str]:
    """The burst row and the load's cost, as Markdown (bench/RESULTS.md takes it too)."""
    r = row
    per_thousand = r["load_calls"] / max(r["seeded_customers"] / 1000, 1e-9)
    return [
        f"Broadcast burst with the RetailCRM mirror loaded (CRM_MIRROR=1, the poller "
        f"running; the stand-in enforces {CRM_QUOTA} calls/s; {CONCURRENCY} users at a "
        "time, each /auth/status then /orders):", "",
        "| users | served | CRM calls per user | calls over the quota | seconds "
        "| p50 / p99 ms /auth/status | p50 / p99 ms /orders |",
        "|---:|---:|---:|---:|---:|---|---|",
        f"| {r['users']} | {r['served']} | {r['calls_per_user']:.3f} | {r['over_quota']} "
        f"| {r['seconds']:.1f} | {r['p50 /auth/status']:.0f} / {r['p99 /auth/status']:.0f} "
        f"| {r['p50 /orders']:.0f} / {r['p99 /orders']:.0f} |", "",
        f"Mirror load before it: {r['seeded_customers']} bound customers with "
        f"{r['seeded_orders']} orders ({r['mirrored_customers']} customers and "
        f"{r['mirrored_orders']} orders mirrored) took {r['load_calls']} RetailCRM calls "
        f"({per_thousand:.0f} per 1,000 customers with {ORDERS_EACH} orders each) in "
        f"{r['load_seconds']:.1f} s; Redis memory grew by {r['memory_bytes'] / 1e6:.2f} MB "
        f"({r['memory_bytes'] / max(r['seeded_customers'], 1) * 1000 / 1e6:.2f} MB per "
        f"1,000 bound customers with {ORDERS_EACH} orders each).", ""]


def main() -> None:
    row = run()
    lines = ["# Benchmark: the RetailCRM mirror", "",
             "Written by `python -m bench.mirror` (also run by `make bench`); do not edit by "
             "hand.", "", *table(row)]
    (ROOT / "bench" / "MIRROR-RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
