"""A flood on the real stack: gunicorn (2 workers × 32 threads), redis-server, and the
stand-ins enforcing RetailCRM's 10 calls/s in their own process. The flood runs in a
process of its own (bench/flood.py), so its threads never share an interpreter lock with
the probes that time the service meanwhile.

128 keep-alive connections ask /auth/status with a new messenger id each time: every
one of those requests needs a RetailCRM call, about fifteen times more than the quota
serves. Each worker parks at most RETAILCRM_MAX_WAITING (16) of them; the rest are told
`busy` at once, so /health, a cached read and a customer's journey keep their threads.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import API_TOKEN
from tests.integration.conftest import ROOT
from tests.integration.test_crm_quota import SETTINGS, quota_stack

pytestmark = pytest.mark.integration

CONNECTIONS, FLOOD_SECONDS = 128, 20
BOT_ANSWER_SECONDS = 3.0
# The shipped timing floor and answer budget: the journey's start must fit both.
FLOOD_SETTINGS = {**SETTINGS, "GUNICORN_THREADS": "32", "START_MIN_SECONDS": "2",
                  "BOT_ANSWER_SECONDS": str(BOT_ANSWER_SECONDS)}
CACHED = {"channelType": "telegram", "messengerUserId": "100500"}  # sandbox: customer 1006
SERVED_OR_BUSY = {"200 not_authorized", "200 busy"}


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def start_flood(base: str) -> subprocess.Popen:
    """The flood's process, at the lowest CPU priority: on one shared machine its own
    CPU (in earnest it comes from elsewhere) must not be what slows the service."""
    nice = [shutil.which("nice"), "-n", "19"] if shutil.which("nice") else []
    return subprocess.Popen(
        [*nice, sys.executable, "-m", "bench.flood", "--base", base, "--token", API_TOKEN,
         "--connections", str(CONNECTIONS), "--seconds", str(FLOOD_SECONDS)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)


def probe(session: requests.Session, url: str, params: dict | None = None
          ) -> tuple[float, dict]:
    began = time.monotonic()
    response = session.get(url, params=params, timeout=30)
    seconds = time.monotonic() - began
    assert response.status_code == 200, response.text[:300]
    return seconds, response.json()


def journey(base: str, last_code) -> list[tuple[str, float, dict]]:
    """A customer's start → check → repeat; (step, seconds, answer) of each."""
    # The account that holds customer 1006 already: another account binding 1006 would
    # move the binding and cut CACHED off at once (its probes would go to RetailCRM).
    customer = dict(CACHED)
    steps = []
    with requests.Session() as session:
        def step(name: str, path: str, body: dict) -> dict:
            began = time.monotonic()
            answer = session.post(f"{base}{path}", data=body, timeout=30).json()
            steps.append((name, time.monotonic() - began, answer))
            return answer

        started = step("start", "/auth/start", {**customer, "phone": "79990000006"})
        if started["status"] == "sent":
            checked = step("check", "/auth/check", {
                **customer, "sessionId": started["sessionId"], "code": last_code()})
            if checked["status"] == "authorized":
                step("repeat", "/orders/repeat", {**customer, "sourceOrderId": "5001"})
    return steps


