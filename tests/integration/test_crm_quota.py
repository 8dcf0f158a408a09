"""RetailCRM's quota on the real stack: gunicorn (2 workers), redis-server, and the
stand-ins enforcing 10 calls/s per key in their own process (as RetailCRM counts calls
on its side, not in the load generator's process); they count every call refused over it.

The bounds are the issue's: rate-bound work (the bucket paces at 9/s), so CPU contention
on a shared machine moves them little. Every request has a timeout.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import requests

from gurugrow.sandbox import SANDBOX_DEDUPE_KEY, SANDBOX_GREENSMS_TOKEN, SANDBOX_RETAILCRM_KEY
from tests.integration.conftest import ROOT, free_port, wait_until
from tests.integration.stack import GUNICORN, Gunicorn, RedisServer, running_stack

pytestmark = pytest.mark.integration

CRM_RATE = 10  # what the stand-in (like RetailCRM) allows per second
SETTINGS = {"GUNICORN_WORKERS": "2", "RETAILCRM_RATE_LIMIT": "9",
            "OTP_MAX_SENDS_PER_IP_PER_HOUR": "0", "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "0"}
# Callers who wait for their turn however long the line: the bot's answer budget and the
# waiting room, which bound waiting, are shown by tests/integration/test_flood.py.
PATIENT = {**SETTINGS, "BOT_ANSWER_SECONDS": "12", "RETAILCRM_MAX_WAITING": "32"}


class QuotaStack:
    """The stand-ins (own gunicorn process, 10 calls/s), redis-server and gurugrow."""

    def __init__(self, app: Gunicorn, upstream: str) -> None:
        self.app, self.base, self.upstream = app, app.base, upstream

    def seed_bound_users(self, count: int) -> list[dict[str, str]]:
        """``count`` customers, each bound to its own Telegram account, with an order."""
        accounts = requests.post(f"{self.upstream}/seed-customers", timeout=30,
                                 params={"from": "5001", "count": count}).json()["accounts"]
        return [{"channelType": "telegram", "messengerUserId": a} for a in accounts]

    def stats(self) -> dict[str, int]:
        return requests.get(f"{self.upstream}/stats", timeout=10).json()

    def last_code(self) -> str:
        return requests.get(f"{self.upstream}/outbox", timeout=10).json()["messages"][0]["code"]


@contextmanager
def quota_stack(workdir: Path, settings: dict[str, str]) -> Iterator[QuotaStack]:
    redis_server = RedisServer(workdir)
    redis_server.start()
    port = free_port()
    upstream = f"http://127.0.0.1:{port}"
    config = workdir / "standins.conf.py"  # not the app's gunicorn.conf.py
    config.write_text("")
    log = (workdir / "standins.log").open("w")
    standins = subprocess.Popen(
        [*_counter_first(), GUNICORN, "-c", str(config), "-k", "gthread", "-w", "1",
         "--threads", "64", "-b", f"127.0.0.1:{port}", "--log-level", "warning",
         "bench.standins:standins_from_env()"], cwd=ROOT, stdout=log,
        stderr=subprocess.STDOUT, env={**_plain_env(), "SANDBOX_RATE_LIMIT": str(CRM_RATE)})
    app = Gunicorn({"RETAILCRM_BASE_URL": f"{upstream}/retailcrm",
                    "RETAILCRM_API_KEY": SANDBOX_RETAILCRM_KEY, "RETAILCRM_SITE": "1minoxidil-ru",
                    "GREENSMS_BASE_URL": f"{upstream}/greensms",
                    "GREENSMS_TOKEN": SANDBOX_GREENSMS_TOKEN, "GREENSMS_VK_FROM": "shop",
                    "DEDUPE_BASE_URL": f"{upstream}/deduper",
                    "DEDUPE_API_KEY": SANDBOX_DEDUPE_KEY, "REDIS_URL": redis_server.url,
                    **settings}, workdir / "gunicorn.log")
    try:
        assert wait_until(lambda: _answers(f"{upstream}/stats"), timeout=30)
        app.start()
        yield QuotaStack(app, upstream)
    finally:
        if app.proc:
            app.stop()
        standins.terminate()
        standins.wait(timeout=30)
        log.close()
        redis_server.stop()


def _counter_first() -> list[str]:
    """RetailCRM counts calls as they reach its servers. A stand-in process starved of
    CPU by a busy shared machine would stamp calls that arrived 100+ ms apart at the
    same instant once it runs again, and count a burst that never left gurugrow. So its
    process goes first for the CPU when the tests may raise it (gurugrow's do not)."""
    import os
    import shutil

    nice = shutil.which("nice")
    return [nice, "-n", "-10"] if nice and os.geteuid() == 0 else []


def _plain_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("GURUGROW_")}


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def timed_get(url: str, params: dict[str, str]) -> tuple[dict, float]:
    started = time.monotonic()
    response = requests.get(url, params=params, timeout=30)
    assert response.status_code == 200, response.text[:300]
    return response.json(), time.monotonic() - started


