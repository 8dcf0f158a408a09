"""The OTP store and whole journeys against a real redis-server and a Redis Cluster."""

from __future__ import annotations

import pytest

from gurugrow import create_app
from gurugrow.basics.clock import Clock
from gurugrow.config import Settings
from gurugrow.stores.otp import OtpPolicy, OtpStore
from tests.conftest import TEST_ENV
from tests.helpers import TG, get, post, run_concurrently

pytestmark = pytest.mark.integration


def _policy(**env: str) -> OtpPolicy:
    """The test settings' OTP policy, with ``env`` on top."""
    return OtpPolicy.from_settings(Settings.load({**TEST_ENV, **env}))


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
    keys = list(real_redis.scan_iter(match=prefix + "*"))  # every node of a cluster
    assert keys
    assert all(real_redis.ttl(k) > 0 for k in keys)
    # No code in clear text anywhere in Redis.
    code = upstreams.codes_sent()[0]
    for key in keys:
        value = real_redis.dump(key)
        assert code.encode() not in value


def test_concurrent_checks_of_one_code_succeed_once(real_redis, prefix):
    store = OtpStore(real_redis, prefix, _policy(), clock=Clock())
    session = store.create_session(phone="79991234567", channel="telegram", account_id="1",
                                   customer_id="5", code="424242", method="telegram_otp")

    def check_and_finish() -> str:
        outcome, checked = store.check(session.session_id, "telegram", "1", "auth", "424242")
        if outcome == "ok":
            store.finish(checked, {"status": "authorized"})
        return outcome

    results = run_concurrently(16, check_and_finish)
    assert results.count("ok") == 1
    # The others waited for the first one and got its answer to replay.
    assert set(results) == {"ok", "replay"}


def test_concurrent_http_checks_bind_once(app, upstreams):
    upstreams.add_customer(5, "79991234567")
    client = app.test_client()
    session_id = post(client, "/auth/start", {**TG, "phone": "79991234567"})["sessionId"]
    code = upstreams.codes_sent()[0]
    answers = run_concurrently(8, lambda: post(app.test_client(), "/auth/check", {
        **TG, "sessionId": session_id, "code": code}))
    # One binds; the others are replays, answered alike once it has.
    assert [a["status"] for a in answers] == ["authorized"] * 8
    assert len({a["verifiedUntil"] for a in answers}) == 1
    assert len(upstreams.edits) == 1


def test_wrong_guesses_are_all_counted_under_concurrency(real_redis, prefix):
    store = OtpStore(real_redis, prefix,
                     _policy(OTP_MAX_ATTEMPTS="5", OTP_IDENTITY_MAX_FAILURES="0"), clock=Clock())
    session = store.create_session(phone="79991234567", channel="telegram", account_id="1",
                                   customer_id="5", code="424242", method="telegram_otp")
    def check(code: str) -> str:
        return store.check(session.session_id, "telegram", "1", "auth", code)[0]

    results = run_concurrently(20, lambda: check("000000"))
    assert results.count("invalid") == 4
    assert results.count("locked") == 16
    assert check("424242") == "locked"


def test_every_redis_step_on_real_redis(real_redis, prefix, upstreams):
    """Resend, cached references, run-once repeats and the recommended path: every
    script and key the service uses, on a real server and on a cluster."""
    app = create_app({**TEST_ENV, "REDIS_PREFIX": prefix, "OTP_RESEND_COOLDOWN_SECONDS": "0"},
                     redis_client=real_redis)
    client = app.test_client()
    upstreams.add_customer(626518, "+79991234567", bot_telegram_account_id="123456789")
    upstreams.add_offer(501, "Миноксидил 5%")
    upstreams.add_order(123456, 626518, number="ELM278345", status="complete",
                        items=[(501, "Миноксидил 5%", 2)])
    upstreams.add_bundle(31, "SET-MALE-BASIC")

    started = post(client, "/auth/start", {**TG, "phone": "79991234567"}, "json")
    resent = post(client, "/auth/resend", {**TG, "sessionId": started["sessionId"]})
    assert resent["status"] == "sent"
    assert post(client, "/auth/check", {**TG, "sessionId": started["sessionId"],
                                        "code": upstreams.codes_sent()[-1]}
                )["status"] == "authorized"

    for _ in range(2):  # the second answer comes from the cached status reference
        assert get(client, "/orders", TG)["status"] == "ok"
    repeat = {**TG, "sourceOrderId": "123456"}
    first, again = (post(client, "/orders/repeat", repeat, "json") for _ in range(2))
    assert first["status"] == "created" and again == first

    order = {**TG, "offerCode": "male_hairloss_basic", "firstName": "Иван",
             "phone": "79991234567"}
    created = [post(client, "/orders/recommended/create", order) for _ in range(2)]
    assert created[0]["status"] == "created" and created[1] == created[0]

    other = {**TG, "messengerUserId": "555", "offerCode": "male_hairloss_basic",
             "firstName": "Пётр", "phone": "79997654321"}
    session_id = post(client, "/orders/recommended/start", other)["sessionId"]
    checked = post(client, "/orders/recommended/check", {
        **other, "sessionId": session_id, "code": upstreams.codes_sent()[-1]})
    assert checked["status"] == "created"
    assert len(upstreams.created) == 3  # one repeat, two recommended: no doubles

    keys = list(real_redis.scan_iter(match=prefix + "*"))
    assert {k.decode().split(":")[1] for k in keys} >= {"otp", "throttle", "cache", "once"}
    assert all(real_redis.ttl(k) > 0 for k in keys)