def test_a_flood_of_uncached_reads_starves_no_one(tmp_path):
    with quota_stack(tmp_path, FLOOD_SETTINGS) as stack:
        with requests.Session() as warm:  # the cached read's binding, before the flood
            assert probe(warm, f"{stack.base}/auth/status", CACHED)[1]["status"] == "authorized"
        flood = start_flood(stack.base)
        try:
            time.sleep(3)  # every connection is looping by now
            steps: list = []
            walker = threading.Thread(target=lambda: steps.extend(
                journey(stack.base, stack.last_code)))
            health, cached = [], []
            with requests.Session() as session:
                stop = time.monotonic() + FLOOD_SECONDS - 6
                walker.start()
                while time.monotonic() < stop:
                    health.append(probe(session, f"{stack.base}/health")[0])
                    seconds, answer = probe(session, f"{stack.base}/auth/status", CACHED)
                    assert answer["status"] == "authorized", answer
                    cached.append(seconds)
                    time.sleep(0.02)
            walker.join(timeout=30)
            output, _ = flood.communicate(timeout=60)
        finally:
            if flood.poll() is None:
                flood.kill()
        flooded = json.loads(output)
        # Each answer's time as the service measured it (arrival to answer, its log line).
        served_ms = [float(ms) for ms in re.findall(
            r"request method=GET path=/auth/status http_status=200 ms=([0-9.]+)",
            stack.app.log())]
    answers = flooded["answers"]
    print(f"\nflood: {CONNECTIONS} connections, {FLOOD_SECONDS} s: {answers}, slowest "
          f"{flooded['slowest_seconds']:.2f} s (the service's own slowest "
          f"{max(served_ms) / 1000:.2f} s of {len(served_ms)}); "
          f"/health p99 {p99(health) * 1000:.0f} ms "
          f"(median {statistics.median(health) * 1000:.1f}, n={len(health)}); cached "
          f"/auth/status p99 {p99(cached) * 1000:.0f} ms (median "
          f"{statistics.median(cached) * 1000:.1f}); journey "
          + ", ".join(f"{name} {seconds:.2f} s {answer['status']}"
                      for name, seconds, answer in steps))
    assert set(answers) <= SERVED_OR_BUSY, answers
    assert answers.get("200 busy", 0) > 0 and answers.get("200 not_authorized", 0) > 0
    # The flood's own slowest answer is printed, not asserted: its process runs at the
    # lowest CPU priority, so on a busy machine its clock includes its own wait for a CPU.
    # The service's own time of every answer is.
    assert len(served_ms) >= sum(answers.values())
    assert max(served_ms) < (BOT_ANSWER_SECONDS + 0.5) * 1000
    # The targets are p99 under 100 ms (/health) and 200 ms (a cached read); a
    # quiet 2-core machine meets them (docs/RELIABILITY.md "Under a flood"). Here the
    # machine may be shared and loaded, so the median must meet them and the p99 stay an
    # order of magnitude under the 1.9 s of a starved worker.
    assert statistics.median(health) < 0.1 and p99(health) < 0.5
    assert statistics.median(cached) < 0.2 and p99(cached) < 0.5
    assert [(name, answer["status"]) for name, _, answer in steps] == [
        ("start", "sent"), ("check", "authorized"), ("repeat", "created")]
    assert all(seconds < BOT_ANSWER_SECONDS for _, seconds, _ in steps), steps


def test_no_answer_outlasts_the_bots_patience_on_a_quota_far_too_small(tmp_path):
    """The patience test: gurugrow's bucket at 2 calls/s under 40 bound users at once,
    each asking "My orders" (/auth/status, then /orders: one to three CRM calls) and then
    repeating an order (a journey step of several calls). Every answer comes within
    BOT_ANSWER_SECONDS + 0.5 s, and every one is served or busy."""
    users = 40
    settings = {**FLOOD_SETTINGS, "RETAILCRM_RATE_LIMIT": "2"}
    with quota_stack(tmp_path, settings) as stack:
        identities = stack.seed_bound_users(users)

        def visit(identity: dict[str, str]) -> list[tuple[str, float, dict]]:
            answers = []
            with requests.Session() as session:
                for name, method, path in (("status", "GET", "/auth/status"),
                                           ("orders", "GET", "/orders"),
                                           ("repeat", "POST", "/orders/repeat")):
                    body = {**identity, "sourceOrderId": "5001"} if method == "POST" else None
                    began = time.monotonic()
                    response = session.request(method, f"{stack.base}{path}", timeout=30,
                                               params=identity if method == "GET" else None,
                                               data=body)
                    answers.append((name, time.monotonic() - began, response.json()))
            return answers

        with ThreadPoolExecutor(users) as pool:
            results = [a for answers in pool.map(visit, identities, timeout=120)
                       for a in answers]
    slowest = max(seconds for _, seconds, _ in results)
    outcomes = Counter(f"{name} {answer.get('errorCode') or answer['status']}"
                       for name, _, answer in results)
    print(f"\npatience: {users} users at once, bucket 2/s: {dict(sorted(outcomes.items()))}, "
          f"slowest answer {slowest:.2f} s")
    served = {"status": {"authorized"}, "orders": {"ok"},
              # Order 5001 is not a seeded customer's: served is not_found (a lookup made).
              "repeat": {"created", "not_found"}}
    for name, _, answer in results:
        assert answer.get("errorCode") == "busy" or answer["status"] in served[name], answer
    assert slowest <= BOT_ANSWER_SECONDS + 0.5
    assert any(a.get("errorCode") == "busy" for _, _, a in results)  # the quota was too small
    assert any(a.get("errorCode") != "busy" for _, _, a in results)
