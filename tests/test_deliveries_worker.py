"""The `deliveries` worker (`flask --app wsgi gurugrow deliveries`) against the GreenSMS
stand-in: automatic SMS fallback, one SMS and never two with two workers, the send caps,
and the recorded verification method."""

from __future__ import annotations

import threading
import time

import pytest

from gurugrow import ConfigError, Settings, metrics
from gurugrow.flows.auto_fallback import claim_lease_seconds
from gurugrow.flows.deliveries_worker import run_worker
from tests.conftest import TEST_ENV
from tests.helpers import BODY_KINDS, TG, post, run_concurrently
from tests.test_delivery import CUSTOMER, PHONE, end_cooldowns, later, pin_status
from tests.test_delivery import start as delivery_start


@pytest.fixture
def customer(upstreams):
    upstreams.add_customer(CUSTOMER, PHONE)
    return upstreams


def start(client, kind="form", account="123456789", **extra):
    return delivery_start(client, kind, messengerUserId=account, **extra)


def worker(app, *args: str) -> str:
    """Run the CLI command once (or as asked); its output line."""
    result = app.test_cli_runner().invoke(args=["gurugrow", "deliveries", *args])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def routes(upstreams) -> list[str]:
    return [m["route"] for m in upstreams.sent]


def test_nothing_due_nothing_done(app):
    assert worker(app, "--once") == "no sends were due"


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_failed_messenger_send_gets_an_sms_without_resend(app, client, customer, kind):
    session_id = start(client, kind)["sessionId"]
    pin_status(customer, "Delivery failure")
    fallbacks = metrics.AUTO_FALLBACKS.labels("telegram")._value.get()
    assert worker(app, "--once") == "no sends were due"  # the first check is not due yet
    later(app, 10)
    assert worker(app, "--once") == "sms=1"
    assert routes(customer) == ["telegram", "sms"]
    assert metrics.AUTO_FALLBACKS.labels("telegram")._value.get() == fallbacks + 1
    # The customer types the SMS code: that route is what the CRM records.
    answer = post(client, "/auth/check", {**TG, "sessionId": session_id,
                                          "code": customer.codes_sent()[-1]}, kind)
    assert answer["status"] == "authorized"
    assert customer.field(CUSTOMER, "bot_last_verification_method") == "sms_otp"
    # Nothing is due any more; a resend now waits for the restarted cooldown.
    later(app, 100)
    assert worker(app, "--once") == "no sends were due"


def test_late_messenger_send_falls_back_at_the_fallback_time(app, client, customer):
    start(client)
    pin_status(customer, "Delivery accepted")
    later(app, 10)
    assert worker(app, "--once") == "waiting=1"
    later(app, 20)
    assert worker(app, "--once") == "waiting=1"
    later(app, 30)  # DELIVERY_FALLBACK_AFTER_SECONDS
    assert worker(app, "--once") == "sms=1"
    assert routes(customer) == ["telegram", "sms"]
    assert len(customer.state.status_calls) == 3


def test_delivered_messenger_send_is_left_alone(app, client, customer):
    session_id = start(client)["sessionId"]
    pin_status(customer, "Delivery success")
    later(app, 10)
    assert worker(app, "--once") == "delivered=1"
    later(app, 60)
    assert worker(app, "--once") == "no sends were due"
    assert routes(customer) == ["telegram"]
    answer = post(client, "/auth/check", {**TG, "sessionId": session_id,
                                          "code": customer.codes_sent()[0]})
    assert answer["status"] == "authorized"
    assert customer.field(CUSTOMER, "bot_last_verification_method") == "telegram_otp"


UNKNOWN_ANSWERS = [
    {"time": "2026-06-01 10:00:00", "status": 7},  # an answer nobody can read
    {"error": "Message not found", "code": 404},  # GreenSMS lost track of a fresh send
]


