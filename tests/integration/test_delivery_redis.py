"""Delivery tracking's Redis steps (record, due set, claims) on a real redis-server, a
Redis Cluster and through a Sentinel: smart resend and a worker pass."""

from __future__ import annotations

import time

import pytest

from gurugrow import create_app
from gurugrow.flows.deliveries_worker import run_worker
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
