"""Delivery tracking's Redis steps (record, due set, claims) on a real redis-server, a
Redis Cluster and through a Sentinel: smart resend and a worker pass."""

from __future__ import annotations

import time

import pytest

from gurugrow import create_app
from gurugrow.flows.deliveries_worker import run_worker
from gurugrow.stores import keys as redis_keys
from tests.conftest import TEST_ENV
from tests.helpers import TG, post, run_concurrently, set_clock

pytestmark = pytest.mark.integration


def test_resend_and_worker_fallbacks_on_real_redis(real_redis, prefix, upstreams):
    app = create_app({**TEST_ENV, "REDIS_PREFIX": prefix, "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "0"},
                     redis_client=real_redis)
    client = app.test_client()
    upstreams.add_customer(626518, "+79991234567")

    # Resend after a failed Telegram send: by SMS, at once.
    first = post(client, "/auth/start", {**TG, "phone": "79991234567"})["sessionId"]
    upstreams.state.delivery_statuses[upstreams.sent[-1]["request_id"]] = "Delivery failure"
    assert post(client, "/auth/resend", {**TG, "sessionId": first})["deliveryRoute"] == "sms"

    # The worker, two at once, for another account's undelivered send: one SMS.
    other = {**TG, "messengerUserId": "777"}
    post(client, "/auth/start", {**other, "phone": "79991234567"})
    upstreams.state.delivery_statuses[upstreams.sent[-1]["request_id"]] = "Delivery failure"
    set_clock(app, time.time() + 10)
    svc = app.extensions["gurugrow"]
    results = run_concurrently(2, lambda: run_worker(svc, once=True))
    assert sum(r.get("sms", 0) for r in results) == 1
    assert [m["route"] for m in upstreams.sent] == ["telegram", "sms", "telegram", "sms"]

    keys = [k.decode() for k in real_redis.scan_iter(match=prefix + "delivery:*")]
    assert len(keys) == 2  # one record per session; the due set is empty again
    assert all(real_redis.ttl(k) > 0 for k in keys)


def test_an_unknown_send_moves_on_after_the_cooldown_on_real_redis(real_redis, prefix,
                                                                   upstreams):
    """A send GreenSMS cannot read, past the fallback time: the resend and the worker
    both wait for the cooldown (its TTL read from Redis), then one SMS goes out."""
    app = create_app({**TEST_ENV, "REDIS_PREFIX": prefix, "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "0"},
                     redis_client=real_redis)
    client = app.test_client()
    svc = app.extensions["gurugrow"]
    upstreams.add_customer(626518, "+79991234567")
    session_id = post(client, "/auth/start", {**TG, "phone": "79991234567"})["sessionId"]
    upstreams.fail["status"] = (200, {"error": "Message not found", "code": 404})
    set_clock(app, time.time() + 31)
    refused = post(client, "/auth/resend", {**TG, "sessionId": session_id})
    assert (refused["status"], refused["errorCode"]) == ("error", "resend_too_early")
    assert run_worker(svc, once=True) == {"waiting": 1}
    session = svc.otp.load(session_id)
    assert 0 < svc.limits.cooldown_left(session.phone, session.channel,
                                        session.account_id) <= 60
    real_redis.delete(redis_keys.otp_cooldown(prefix, session.phone, session.channel,
                                              session.account_id))  # the cooldown ends
    set_clock(app, time.time() + 100)
    results = run_concurrently(2, lambda: run_worker(svc, once=True))
    assert sum(r.get("sms", 0) for r in results) == 1
    assert [m["route"] for m in upstreams.sent] == ["telegram", "sms"]
    assert svc.limits.cooldown_left(session.phone, session.channel, session.account_id) > 0