@pytest.mark.parametrize("answer", UNKNOWN_ANSWERS)
def test_unknown_status_goes_by_sms_but_skips_no_cooldown(app, client, customer, answer):
    """Still unknown at the fallback time: the worker waits for the resend cooldown (no
    SMS yet, a resend is refused too), then sends by the next route, SMS, once; the
    cooldown starts again with it."""
    session_id = start(client)["sessionId"]
    customer.fail["status"] = (200, answer)
    before = metrics.DELIVERIES.labels("telegram", "unknown")._value.get()
    later(app, 30)
    assert worker(app, "--once") == "waiting=1"  # the 60 s cooldown still runs
    assert routes(customer) == ["telegram"]
    refused = post(client, "/auth/resend", {**TG, "sessionId": session_id})
    assert (refused["status"], refused["errorCode"]) == ("error", "resend_too_early")
    assert routes(customer) == ["telegram"]
    later(app, 100)
    end_cooldowns(app)
    assert worker(app, "--once") == "sms=1"
    assert routes(customer) == ["telegram", "sms"]
    assert metrics.DELIVERIES.labels("telegram", "unknown")._value.get() == before + 1
    refused = post(client, "/auth/resend", {**TG, "sessionId": session_id})
    assert (refused["status"], refused["errorCode"]) == ("error", "resend_too_early")
    later(app, 200)
    assert worker(app, "--once") == "no sends were due"  # SMS is the last route
    assert routes(customer) == ["telegram", "sms"]
    checked = post(client, "/auth/check", {**TG, "sessionId": session_id,
                                           "code": customer.codes_sent()[-1]})
    assert checked["status"] == "authorized"
    assert customer.field(CUSTOMER, "bot_last_verification_method") == "sms_otp"


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize("answer", UNKNOWN_ANSWERS)
def test_unknown_status_waits_for_the_fallback_time_then_moves_once(app, client, customer,
                                                                    answer):
    """Unknown before DELIVERY_FALLBACK_AFTER_SECONDS: watched on; at it (no cooldown to
    wait for), one SMS, and no second one however long it stays unknown."""
    start(client)
    customer.fail["status"] = (200, answer)
    later(app, 10)
    assert worker(app, "--once") == "waiting=1"
    assert routes(customer) == ["telegram"]
    later(app, 30)
    assert worker(app, "--once") == "sms=1"
    later(app, 90)
    assert worker(app, "--once") == "no sends were due"
    assert routes(customer) == ["telegram", "sms"]


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
def test_a_delivered_send_never_moves(app, client, customer):
    start(client)
    pin_status(customer, "Delivery success")
    for seconds in (10, 30, 100):
        later(app, seconds)
        worker(app, "--once")
    assert routes(customer) == ["telegram"]


def test_used_session_gets_nothing(app, client, customer):
    session_id = start(client)["sessionId"]
    pin_status(customer, "Delivery failure")
    post(client, "/auth/check", {**TG, "sessionId": session_id,
                                 "code": customer.codes_sent()[0]})
    later(app, 10)
    assert worker(app, "--once") == "closed=1"
    assert routes(customer) == ["telegram"]
    assert len(customer.state.status_calls) == 1  # read once, for the outcome counts


def test_sms_sends_are_not_watched(app, client, customer):
    start(client, deliveryRoute="sms")
    later(app, 60)
    assert worker(app, "--once") == "no sends were due"
    assert customer.state.status_calls == []


def test_a_resend_supersedes_the_watched_send(app, client, customer):
    session_id = start(client)["sessionId"]
    pin_status(customer, "Delivery failure")
    later(app, 61)
    post(client, "/auth/resend", {**TG, "sessionId": session_id})
    assert routes(customer) == ["telegram", "sms"]
    later(app, 100)
    assert worker(app, "--once") == "superseded=1"  # the resend took the fallback
    assert routes(customer) == ["telegram", "sms"]


