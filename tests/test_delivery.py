"""Delivery tracking through HTTP: deliveryRoute, smart /auth/resend (delivered, failed,
late and unreadable messenger sends), the recorded verification method, against the
GreenSMS stand-in."""

from __future__ import annotations

import time

import pytest

from gurugrow.stores import keys as redis_keys
from tests.helpers import BODY_KINDS, TG, post, redis_of, set_clock
from tests.test_metrics import scrape, value

PHONE = "+7 999 123-45-67"
CUSTOMER = 7


@pytest.fixture
def customer(upstreams):
    upstreams.add_customer(CUSTOMER, PHONE)
    return upstreams


def start(client, kind="form", **extra):
    return post(client, "/auth/start", {**TG, "phone": PHONE, "deliveryRoute": "telegram",
                                        **extra}, kind)


def resend(client, session_id, kind="form", **extra):
    return post(client, "/auth/resend", {"sessionId": session_id, "channelType": "telegram",
                                         "messengerUserId": TG["messengerUserId"], **extra},
                kind)


def check(client, session_id, code, kind="form"):
    return post(client, "/auth/check", {**TG, "sessionId": session_id, "code": code}, kind)


def pin_status(upstreams, word: str, index: int = -1) -> None:
    """GreenSMS answers ``word`` for the status of a send (default: the latest)."""
    upstreams.state.delivery_statuses[upstreams.sent[index]["request_id"]] = word


def later(app, seconds: float) -> None:
    set_clock(app, time.time() + seconds)


def end_cooldowns(app) -> None:
    """Every resend cooldown ends now (Redis times it by its own clock, which ``later``
    does not move)."""
    svc = app.extensions["gurugrow"]
    pattern = redis_keys.otp_cooldown(svc.settings.redis_prefix, "*", "*", "*")
    keys = list(redis_of(svc).scan_iter(match=pattern))
    assert keys, "no cooldown was running"
    redis_of(svc).delete(*keys)


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_start_answers_the_route_that_took_the_code(client, customer, kind):
    assert start(client, kind)["deliveryRoute"] == "telegram"
    assert start(client, kind, phone="79990000099")["deliveryRoute"] == "telegram"  # decoy
    assert [m["route"] for m in customer.sent] == ["telegram"]


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_delivered_messenger_send_resend_keeps_the_asked_route(client, customer, kind):
    session_id = start(client, kind)["sessionId"]
    pin_status(customer, "Delivery success")
    answer = resend(client, session_id, kind)
    assert (answer["status"], answer["deliveryRoute"]) == ("sent", "telegram")
    assert [m["route"] for m in customer.sent] == ["telegram", "telegram"]
    assert customer.state.status_calls == [customer.sent[0]["request_id"]]


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_failed_messenger_send_resend_goes_by_sms_at_once(client, customer, kind):
    """Failed: the new code goes by SMS although Telegram is asked, and without waiting
    for the cooldown (the customer got nothing); the cooldown then starts again."""
    session_id = start(client, kind)["sessionId"]
    pin_status(customer, "Delivery failure")
    answer = resend(client, session_id, kind, deliveryRoute="telegram")
    assert (answer["status"], answer["deliveryRoute"]) == ("sent", "sms")
    assert answer["retryAfterSec"] == 60
    assert [m["route"] for m in customer.sent] == ["telegram", "sms"]
    again = resend(client, session_id, kind)
    assert (again["status"], again["errorCode"]) == ("error", "resend_too_early")
    assert len(customer.sent) == 2


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_late_messenger_send_waits_until_the_fallback_time(app, client, customer, kind):
    """Still pending: within DELIVERY_FALLBACK_AFTER_SECONDS the asked route is kept;
    past it, the code goes by SMS."""
    session_id = start(client, kind)["sessionId"]
    pin_status(customer, "Delivery accepted")
    later(app, 10)
    early = resend(client, session_id, kind)
    assert early["deliveryRoute"] == "telegram"
    pin_status(customer, "Delivery accepted")
    later(app, 10 + 31)
    late = resend(client, session_id, kind)
    assert late["deliveryRoute"] == "sms"
    assert [m["route"] for m in customer.sent] == ["telegram", "telegram", "sms"]


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_unreadable_status_counts_as_not_delivered_once_the_fallback_time_has_come(
        app, client, customer, kind):
    """GreenSMS cannot say (an error page): within DELIVERY_FALLBACK_AFTER_SECONDS the
    asked route is kept, as for a pending send (GreenSMS answers ``Message not found``
    for some fresh sends); past it the resend goes by the workflow's next route, SMS,
    counted once as a send given up unread."""
    before = scrape(client)
    session_id = start(client, kind)["sessionId"]
    customer.fail["status"] = (500, "<html>Internal</html>")
    assert resend(client, session_id, kind)["deliveryRoute"] == "telegram"
    later(app, 31)
    answer = resend(client, session_id, kind)
    assert (answer["status"], answer["deliveryRoute"]) == ("sent", "sms")
    assert [m["route"] for m in customer.sent] == ["telegram", "telegram", "sms"]
    after = scrape(client)
    for name, labels in (("gurugrow_deliveries_total",
                          {"route": "telegram", "outcome": "unknown"}),
                         ("gurugrow_sms_fallbacks_total", {"from_route": "telegram"})):
        assert value(after, name, **labels) - value(before, name, **labels) == 1


