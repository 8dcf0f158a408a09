"""The OTP store and a whole journey against a real redis-server."""

from __future__ import annotations

import pytest

from gurugrow import create_app
from gurugrow.otp import OtpPolicy, OtpStore
from tests.conftest import TEST_ENV
from tests.helpers import TG, get, post, run_concurrently

pytestmark = pytest.mark.integration


@pytest.fixture
def app(real_redis, prefix):
    return create_app({**TEST_ENV, "REDIS_PREFIX": prefix}, redis_client=real_redis)


def test_journey_on_real_redis(app, real_redis, prefix, upstreams):
    client = app.test_client()
    upstreams.add_customer(626518, "+7 999 123-45-67")
    assert client.get("/health").status_code == 200
    assert get(client, "/auth/status", TG)["status"] == "not_authorized"
    session_id = post(client, "/auth/start", {**TG, "phone": "+7 999 123-45-67"},
                      "json")["sessionId"]
    answer = post(client, "/auth/check", {**TG, "sessionId": session_id,
                                          "code": upstreams.codes_sent()[0]})
    assert answer["status"] == "authorized"
    assert get(client, "/auth/status", TG)["customerId"] == "626518"
    assert post(client, "/auth/unlink", TG, "json")["status"] == "unlinked"
    # Every key this journey wrote lives under the prefix and expires.
    keys = real_redis.keys(prefix + "*")
    assert keys
    assert all(real_redis.ttl(k) > 0 for k in keys)
    # No code in clear text anywhere in Redis.
    code = upstreams.codes_sent()[0]
    for key in keys:
        value = real_redis.dump(key)
        assert code.encode() not in value


def test_concurrent_checks_of_one_code_succeed_once(real_redis, prefix):
    store = OtpStore(real_redis, prefix, OtpPolicy(secret="x" * 16, hash_iterations=1000))
    session = store.create_session(phone="79991234567", channel="telegram", account_id="1",
                                   customer_id="5", code="424242", route="telegram_otp")
    loaded = store.load(session.session_id)
    results = run_concurrently(16, lambda: store.verify(loaded, "424242"))
    assert results.count("ok") == 1
    assert set(results) == {"ok", "missing"}


def test_concurrent_http_checks_bind_once(app, upstreams):
    upstreams.add_customer(5, "79991234567")
    client = app.test_client()
    session_id = post(client, "/auth/start", {**TG, "phone": "79991234567"})["sessionId"]
    code = upstreams.codes_sent()[0]
    answers = run_concurrently(8, lambda: post(app.test_client(), "/auth/check", {
        **TG, "sessionId": session_id, "code": code}))
    assert [a["status"] for a in answers].count("authorized") == 1
    assert len(upstreams.edits) == 1


def test_wrong_guesses_are_all_counted_under_concurrency(real_redis, prefix):
    store = OtpStore(real_redis, prefix, OtpPolicy(secret="x" * 16, hash_iterations=1000,
                                                   max_attempts=5, identity_max_failures=0))
    session = store.create_session(phone="79991234567", channel="telegram", account_id="1",
                                   customer_id="5", code="424242", route="telegram_otp")
    loaded = store.load(session.session_id)
    results = run_concurrently(20, lambda: store.verify(loaded, "000000"))
    assert results.count("invalid") == 4
    assert results.count("locked") == 16
    assert store.verify(loaded, "424242") == "locked"
