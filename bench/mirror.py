"""Benchmark: a broadcast burst with the RetailCRM mirror loaded (``make bench`` runs it
after the rest; ``python -m bench.mirror`` runs it alone).

Starts its own redis-server, the stand-ins enforcing RetailCRM's 10 calls/s (with the
benchmark's fixed latency) and gurugrow with CRM_MIRROR=1 at its default quota; seeds
BENCH_MIRROR_USERS bound customers with BENCH_MIRROR_ORDERS orders each; loads the
mirror (`flask gurugrow mirror --once`: its calls, time and the Redis memory it adds are
measured), starts the poller, then sends the burst: every user /auth/status then
/orders, BENCH_MIRROR_CONCURRENCY at a time. Writes bench/MIRROR-RESULTS.md.

Then the large shop (``run_large``): 100,000 customers, 20,000 bound with 5 orders each,
300,000 orders (BENCH_LARGE_SCALE scales the shop: 0.2 is a fifth; 0 leaves the row
out), the load measured the same way, the poller idle for BENCH_IDLE_SECONDS (after a
third of that, at most a minute, to let its interval back off), then a burst of
BENCH_LARGE_BURST users (10,000) BENCH_LARGE_CONCURRENCY (200) at a time.
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

from bench.common import (
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
    procs: list[subprocess.Popen] = []
    try:
        redis_port, up, base, env = start_backends(procs, "mirror")
        accounts = requests.post(f"{up}/seed-customers", timeout=60, params={
            "from": "5001", "count": str(USERS), "orders": str(ORDERS_EACH)}).json()["accounts"]
        store = redis.Redis(port=redis_port)
        load_seconds, load_calls, memory = measured_load(up, store, env)
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


def start_backends(procs: list[subprocess.Popen], name: str
                   ) -> tuple[int, str, str, dict[str, str]]:
    """redis-server and the stand-ins (RetailCRM's quota, the benchmark's latency): the
    Redis port, the stand-ins' and gurugrow's base URLs, gurugrow's environment."""
    redis_port, up_port, app_port = free_port(), free_port(), free_port()
    procs.append(spawn([shutil.which("redis-server") or "redis-server", "--port",
                        str(redis_port), "--save", "", "--appendonly", "no"],
                       dict(os.environ), f"{name}-redis"))
    plain_config = SCRATCH / f"{name}-upstreams.conf.py"
    plain_config.write_text("")
    procs.append(spawn([GUNICORN, "-c", str(plain_config), "-k", "gthread", "-w", "1",
                        "--threads", "64", "-b", f"127.0.0.1:{up_port}", "--log-level",
                        "warning", "--timeout", "600", "bench.standins:standins_from_env()"],
                       {**os.environ, "SANDBOX_LATENCY_MS": str(LATENCY_MS),
                        "SANDBOX_RATE_LIMIT": str(CRM_QUOTA)}, f"{name}-upstreams"))
    up = f"http://127.0.0.1:{up_port}"
    wait_http(f"{up}/outbox")
    return redis_port, up, f"http://127.0.0.1:{app_port}", app_env(up, redis_port, app_port)


def measured_load(up: str, store: redis.Redis, env: dict[str, str]) -> tuple[float, int, int]:
    """`flask gurugrow mirror --once` (the full load): its seconds, RetailCRM calls and
    the Redis memory it added."""
    memory_before = int(store.info("memory")["used_memory"])
    calls_before = stats(up)["retailcrm"]
    began = time.perf_counter()
    subprocess.run([FLASK, "--app", "wsgi", "gurugrow", "mirror", "--once"], cwd=ROOT,
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - began, stats(up)["retailcrm"] - calls_before,
            int(store.info("memory")["used_memory"]) - memory_before)


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


def burst(up: str, base: str, accounts: list[str], concurrency: int = CONCURRENCY
          ) -> dict[str, Any]:
    before = stats(up)
    latencies: dict[str, list[float]] = {"/auth/status": [], "/orders": []}
    lock = threading.Lock()
    local = threading.local()

    def visit(account: str) -> bool:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update(AUTH)
            # A pooled keep-alive connection the server closed as it was reused is sent
            # again once, as any HTTP client does (200 callers, keepalive 5 s).
            local.session.mount("http://", requests.adapters.HTTPAdapter(max_retries=1))
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
    with ThreadPoolExecutor(concurrency) as pool:
        served = sum(pool.map(visit, accounts, timeout=1800))
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


# The large shop: 100,000 customers, 20,000 bound with 5 orders each, 300,000
# orders in all, a burst of 10,000 users 200 at a time; BENCH_LARGE_SCALE shrinks the
# shop (not the burst's concurrency) for a machine that cannot hold it (0: skip the row).
LARGE_SCALE = float(os.environ.get("BENCH_LARGE_SCALE", "1"))
LARGE_CONCURRENCY = int(os.environ.get("BENCH_LARGE_CONCURRENCY", "200"))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "180"))
# The burst's users; a scaled shop with fewer bound customers repeats them in turn.
LARGE_BURST = int(os.environ.get("BENCH_LARGE_BURST", "10000"))