# What GreenSMS answers for the status of a Telegram send → the next resend, at once
# (before the cooldown), past DELIVERY_FALLBACK_AFTER_SECONDS (30 s) within the 60 s
# cooldown, and past both: the route it takes, or the refusal it gets.
STATUS_ANSWERS = {
    "failure": (200, {"time": "2026-06-01 10:00:00", "status": "Delivery failure",
                      "status_code": 2}),
    "read": (200, {"time": "2026-06-01 10:00:00", "status": "Message read", "status_code": 3}),
    "success": (200, {"time": "2026-06-01 10:00:00", "status": "Delivery success",
                      "status_code": 1}),
    "accepted": (200, {"time": "2026-06-01 10:00:00", "status": "Delivery accepted",
                       "status_code": 8}),
    "not_found": (200, {"error": "Message not found", "code": 404}),
    "unmapped": (200, {"time": "2026-06-01 10:00:00", "status": "Something new"}),
}


@pytest.mark.parametrize(("answer", "at_once"), [
    ("failure", "sms"), ("read", "resend_too_early"), ("success", "resend_too_early"),
    ("accepted", "resend_too_early"), ("not_found", "resend_too_early"),
    ("unmapped", "resend_too_early"),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_only_a_failure_skips_the_cooldown(client, customer, kind, answer, at_once):
    """A resend at once goes by SMS only for ``Delivery failure``; any other answer, and
    one nobody can read (``Message not found``), keeps the cooldown."""
    customer.fail["status"] = STATUS_ANSWERS[answer]
    session_id = start(client, kind)["sessionId"]
    now = resend(client, session_id, kind)
    assert (now["deliveryRoute"] if now["status"] == "sent" else now["errorCode"]) == at_once
    assert [m["route"] for m in customer.sent] == (
        ["telegram", "sms"] if at_once == "sms" else ["telegram"])


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize(("answer", "past_fallback"), [
    ("failure", "sms"), ("read", "telegram"), ("success", "telegram"),
    ("accepted", "sms"), ("not_found", "sms"), ("unmapped", "sms"),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_past_the_fallback_time_all_but_a_delivered_send_goes_by_sms(app, client, customer,
                                                                     kind, answer,
                                                                     past_fallback):
    """Past DELIVERY_FALLBACK_AFTER_SECONDS: read or delivered stays on Telegram; failed,
    still accepted (pending) and unreadable (``unknown``) go by the next route, SMS."""
    customer.fail["status"] = STATUS_ANSWERS[answer]
    session_id = start(client, kind)["sessionId"]
    later(app, 31)
    then = resend(client, session_id, kind)
    assert (then["status"], then["deliveryRoute"]) == ("sent", past_fallback)


@pytest.mark.parametrize(("answer", "within_cooldown"), [
    ("failure", "sms"), ("accepted", "sms"), ("success", "resend_too_early"),
    ("not_found", "resend_too_early"), ("unmapped", "resend_too_early"),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_an_unreadable_status_moves_on_but_waits_for_the_cooldown(app, client, customer,
                                                                  kind, answer,
                                                                  within_cooldown):
    """Past DELIVERY_FALLBACK_AFTER_SECONDS but within the 60 s cooldown, only a send
    GreenSMS says failed or still pending goes by SMS at once; an unreadable one waits
    for the cooldown like any resend (and is not claimed meanwhile), then goes by SMS."""
    customer.fail["status"] = STATUS_ANSWERS[answer]
    session_id = start(client, kind)["sessionId"]
    later(app, 31)
    now = resend(client, session_id, kind)
    assert (now["deliveryRoute"] if now["status"] == "sent" else now["errorCode"]
            ) == within_cooldown
    if within_cooldown != "resend_too_early":
        return
    assert [m["route"] for m in customer.sent] == ["telegram"]
    later(app, 61)
    end_cooldowns(app)
    then = resend(client, session_id, kind)
    assert (then["status"], then["deliveryRoute"]) == (
        "sent", "telegram" if answer == "success" else "sms")
    assert then["retryAfterSec"] == 60
    again = resend(client, session_id, kind)  # the cooldown starts again with the SMS
    assert (again["status"], again["errorCode"]) == ("error", "resend_too_early")


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
def test_a_messenger_that_did_not_deliver_is_not_tried_again_in_the_session(client, customer):
    session_id = start(client)["sessionId"]
    pin_status(customer, "Delivery failure")
    assert resend(client, session_id)["deliveryRoute"] == "sms"
    assert resend(client, session_id, deliveryRoute="telegram")["deliveryRoute"] == "sms"
    assert [m["route"] for m in customer.sent] == ["telegram", "sms", "sms"]
    # Only the messenger send was ever asked about.
    assert customer.state.status_calls == [customer.sent[0]["request_id"]]


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
def test_resend_asked_by_sms_after_a_delivered_send(client, customer):
    session_id = start(client)["sessionId"]
    pin_status(customer, "Delivery success")
    assert resend(client, session_id, deliveryRoute="sms")["deliveryRoute"] == "sms"


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_failed_fallback_send_gives_the_cooldown_back(client, customer, kind):
    session_id = start(client, kind)["sessionId"]
    pin_status(customer, "Delivery failure")
    customer.fail["sms"] = (200, {"error": "Insufficient funds", "code": -1})
    answer = resend(client, session_id, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "delivery_failed")
    del customer.fail["sms"]
    answer = resend(client, session_id, kind)
    assert (answer["status"], answer["deliveryRoute"]) == ("sent", "sms")


def test_decoy_resend_reads_no_status_and_keeps_the_cooldown(client, upstreams):
    session_id = post(client, "/auth/start", {**TG, "phone": "79990000099"})["sessionId"]
    answer = resend(client, session_id)
    assert (answer["status"], answer["errorCode"]) == ("error", "resend_too_early")
    assert upstreams.state.status_calls == [] and upstreams.sent == []


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_verification_method_is_the_route_of_the_code_typed(client, customer, kind):
    session_id = start(client, kind)["sessionId"]
    pin_status(customer, "Delivery failure")
    resend(client, session_id, kind)
    old_code, sms_code = customer.codes_sent()
    if old_code != sms_code:  # the undelivered code is no longer valid
        assert check(client, session_id, old_code, kind)["status"] == "invalid_code"
    assert check(client, session_id, sms_code, kind)["status"] == "authorized"
    assert customer.field(CUSTOMER, "bot_last_verification_method") == "sms_otp"


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_verification_method_stays_telegram_when_telegram_delivered(client, customer, kind):
    session_id = start(client, kind)["sessionId"]
    pin_status(customer, "Delivery success")
    resend(client, session_id, kind)
    assert check(client, session_id, customer.codes_sent()[-1], kind)["status"] == "authorized"
    assert customer.field(CUSTOMER, "bot_last_verification_method") == "telegram_otp"


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
def test_metrics_count_sends_outcomes_and_time_to_delivered(client, customer):
    before = scrape(client)
    session_id = start(client)["sessionId"]
    pin_status(customer, "Delivery failure")
    resend(client, session_id)  # → sms
    other = start(client, messengerUserId="42")["sessionId"]
    pin_status(customer, "Delivery success")
    resend(client, other, messengerUserId="42")
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("gurugrow_deliveries_total", route="telegram", outcome="sent") == 3
    assert grew("gurugrow_deliveries_total", route="sms", outcome="sent") == 1
    assert grew("gurugrow_deliveries_total", route="telegram", outcome="failed") == 1
    assert grew("gurugrow_deliveries_total", route="telegram", outcome="delivered") == 1
    assert grew("gurugrow_delivery_seconds_count", route="telegram") == 1
    assert grew("gurugrow_sms_fallbacks_total", from_route="telegram") == 1