def test_broadcast_burst_serves_everybody_within_the_quota(tmp_path):
    """60 bound users, 20 at a time, each /auth/status then /orders ("My orders")."""
    users, concurrency = 60, 20
    # 20 at once wait about 2.2 s each for a slot: the bot's patience (BOT_ANSWER_SECONDS,
    # 3 s less the answer's reserve) is too tight for that on a loaded machine, and this
    # test is about the quota's throughput, so its callers are patient.
    with quota_stack(tmp_path, PATIENT) as stack:
        identities = stack.seed_bound_users(users)
        before = stack.stats()

        def visit(identity: dict[str, str]) -> tuple[str, str]:
            status, _ = timed_get(f"{stack.base}/auth/status", identity)
            orders, _ = timed_get(f"{stack.base}/orders", identity)
            return status["status"], orders["status"]

        began = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            answers = list(pool.map(visit, identities, timeout=120))
        seconds = time.monotonic() - began
        after = stack.stats()
    crm_calls = after["retailcrm"] - before["retailcrm"]
    refused = after["retailcrm_over_rate_limit"] - before["retailcrm_over_rate_limit"]
    floor = crm_calls / CRM_RATE  # users × CRM calls per user ÷ 10
    print(f"\nburst: {users} users, {concurrency} concurrent: "
          f"{answers.count(('authorized', 'ok'))} served, {crm_calls / users:.2f} CRM calls "
          f"per user, {refused} over the quota, {seconds:.1f} s (floor {floor:.1f} s, "
          f"{seconds / floor:.2f}× floor)")
    assert answers == [("authorized", "ok")] * users
    assert refused == 0
    assert crm_calls / users <= 2.05  # status 1, orders 1 (binding cached), statuses once
    assert seconds <= 1.5 * floor


def test_overload_gets_fast_busy_answers_and_nothing_else_goes_wrong(tmp_path):
    """More callers than the wait bound allows: the rest are told `busy` at once."""
    users, queue_seconds = 50, 2
    settings = {**SETTINGS, "RETAILCRM_QUEUE_SECONDS": str(queue_seconds)}
    with quota_stack(tmp_path, settings) as stack:
        identities = stack.seed_bound_users(users)
        before = stack.stats()["retailcrm_over_rate_limit"]
        with ThreadPoolExecutor(users) as pool:
            results = list(pool.map(lambda i: timed_get(f"{stack.base}/auth/status", i),
                                    identities, timeout=120))
        refused = stack.stats()["retailcrm_over_rate_limit"] - before
        busy = [(a, s) for a, s in results if a.get("errorCode") == "busy"]
        served = [(a, s) for a, s in results if a["status"] == "authorized"]
        # A busy caller that comes back after retryAfterSec is served.
        wait = max(a["retryAfterSec"] for a, _ in busy)
        time.sleep(wait)
        again, _ = timed_get(f"{stack.base}/auth/status", identities[-1])
    busy_seconds = [s for _, s in busy]
    print(f"\noverload: {users} at once, queue {queue_seconds} s: {len(served)} served, "
          f"{len(busy)} busy (median {statistics.median(busy_seconds) * 1000:.0f} ms, "
          f"max {max(busy_seconds) * 1000:.0f} ms, retryAfterSec "
          f"{sorted({a['retryAfterSec'] for a, _ in busy})}), {refused} over the quota")
    assert len(served) + len(busy) == users  # nothing else: no crm_unavailable, no 5xx
    assert len(served) >= CRM_RATE and len(busy) >= 10
    assert all(a["retryAfterSec"] >= 1 and a["message"] for a, _ in busy)
    assert statistics.median(busy_seconds) < 0.5  # told at once, not after the wait
    assert max(busy_seconds) < queue_seconds
    assert refused == 0
    assert again["status"] == "authorized"