def run_large(scale: float = LARGE_SCALE) -> dict[str, Any]:
    """The large-shop row: the load's calls and time, Redis memory per 1,000 bound
    customers, the poller's idle calls a minute, then the burst (all bound users)."""
    customers, bound = int(100_000 * scale), int(20_000 * scale)
    unbound = customers - bound
    procs: list[subprocess.Popen] = []
    try:
        redis_port, up, base, env = start_backends(procs, "large")
        accounts: list[str] = []
        for start in range(0, bound, 10_000):
            accounts += requests.post(f"{up}/seed-customers", timeout=600, params={
                "from": "5001", "count": str(min(10_000, bound - start)),
                "orders": "5"}).json()["accounts"]
        # The unbound rest own the other orders: 2 or 3 each, 300,000 in all at full size.
        orders_unbound = int(300_000 * scale) - 5 * bound
        each, extra = divmod(orders_unbound, max(unbound, 1))
        for start in range(0, unbound, 10_000):
            count = min(10_000, unbound - start)
            with_extra = max(min(extra - start, count), 0)
            for n, orders in ((with_extra, each + 1), (count - with_extra, each)):
                if n:
                    requests.post(f"{up}/seed-customers", timeout=600, params={
                        "from": "5001", "count": str(n), "orders": str(orders),
                        "bound": "0"}).raise_for_status()
        store = redis.Redis(port=redis_port)
        load_seconds, load_calls, memory = measured_load(up, store, env)
        state = store.hgetall(redis_keys.mirror_state(PREFIX))
        procs.append(spawn([FLASK, "--app", "wsgi", "gurugrow", "mirror"], env, "large-mirror"))
        procs.append(spawn([GUNICORN, "-c", "gunicorn.conf.py", "wsgi:app"], env,
                           "large-gurugrow"))
        wait_http(f"{base}/health")
        # Idle: the poller alone (its interval backs off to half MIRROR_MAX_LAG_SECONDS).
        time.sleep(min(IDLE_SECONDS / 3, 60))  # past the first passes' back-off
        idle_before = stats(up)["retailcrm"]
        time.sleep(IDLE_SECONDS)
        idle_per_minute = (stats(up)["retailcrm"] - idle_before) / IDLE_SECONDS * 60
        visitors = (accounts * (LARGE_BURST // max(len(accounts), 1) + 1))[:LARGE_BURST]
        row = burst(up, base, visitors, LARGE_CONCURRENCY)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    return {**row, "scale": scale, "customers": customers, "bound": bound,
            "orders_total": 5 * bound + orders_unbound, "load_calls": load_calls,
            "load_seconds": load_seconds, "memory_bytes": memory,
            "mirrored_customers": int(state.get(b"customers") or 0),
            "mirrored_orders": int(state.get(b"orders") or 0),
            "idle_per_minute": idle_per_minute}


def large_table(r: dict[str, Any]) -> list[str]:
    """The large-shop row as Markdown."""
    size = ("full size" if r["scale"] == 1 else
            f"scaled to {r['scale']:g} of the full size (BENCH_LARGE_SCALE={r['scale']:g}; "
            "the full size is 100,000 customers, 20,000 bound, 300,000 orders)")
    return [
        f"Large shop, {size}: {r['customers']} customers, {r['bound']} bound with 5 orders "
        f"each, {r['orders_total']} orders; the stand-in enforces {CRM_QUOTA} calls/s; "
        "defaults otherwise (MIRROR_POLL_SECONDS=5, MIRROR_MAX_LAG_SECONDS=60, "
        "MIRROR_RECONCILE_SECONDS=86400):", "",
        "| load calls | load seconds | Redis MB per 1,000 bound | idle calls a minute "
        "| burst users | concurrent | served | CRM calls per user | over the quota "
        "| p50 / p99 ms /auth/status | p50 / p99 ms /orders |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        f"| {r['load_calls']} | {r['load_seconds']:.0f} "
        f"| {r['memory_bytes'] / max(r['bound'], 1) * 1000 / 1e6:.2f} "
        f"| {r['idle_per_minute']:.1f} | {r['users']} | {LARGE_CONCURRENCY} | {r['served']} "
        f"| {r['calls_per_user']:.4f} | {r['over_quota']} "
        f"| {r['p50 /auth/status']:.0f} / {r['p99 /auth/status']:.0f} "
        f"| {r['p50 /orders']:.0f} / {r['p99 /orders']:.0f} |", "",
        f"The load mirrored {r['mirrored_customers']} customers and {r['mirrored_orders']} "
        f"orders. Idle measured over {IDLE_SECONDS:.0f} s with the poller alone. The burst: "
        f"{r['users']} users ({min(r['users'], r['bound'])} distinct bound customers, in "
        "turn), each /auth/status then /orders.", ""]


def main() -> None:
    row = run()
    lines = ["# Benchmark: the RetailCRM mirror", "",
             "Written by `python -m bench.mirror` (also run by `make bench`); do not edit by "
             "hand.", "", *table(row)]
    if LARGE_SCALE > 0:
        large = run_large()
        print(f"large shop: {large}", flush=True)
        lines += large_table(large)
    (ROOT / "bench" / "MIRROR-RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