@pytest.mark.parametrize("env_overrides", [{"OTP_MAX_SENDS": "1"},
                                           {"OTP_DAILY_SEND_BUDGET": "1"}])
def test_session_cap_and_daily_budget_are_respected(app, client, customer):
    start(client)
    pin_status(customer, "Delivery failure")
    later(app, 10)
    assert worker(app, "--once") == "refused=1"
    assert routes(customer) == ["telegram"]


@pytest.mark.parametrize("env_overrides", [{"OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "3"}])
def test_phone_hourly_cap_is_respected(app, client, customer):
    start(client, account="1")
    start(client, account="2")  # the same phone from another account: two sends this hour
    pin_status(customer, "Delivery failure", 0)
    pin_status(customer, "Delivery failure", 1)
    later(app, 10)
    assert worker(app, "--once") == "refused=1 sms=1"
    assert routes(customer) == ["telegram", "telegram", "sms"]


@pytest.mark.parametrize("env_overrides", [{"OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "0"}])
def test_two_workers_send_one_sms_per_session_never_two(app, client, customer):
    """Many sessions due at once, two workers passing over them at the same moment,
    several times: each undelivered send gets exactly one SMS."""
    sessions = [start(client, account=str(1000 + i))["sessionId"] for i in range(4)]
    for index in range(4):
        pin_status(customer, "Delivery failure", index)
    later(app, 10)
    svc = app.extensions["gurugrow"]
    results = run_concurrently(2, lambda: run_worker(svc, max_seconds=0.5))
    assert sum(r.get("sms", 0) for r in results) == 4
    assert routes(customer) == ["telegram"] * 4 + ["sms"] * 4
    assert len(set(sessions)) == 4


def test_bounded_run_stops_on_time_and_on_stop(app):
    svc = app.extensions["gurugrow"]
    started = time.monotonic()
    run_worker(svc, max_seconds=0.3)
    assert 0.3 <= time.monotonic() - started < 3
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    assert run_worker(svc, stop=stop) == {}
    assert time.monotonic() - started < 1


def test_delivery_settings_defaults_and_bad_values():
    settings = Settings.load(TEST_ENV)
    assert (settings.delivery_fallback_after_seconds, settings.delivery_check_interval_seconds,
            settings.delivery_worker_poll_seconds, settings.delivery_worker_batch) == (
        30, 10, 1.0, 50)
    for name, bad in (("DELIVERY_FALLBACK_AFTER_SECONDS", "0"),
                      ("DELIVERY_CHECK_INTERVAL_SECONDS", "soon"),
                      ("DELIVERY_WORKER_POLL_SECONDS", "0"), ("DELIVERY_WORKER_BATCH", "0")):
        with pytest.raises(ConfigError, match=name):
            Settings.load({**TEST_ENV, name: bad})


def test_a_check_claimed_by_a_worker_that_died_is_taken_again_after_the_lease(
        app, client, customer):
    session_id = start(client)["sessionId"]
    pin_status(customer, "Delivery failure")
    svc = app.extensions["gurugrow"]
    now = time.time() + 10
    later(app, 10)
    request_id = customer.sent[0]["request_id"]
    lease = claim_lease_seconds(svc)
    assert svc.deliveries.claim_check(session_id, request_id, now, now + lease)  # then dies
    assert worker(app, "--once") == "no sends were due"
    later(app, 10 + lease + 1)
    assert worker(app, "--once") == "sms=1"
    assert routes(customer) == ["telegram", "sms"]


def test_each_claim_leases_from_its_own_moment_not_the_pass_start(app, client, customer,
                                                                  monkeypatch):
    """A pass whose first checks are slow must not hand out the later ones with a lease
    already lapsed (another worker would take and run them at the same time)."""
    from gurugrow.flows import auto_fallback

    for account in ("111", "222", "333"):
        start(client, account=account)
    later(app, 10)
    svc = app.extensions["gurugrow"]
    leases: list[tuple[float, float]] = []
    claim = svc.deliveries.claim_check

    def recording_claim(session_id, request_id, now, lease_until):
        leases.append((svc.clock(), lease_until))
        return claim(session_id, request_id, now, lease_until)

    def slow_check(svc_, session_id, request_id):
        svc_.clock.set(svc_.clock() + 60)  # a check that took a minute of GreenSMS timeouts
        return "waiting"

    monkeypatch.setattr(svc.deliveries, "claim_check", recording_claim)
    monkeypatch.setattr(auto_fallback, "check_send", slow_check)
    assert auto_fallback.check_due_sends(svc) == {"waiting": 3}
    assert [until - claimed_at for claimed_at, until in leases] == [
        claim_lease_seconds(svc)] * 3



class Killed(BaseException):
    """The worker process dies here: nothing after this point runs, no cleanup either."""


def _die(*args, **kwargs):
    raise Killed


def test_a_worker_killed_between_claiming_a_fallback_and_sending_it(app, client, customer,
                                                                     monkeypatch):
    """The claim outlives its worker only for one lease; the next pass sends the SMS,
    once."""
    from gurugrow.flows import auto_fallback

    session_id = start(client)["sessionId"]
    pin_status(customer, "Delivery failure")
    svc = app.extensions["gurugrow"]
    lease = claim_lease_seconds(svc)
    later(app, 10)
    with monkeypatch.context() as m:
        m.setattr(auto_fallback, "reissue_code", _die)
        m.setattr(auto_fallback, "give_back_fallback", lambda *args: None)  # it is dead
        with pytest.raises(Killed):
            auto_fallback.check_due_sends(svc)
    assert routes(customer) == ["telegram"]
    assert svc.deliveries.load(session_id).state == "fallen_back"
    later(app, 11)
    assert worker(app, "--once") == "no sends were due"  # still its lease
    later(app, 10 + lease + 1)
    assert worker(app, "--once") == "sms=1"
    later(app, 10 + 2 * lease + 2)
    assert worker(app, "--once") == "no sends were due"
    assert routes(customer) == ["telegram", "sms"]
    answer = post(client, "/auth/check", {**TG, "sessionId": session_id,
                                          "code": customer.codes_sent()[-1]})
    assert answer["status"] == "authorized"


def test_a_failing_send_puts_the_check_back_to_watching(app, client, customer, monkeypatch):
    from gurugrow.basics.errors import StorageUnavailable
    from gurugrow.flows import auto_fallback

    session_id = start(client)["sessionId"]
    pin_status(customer, "Delivery failure")
    svc = app.extensions["gurugrow"]
    lease = claim_lease_seconds(svc)
    later(app, 10)

    def redis_went_away(*args, **kwargs):
        raise StorageUnavailable("connection refused")

    with monkeypatch.context() as m:
        m.setattr(auto_fallback, "reissue_code", redis_went_away)
        assert worker(app, "--once") == "error=1"
    assert svc.deliveries.load(session_id).state == "watching"
    later(app, 10 + lease + 1)
    assert worker(app, "--once") == "sms=1"
    assert routes(customer) == ["telegram", "sms"]


def test_a_resend_while_a_worker_holds_the_fallback_waits_its_cooldown(app, client, customer,
                                                                      monkeypatch):
    from gurugrow.flows import auto_fallback

    session_id = start(client)["sessionId"]
    pin_status(customer, "Delivery failure")
    svc = app.extensions["gurugrow"]
    later(app, 10)
    with monkeypatch.context() as m:
        m.setattr(auto_fallback, "reissue_code", _die)
        m.setattr(auto_fallback, "give_back_fallback", lambda *args: None)
        with pytest.raises(Killed):
            auto_fallback.check_due_sends(svc)
    answer = post(client, "/auth/resend", {**TG, "sessionId": session_id})
    assert (answer["status"], answer["errorCode"]) == ("error", "resend_too_early")
    assert routes(customer) == ["telegram"]