def test_a_customer_mid_journey_passes_a_flood_of_status_calls(tmp_path):
    """/auth/check (a step after a code was sent) during a flood of status reads."""
    flooders, per_flooder = 30, 4
    # Priority, not patience: every read of the flood may wait its turn.
    with quota_stack(tmp_path, PATIENT) as stack:
        identities = stack.seed_bound_users(flooders * per_flooder)
        customer = {"channelType": "telegram", "messengerUserId": "mid-journey"}
        started = requests.post(f"{stack.base}/auth/start", timeout=30,
                                data={**customer, "phone": "79990000001"}).json()
        code = stack.last_code()
        before = stack.stats()["retailcrm_over_rate_limit"]
        flood_latencies: list[float] = []

        def flood(n: int) -> list[str]:
            statuses = []
            for identity in identities[n * per_flooder:(n + 1) * per_flooder]:
                answer, seconds = timed_get(f"{stack.base}/auth/status", identity)
                flood_latencies.append(seconds)
                statuses.append(answer["status"])
            return statuses

        with ThreadPoolExecutor(flooders) as pool:
            flooding = [pool.submit(flood, n) for n in range(flooders)]
            time.sleep(1.5)  # the line of reads is several seconds long by now
            began = time.monotonic()
            check = requests.post(f"{stack.base}/auth/check", timeout=30, data={
                **customer, "sessionId": started["sessionId"], "code": code}).json()
            check_seconds = time.monotonic() - began
            flood_statuses = [s for f in flooding for s in f.result(timeout=120)]
        refused = stack.stats()["retailcrm_over_rate_limit"] - before
    waits = sorted(flood_latencies)
    print(f"\npriority: /auth/check {check_seconds * 1000:.0f} ms during a flood of "
          f"{len(waits)} status calls ({flooders} at once; their median "
          f"{statistics.median(waits) * 1000:.0f} ms), {refused} over the quota")
    assert check["status"] == "authorized" and check["customerId"] == "1001"
    assert set(flood_statuses) == {"authorized"}
    # Two journey calls, each waiting at most the read horizon (1 s) behind the reads.
    assert check_seconds < 3.0
    assert check_seconds < statistics.median(waits)
    assert refused == 0


