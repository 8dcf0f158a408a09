"""Timing does not tell whose phone a code start was for: real gunicorn + redis-server +
the stand-ins over HTTP, starts interleaved across the sandbox's demo phones of every
class (no customer, one customer, duplicates the deduper resolves, a Telegram route that
fails over to SMS).

Each class gets ``TIMING_SAMPLES`` (≥ 30) starts per endpoint, interleaved so that load
from anything else on the machine falls on every class alike. The test fails when
- the medians differ by more than 5 %, or
- a two-sample Kolmogorov-Smirnov test separates two classes, on the answer times or on
  their spread (each answer's distance from its class's median), at the 0.1 % level:
  no threshold rule on one answer, nor on how much answers scatter, tells them apart.

A finding must reproduce: when a check fails, every class is measured again with fresh
starts, and the test fails on the checks that fail in both rounds. A real difference
between the paths is systematic and shows again; on a host whose other load comes and
goes, two dozen checks at the 0.1 % level on samples that are not quite independent
sometimes separate a random pair once (seen: a different pair on each loaded run).

``START_MIN_SECONDS`` is set to ``TIMING_FLOOR_SECONDS`` (default 0.4 s: above the
slowest path here under load; production's default is 2.0 s for real upstreams).
Run with ``-s`` to see the figures; with ``TIMING_FLOOR_SECONDS=0`` the same checks show
what the floor hides (the deduper and SMS-fallback paths are slower).
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import time

import pytest
import requests

from tests.integration.stack import running_stack

pytestmark = pytest.mark.integration

SAMPLES = max(30, int(os.environ.get("TIMING_SAMPLES", "30")))
FLOOR = os.environ.get("TIMING_FLOOR_SECONDS", "0.4")
# gurugrow/sandbox/data.py's demo phones, one per class.
CLASSES = {"unknown": "79990000004", "one_customer": "79990000001",
           "deduper_resolved": "79990000002", "sms_fallback": "79990000005"}
SETTINGS = {"START_MIN_SECONDS": FLOOR, "OTP_RESEND_COOLDOWN_SECONDS": "0",
            "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "0",
            "OTP_MAX_SENDS_PER_PHONE_PER_DAY": "1000000",
            "OTP_MAX_SENDS_PER_IP_PER_HOUR": "0", "OTP_DAILY_SEND_BUDGET": "0"}
ENDPOINTS = {"/auth/start": {}, "/orders/recommended/start": {"offerCode":
                                                              "male_hairloss_basic"}}
WARMUP_ROUNDS = 3
# Kolmogorov-Smirnov critical value coefficient for alpha = 0.001.
KS_C_ALPHA = 1.949


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("timing"), SETTINGS) as running:
        yield running


def ks_statistic(a: list[float], b: list[float]) -> float:
    """The largest gap between the two empirical distribution functions."""
    gap = 0.0
    for x in sorted(a + b):
        fa = sum(v <= x for v in a) / len(a)
        fb = sum(v <= x for v in b) / len(b)
        gap = max(gap, abs(fa - fb))
    return gap


def ks_critical(n: int, m: int) -> float:
    return KS_C_ALPHA * math.sqrt((n + m) / (n * m))


def spread(samples: list[float]) -> list[float]:
    middle = statistics.median(samples)
    return [abs(v - middle) for v in samples]


def measure(base: str, path: str, extra: dict[str, str], rounds: int
            ) -> dict[str, list[float]]:
    """``rounds`` rounds, each one start per class in a rotating order; seconds."""
    http = requests.Session()  # one kept-alive connection: no connect time in the figures
    times: dict[str, list[float]] = {name: [] for name in CLASSES}
    names = list(CLASSES)
    for round_no in range(rounds):
        order = names[round_no % len(names):] + names[:round_no % len(names)]
        for name in order:
            body = {"channelType": "telegram", "phone": CLASSES[name],
                    "messengerUserId": f"timing-{path}-{name}-{round_no}-{time.time_ns()}",
                    **extra}
            started = time.perf_counter()
            response = http.post(base + path, data=body, timeout=30)
            elapsed = time.perf_counter() - started
            answer = response.json()
            assert answer["status"] == "sent", (name, answer)
            times[name].append(elapsed)
    return times


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_start_takes_the_same_time_whoever_the_phone_belongs_to(stack, path):
    app, standins, _ = stack
    measure(app.base, path, ENDPOINTS[path], WARMUP_ROUNDS)  # imports, pools, caches
    failures = separations(measure(app.base, path, ENDPOINTS[path], SAMPLES), path)
    # Each class really took its path: the deduper was asked, Telegram failed over to SMS.
    routes = {(m["to"], m["route"]) for m in list(standins.state.outbox)}
    assert (CLASSES["sms_fallback"], "sms") in routes
    assert (CLASSES["deduper_resolved"], "telegram") in routes
    if failures:  # a finding must show again on fresh starts
        print(f"  round 1 separated {sorted(failures)}: measuring again")
        again = separations(measure(app.base, path, ENDPOINTS[path], SAMPLES), path)
        failures = {check: (failures[check], again[check]) for check in failures
                    if check in again}
    assert not failures, failures


def separations(times: dict[str, list[float]], path: str) -> dict[str, str]:
    """The checks that tell classes apart: check name → what was seen."""
    medians = {name: statistics.median(v) for name, v in times.items()}
    print(f"\n{path} START_MIN_SECONDS={FLOOR}, {SAMPLES} starts per class (ms):")
    for name, values in times.items():
        q = statistics.quantiles(values, n=4)
        print(f"  {name:17} median {medians[name] * 1000:8.2f}  IQR {(q[2] - q[0]) * 1000:6.2f}"
              f"  stdev {statistics.stdev(values) * 1000:6.2f}"
              f"  min {min(values) * 1000:8.2f}  max {max(values) * 1000:8.2f}")
    failures = {}
    low, high = min(medians.values()), max(medians.values())
    if high / low - 1 > 0.05:
        failures["medians"] = f"medians differ by {(high / low - 1) * 100:.1f} % (> 5 %)"
    for a, b in itertools.combinations(CLASSES, 2):
        limit = ks_critical(len(times[a]), len(times[b]))
        for what, xs, ys in (("times", times[a], times[b]),
                             ("spread", spread(times[a]), spread(times[b]))):
            gap = ks_statistic(xs, ys)
            print(f"  KS {what:6} {a} vs {b}: {gap:.3f} (separates above {limit:.3f})")
            if gap > limit:
                failures[f"{what} {a}/{b}"] = (f"{what} of {a} and {b} separate "
                                               f"(KS {gap:.3f} > {limit:.3f})")
    return failures
