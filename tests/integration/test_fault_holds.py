"""Faults at the wrong moment, against the real stack (gunicorn + redis-server + stand-ins
over HTTP): nothing doubled, no limit bypassed."""

from __future__ import annotations

import time

import pytest
import redis
import requests

from tests.integration.stack import running_stack

pytestmark = pytest.mark.integration

SETTINGS = {"REDIS_TIMEOUT_SECONDS": "0.5", "RETAILCRM_TIMEOUT_SECONDS": "2",
            "GREENSMS_TIMEOUT_SECONDS": "1", "DEDUPE_TIMEOUT_SECONDS": "1",
            "HTTP_CONNECT_TIMEOUT_SECONDS": "1", "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "5",
            "OTP_RESEND_COOLDOWN_SECONDS": "60", "OTP_MAX_SENDS_PER_PHONE_PER_DAY": "1000",
            "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "8", "GUNICORN_TIMEOUT": "20",
            "RETAILCRM_BREAKER_FAILURES": "1000"}
PHONE = "79990000001"  # one customer (1001) in the stand-ins' demo data
NEW_PHONE = "79990000004"  # nobody: the recommended check creates the customer


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("holds"), SETTINGS) as running:
        yield running


@pytest.fixture
def fresh(stack):
    app, standins, redis_server = stack
    standins.state.reset()
    standins.state.rate_limit = 0
    redis.Redis.from_url(redis_server.url).flushdb()
    return stack


def start(base: str, user: str, phone: str = PHONE, **extra) -> dict:
    return requests.post(f"{base}/auth/start", data={
        "phone": phone, "channelType": "telegram", "messengerUserId": user,
        "deliveryRoute": "sms", **extra}, timeout=30).json()


def test_a_slow_greensms_that_delivers_lifts_no_send_limit(fresh):
    """GreenSMS answers after GREENSMS_TIMEOUT_SECONDS but every message is delivered:
    each such send counts, so at most OTP_MAX_SENDS_PER_PHONE_PER_HOUR messages reach the
    phone from any number of starts, and the cooldown holds for each account."""
    app, standins, _ = fresh
    standins.state.delay_after["sms"] = 1.5  # delivered, answered after the 1 s timeout
    answers = [start(app.base, user=f"acc{i}") for i in range(12)]
    repeats = [start(app.base, user="acc0") for _ in range(3)]
    time.sleep(1.0)  # the last late answers land
    delivered = [m for m in standins.state.outbox if m["to"] == PHONE]
    print(f"\nslow GreenSMS: {len(answers) + len(repeats)} starts, "
          f"{len(delivered)} messages reached the phone")
    statuses = [(a["status"], a["errorCode"]) for a in answers]
    assert statuses[:5] == [("sent", None)] * 5  # the session is valid: the code may arrive
    assert statuses[5:] == [("error", "rate_limited")] * 7
    assert {(a["status"], a["errorCode"]) for a in repeats} == {("error", "resend_too_early")}
    assert len(delivered) == 5
    assert "code_send_unknown" in app.log()