class SilentServer:
    """Accepts connections and never answers: a hanging RetailCRM."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def stop(self) -> None:
        self.stopped = True
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_a_hanging_crm_trips_the_breaker_and_health_stays_fast(tmp_path):
    """16 concurrent status calls against a CRM that never answers (as the issue
    measured: /health took 9.5 s): /health p99 < 100 ms throughout; once the breaker is
    open, CRM-bound calls answer crm_unavailable within 1 s."""
    silent = SilentServer()
    settings = {**SETTINGS, "RETAILCRM_BASE_URL": silent.url, "RETAILCRM_TIMEOUT_SECONDS": "3",
                "RETAILCRM_BREAKER_FAILURES": "3", "RETAILCRM_BREAKER_COOLOFF_SECONDS": "60"}
    try:
        with running_stack(tmp_path, settings) as (app, _, redis_server):
            health: list[float] = []
            stop = threading.Event()

            def sample_health() -> None:
                session = requests.Session()
                while not stop.is_set():
                    started = time.monotonic()
                    assert session.get(f"{app.base}/health", timeout=10).status_code == 200
                    health.append(time.monotonic() - started)
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample_health)
            sampler.start()
            users = [{"channelType": "telegram", "messengerUserId": f"hang-{i}"}
                     for i in range(32)]
            with ThreadPoolExecutor(16) as pool:
                flood = list(pool.map(lambda u: timed_get(f"{app.base}/auth/status", u),
                                      users, timeout=120))
            # Both workers have seen 3 timeouts by now unless one got almost nothing:
            # keep asking until answers come fast (bounded), then measure.
            for i in range(20):
                _, seconds = timed_get(f"{app.base}/auth/status",
                                       {"channelType": "telegram", "messengerUserId": f"p{i}"})
            open_answers = [timed_get(f"{app.base}{path}", {
                "channelType": "telegram", "messengerUserId": f"open-{i}"})
                for i in range(10) for path in ("/auth/status", "/orders")]
            started = time.monotonic()
            start = requests.post(f"{app.base}/auth/start", timeout=30, data={
                "channelType": "telegram", "messengerUserId": "s", "phone": "79990000001"})
            start_seconds = time.monotonic() - started
            stop.set()
            sampler.join()
            breaker_gauge = requests.get(f"{app.base}/metrics", timeout=10).text
            quota_keys = redis.Redis.from_url(redis_server.url).keys("gg:crm:*")
    finally:
        silent.stop()
    ordered = sorted(health)
    p99 = ordered[min(int(0.99 * len(ordered)), len(ordered) - 1)]
    slowest_open = max(s for _, s in open_answers)
    print(f"\nbreaker: /health {len(health)} samples p50 {ordered[len(ordered) // 2] * 1000:.1f}"
          f" ms p99 {p99 * 1000:.1f} ms max {ordered[-1] * 1000:.1f} ms; flood answers "
          f"{sorted({a['errorCode'] for a, _ in flood})}, slowest {max(s for _, s in flood):.1f}"
          f" s; with the breaker open the slowest CRM-bound answer {slowest_open * 1000:.0f} ms")
    assert {a["errorCode"] for a, _ in flood} == {"crm_unavailable"}
    assert len(health) >= 100 and p99 < 0.1
    assert all(a["errorCode"] == "crm_unavailable" for a, _ in open_answers)
    assert slowest_open < 1.0
    assert start.json()["errorCode"] == "crm_unavailable" and start_seconds < 1.0
    assert "gurugrow_crm_breaker_open 1.0" in breaker_gauge
    assert quota_keys  # the calls did go through the shared bucket


def test_the_bucket_runs_on_one_server_a_cluster_and_through_a_sentinel(real_redis, prefix):
    """The script's two keys share one hash tag; server time paces, whatever the client."""
    from gurugrow.governor import JOURNEY, READ, CrmQuota
    from gurugrow.stores.quota import GRANTED, IN_LINE

    bucket = CrmQuota(real_redis, prefix, rate_limit=10, queue_seconds=10.0,
                      read_horizon_seconds=0.5)
    grants = [bucket.reserve(READ, 10.0, f"r{i}") for i in range(8)]
    assert [g.state for g in grants] == [GRANTED] * 6 + [IN_LINE] * 2
    journey = bucket.reserve(JOURNEY, 10.0, "j")
    slots = sorted(g.slot_us for g in [*grants[:6], journey])
    assert min(b - a for a, b in zip(slots, slots[1:], strict=False)) == 100_001
    bucket.slow_down(2.0)
    assert bucket.reserve(JOURNEY, 10.0, "late").seconds >= 1.9
    keys = real_redis.keys(f"{prefix}crm:*")
    assert len(keys) == 2 and all(real_redis.pttl(k) > 0 for k in keys)
