"""A GreenSMS send whose outcome is unknown counts as made: it keeps its admission (the
cooldown, every cap, the cost), the answer is ``sent`` and no other route is tried. Only a
send that certainly never left gives back."""

from __future__ import annotations

import time

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from gurugrow.basics.errors import SendOutcomeUnknown, UpstreamRejected, UpstreamUnavailable
from gurugrow.gateways.greensms import GreenSmsGateway
from gurugrow.stores import keys as redis_keys
from tests.helpers import BODY_KINDS, TG, post, redis_of, set_clock

SMS = "https://greensms.test"
PHONE = "+7 999 123-45-67"


def _refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, "/sms/send", reason))  # type: ignore[arg-type]


@pytest.mark.parametrize(("answer", "unknown"), [
    ({"body": requests.ReadTimeout("read timed out")}, True),
    ({"body": requests.ConnectionError(ProtocolError("Connection aborted."))}, True),
    ({"status": 502, "body": "<html>Bad Gateway</html>"}, True),
    ({"status": 200, "json": {}}, True),  # reached GreenSMS, no request_id
    ({"status": 200, "body": "{\"request_id\": "}, True),  # an answer cut short
    ({"body": requests.ConnectTimeout("connect timed out")}, False),
    ({"body": _refused()}, False),
    ({"status": 400, "body": "<html>Bad Request</html>"}, False),
    ({"status": 200, "json": {"error": "Insufficient funds", "code": -1}}, False),
    ({"status": 401, "json": {"error": "Authorization declined", "code": 0}}, False),
])
def test_the_gateway_tells_an_unknown_outcome_from_a_send_that_never_left(rsps, answer,
                                                                          unknown):
    rsps.post(f"{SMS}/sms/send", **answer)
    with pytest.raises((UpstreamUnavailable, UpstreamRejected)) as raised:
        GreenSmsGateway(SMS, token="t").send_code("sms", "79991234567", "1234", "Код 1234")
    assert isinstance(raised.value, SendOutcomeUnknown) is unknown
    assert len(rsps.calls) == 1  # a paid send is never repeated


def start(client, kind="form", **extra):
    return post(client, "/auth/start", {**TG, "phone": PHONE, **extra}, kind)


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_an_unknown_outcome_answers_sent_and_keeps_the_cooldown(app, client, upstreams,
                                                                kind):
    upstreams.add_customer(7, PHONE)
    upstreams.fail["telegram"] = (502, "<html>Bad Gateway</html>")
    answer = start(client, kind, deliveryRoute="telegram")
    assert (answer["status"], answer["deliveryRoute"]) == ("sent", "telegram")
    assert answer["sessionId"]
    assert upstreams.sent == []  # no SMS on top of a telegram message that may arrive
    # Its delivery is unknown: watched as such (no status to read), so once the cooldown
    # has passed a resend or the worker moves it to the workflow's next route.
    record = app.extensions["gurugrow"].deliveries.load(answer["sessionId"])
    assert (record.route, record.state) == ("telegram", "watching")
    # The send counts: the cooldown holds.
    again = start(client, kind)
    assert (again["status"], again["errorCode"]) == ("error", "resend_too_early")
    resent = post(client, "/auth/resend", {**TG, "sessionId": answer["sessionId"]}, kind)
    assert (resent["status"], resent["errorCode"]) == ("error", "resend_too_early")


@pytest.mark.parametrize("env_overrides", [{
    "OTP_RESEND_COOLDOWN_SECONDS": "0", "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "2"}])
def test_unknown_outcomes_count_for_the_phone_cap(client, upstreams):
    upstreams.add_customer(7, PHONE)
    upstreams.fail["sms"] = (503, "<html>Service Unavailable</html>")
    for account in ("a", "b"):
        assert start(client, messengerUserId=account, deliveryRoute="sms")["status"] == "sent"
    third = start(client, messengerUserId="c", deliveryRoute="sms")
    assert (third["status"], third["errorCode"]) == ("error", "rate_limited")


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
def test_a_send_that_never_left_gives_everything_back(client, upstreams):
    upstreams.add_customer(7, PHONE)
    upstreams.fail["telegram"] = (200, {"error": "not available", "code": 2})
    upstreams.fail["sms"] = (200, {"error": "Insufficient funds", "code": -1})
    answer = start(client, deliveryRoute="telegram")
    assert (answer["status"], answer["errorCode"]) == ("error", "delivery_failed")


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_send_of_unknown_outcome_moves_on_once_the_cooldown_has_passed(app, client,
                                                                         upstreams, kind):
    upstreams.add_customer(7, PHONE)
    upstreams.fail["telegram"] = (502, "<html>Bad Gateway</html>")
    session_id = start(client, kind, deliveryRoute="telegram")["sessionId"]
    set_clock(app, time.time() + 61)  # past the fallback time
    svc = app.extensions["gurugrow"]
    redis_of(svc).delete(*redis_of(svc).scan_iter(
        match=redis_keys.otp_cooldown(svc.settings.redis_prefix, "*", "*", "*")))
    resent = post(client, "/auth/resend", {**TG, "sessionId": session_id}, kind)
    assert (resent["status"], resent["deliveryRoute"]) == ("sent", "sms")
    assert [m["route"] for m in upstreams.sent] == ["sms"]
    assert upstreams.state.status_calls == []  # no status to ask GreenSMS for
