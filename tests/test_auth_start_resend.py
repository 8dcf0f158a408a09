"""POST /auth/start and /auth/resend through HTTP, both body kinds."""

from __future__ import annotations

import pytest

from gurugrow import texts
from tests.helpers import BODY_KINDS, TG, post

START_FIELDS = {"status", "sessionId", "maskedPhone", "retryAfterSec", "errorCode", "message",
                "deliveryRoute"}
RESEND_FIELDS = {"status", "retryAfterSec", "maskedPhone", "errorCode", "message",
                 "deliveryRoute"}
PHONE = "+7 999 123-45-67"


VK = {"channelType": "vk", "messengerUserId": "vk-42", "chatExternalId": "vk-chat-42"}


def start(client, kind="form", **extra):
    return post(client, "/auth/start", {**TG, "phone": PHONE, **extra}, kind)


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_known_phone_gets_code_by_telegram(client, upstreams, kind):
    upstreams.add_customer(626518, "+7 (999) 123-45-67")
    answer = start(client, kind, deliveryRoute="telegram")
    assert set(answer) == START_FIELDS
    assert answer["status"] == "sent"
    assert answer["maskedPhone"] == "+7******4567"
    assert answer["retryAfterSec"] == 60 and answer["deliveryRoute"] == "telegram"
    assert answer["errorCode"] is None and answer["message"] is None
    assert [(m["route"], m["to"]) for m in upstreams.sent] == [("telegram", "79991234567")]
    assert upstreams.sent[0]["txt"].isdigit() and len(upstreams.sent[0]["txt"]) == 6


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_unknown_phone_gets_same_answer_and_nothing_is_sent(client, upstreams, kind):
    answer = start(client, kind)
    assert set(answer) == START_FIELDS
    assert answer["status"] == "sent" and answer["sessionId"]
    assert answer["maskedPhone"] == "+7******4567" and answer["retryAfterSec"] == 60
    assert upstreams.sent == []


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_duplicates_go_to_deduper_once(client, upstreams, kind):
    upstreams.add_customer(1, "89991234567")
    upstreams.add_customer(2, "+79991234567")
    upstreams.dedupe_answer = {"status": "resolved", "finalCustomerId": 2}
    answer = start(client, kind)
    assert answer["status"] == "sent"
    assert len(upstreams.dedupe_calls) == 1
    call = upstreams.dedupe_calls[0]
    assert {k: v for k, v in call.items() if k != "requestId"} == {
        "phone": "79991234567", "site": "test-site", "requestSource": "auth-backend",
        "waitForConfirmation": False}
    assert len(call["requestId"]) == 36
    assert len(upstreams.sent) == 1


@pytest.mark.parametrize("dedupe", [
    {"answer": {"status": "not_found", "finalCustomerId": None}},
    {"answer": {"status": "error", "finalCustomerId": 5}},
    {"answer": {"status": "resolved", "finalCustomerId": ""}},
    {"fail": (500, {"detail": "boom"})},
    {"fail": (200, "<html>gateway</html>")},
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_unresolved_duplicates_send_no_code(client, upstreams, kind, dedupe):
    upstreams.add_customer(1, "89991234567")
    upstreams.add_customer(2, "+79991234567")
    if "answer" in dedupe:
        upstreams.dedupe_answer = dedupe["answer"]
    else:
        upstreams.fail["dedupe"] = dedupe["fail"]
    answer = start(client, kind)
    assert set(answer) == START_FIELDS
    assert (answer["status"], answer["errorCode"], answer["sessionId"]) == (
        "error", "dedupe_failed", None)
    assert answer["message"]
    assert upstreams.sent == []


NO_DEDUPER = {"DEDUPE_BASE_URL": "", "DEDUPE_API_KEY": ""}


@pytest.mark.parametrize("env_overrides", [NO_DEDUPER])
@pytest.mark.parametrize(("customers", "expected"), [
    # one customer: authorized as ever; several: the contract's unresolved case (status
    # error, dedupe_failed, the manager hand-off message), no guess, no code
    ([1], ("sent", None)),
    ([1, 2], ("error", "dedupe_failed")),
    ([1, 2, 3], ("error", "dedupe_failed")),
], ids=["single", "two", "three"])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_without_a_deduper(client, upstreams, kind, customers, expected):
    for n, customer_id in enumerate(customers):
        upstreams.add_customer(customer_id, ("89991234567", "+79991234567")[n % 2])
    answer = start(client, kind)
    assert (answer["status"], answer["errorCode"]) == expected
    assert upstreams.dedupe_calls == []
    if expected[0] == "sent":
        code = upstreams.codes_sent()[0]
        checked = post(client, "/auth/check", {**TG, "sessionId": answer["sessionId"],
                                               "code": code}, kind)
        assert (checked["status"], checked["customerId"]) == ("authorized", str(customers[0]))
    else:
        assert answer["sessionId"] is None and upstreams.sent == []
        assert answer["message"] == texts.ERROR_MESSAGES["dedupe_failed"]
        assert "менеджер" in answer["message"]


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_telegram_failure_falls_back_to_sms(client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    upstreams.fail["telegram"] = (200, {"error": "Telegram is not available", "code": 2})
    answer = start(client, kind, deliveryRoute="telegram")
    assert (answer["status"], answer["deliveryRoute"]) == ("sent", "sms")
    assert [m["route"] for m in upstreams.sent] == ["sms"]
    assert upstreams.sent[0]["code"] in upstreams.sent[0]["txt"]


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_no_route_accepts_the_code(client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    upstreams.fail["vk"] = (400, {"error": "from is required", "code": 1})
    upstreams.fail["sms"] = (200, {"error": "Insufficient funds", "code": -1})
    answer = start(client, kind, **VK, deliveryRoute="vk")
    assert (answer["status"], answer["errorCode"], answer["sessionId"]) == (
        "error", "delivery_failed", None)
    # Nothing was sent, so the customer may try again at once (no cooldown taken).
    del upstreams.fail["sms"]
    assert start(client, kind, **VK, deliveryRoute="sms")["status"] == "sent"


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_route_outside_the_channels_workflow_is_refused(client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    # DELIVERY_ROUTES_TELEGRAM defaults to telegram,sms: VK is not a Telegram user's route.
    answer = start(client, kind, deliveryRoute="vk")
    assert (answer["status"], answer["errorCode"]) == ("error", "invalid_route")
    assert upstreams.sent == []


@pytest.mark.parametrize(("fields", "error_code"), [
    ({"phone": "12"}, "invalid_phone"),
    ({"phone": ""}, "invalid_phone"),
    ({"phone": "+7 999 123-45-67 ext. 1234567890123"}, "invalid_phone"),
    ({"channelType": "icq"}, "invalid_channel"),
    ({"channelType": ""}, "invalid_channel"),
    ({"messengerUserId": "", "chatExternalId": "chat-1"}, "invalid_identity"),
    ({"deliveryRoute": "pigeon"}, "invalid_route"),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_bad_input_is_refused_with_its_code(client, upstreams, kind, fields, error_code):
    answer = post(client, "/auth/start", {**TG, "phone": PHONE, **fields}, kind)
    assert set(answer) == START_FIELDS
    assert (answer["status"], answer["errorCode"]) == ("error", error_code)
    assert upstreams.sent == []


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_crm_unavailable_sends_nothing(client, upstreams, kind):
    upstreams.fail["customers"] = (503, {"success": False, "errorMsg": "Rate limit"})
    answer = start(client, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "crm_unavailable")
    assert upstreams.sent == []


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_second_start_within_cooldown_is_refused(client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    assert start(client, kind)["status"] == "sent"
    answer = start(client, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "resend_too_early")
    assert 0 < answer["retryAfterSec"] <= 60
    assert answer["maskedPhone"] == "+7******4567"
    assert len(upstreams.sent) == 1


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0",
                                            "OTP_MAX_SENDS_PER_PHONE_PER_DAY": "2"}])
def test_daily_cap_per_phone(client, upstreams):
    upstreams.add_customer(7, PHONE)
    assert start(client)["status"] == "sent"
    assert start(client, messengerUserId="other")["status"] == "sent"
    answer = start(client, messengerUserId="third")
    assert (answer["status"], answer["errorCode"]) == ("error", "rate_limited")
    assert len(upstreams.sent) == 2


# -- resend ---------------------------------------------------------------------------
def resend(client, session_id, kind="form", **extra):
    return post(client, "/auth/resend", {"sessionId": session_id, "channelType": "telegram",
                                         "messengerUserId": TG["messengerUserId"], **extra},
                kind)


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_resend_sends_a_new_code_by_the_asked_route(client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    session_id = start(client, kind)["sessionId"]
    answer = resend(client, session_id, kind, deliveryRoute="sms")
    assert set(answer) == RESEND_FIELDS
    assert (answer["status"], answer["maskedPhone"]) == ("sent", "+7******4567")
    assert [m["route"] for m in upstreams.sent] == ["telegram", "sms"]


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_resend_too_early(client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    session_id = start(client, kind)["sessionId"]
    answer = resend(client, session_id, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "resend_too_early")
    assert 0 < answer["retryAfterSec"] <= 60
    assert len(upstreams.sent) == 1


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize("fields", [
    # The contract's own example: sessionId, channelType and deliveryRoute, no identity.
    {"channelType": "telegram", "deliveryRoute": "telegram"},
    {},  # the sessionId alone is enough
    {"channelType": "telegram", "messengerUserId": "123456789"},  # the session's own
    # Several identity fields: one of them is the session's (the bot added another).
    {"customerExternalId": "cust-1", "messengerUserId": "123456789"},
    {"messengerUserId": "cust-1", "messengerAccountIdFallback": "123456789"},
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_resend_as_the_contract_shows_it(client, upstreams, kind, fields):
    upstreams.add_customer(7, PHONE)
    session_id = start(client, kind)["sessionId"]
    answer = post(client, "/auth/resend", {"sessionId": session_id, **fields}, kind)
    assert set(answer) == RESEND_FIELDS
    assert (answer["status"], answer["deliveryRoute"]) == ("sent", "telegram")
    assert len(upstreams.sent) == 2
    check = post(client, "/auth/check", {**TG, "sessionId": session_id,
                                         "code": upstreams.codes_sent()[-1]}, kind)
    assert check["status"] == "authorized"


@pytest.mark.parametrize(("fields", "error_code"), [
    ({"sessionId": "no-such-session"}, "session_not_found"),
    ({"sessionId": ""}, "session_not_found"),
    ({"channelType": "vk"}, "session_not_found"),
    ({"messengerUserId": "someone-else"}, "session_not_found"),
    ({"channelType": "vk", "messengerUserId": "123456789"}, "session_not_found"),
    ({"messengerUserId": "a", "customerExternalId": "b"}, "session_not_found"),  # none is
    ({"channelType": "icq"}, "invalid_channel"),
    ({"deliveryRoute": "fax"}, "invalid_route"),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_resend_refusals(client, upstreams, kind, fields, error_code):
    upstreams.add_customer(7, PHONE)
    session_id = start(client, kind)["sessionId"]
    answer = resend(client, session_id, kind, **fields)
    assert set(answer) == RESEND_FIELDS
    assert (answer["status"], answer["errorCode"]) == ("error", error_code)


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0",
                                            "OTP_MAX_SENDS": "2"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_resend_stops_at_max_sends(client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    session_id = start(client, kind)["sessionId"]
    assert resend(client, session_id, kind)["status"] == "sent"
    answer = resend(client, session_id, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "rate_limited")
    assert len(upstreams.sent) == 2


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_resend_for_unknown_phone_pretends(client, upstreams, kind):
    session_id = start(client, kind)["sessionId"]
    answer = resend(client, session_id, kind)
    assert answer["status"] == "sent" and answer["maskedPhone"] == "+7******4567"
    assert upstreams.sent == []


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_resend_delivery_failure(client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    session_id = start(client, kind)["sessionId"]
    upstreams.fail["telegram"] = (200, {"error": "not available", "code": 2})
    upstreams.fail["sms"] = (200, {"error": "Insufficient funds", "code": -1})
    answer = resend(client, session_id, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "delivery_failed")


@pytest.mark.parametrize("env_overrides", [{"OTP_MAX_ATTEMPTS": "1"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_resend_refused_after_too_many_attempts(client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    session_id = start(client, kind)["sessionId"]
    wrong = "000000" if upstreams.codes_sent()[0] != "000000" else "111111"
    check = post(client, "/auth/check", {**TG, "sessionId": session_id, "code": wrong}, kind)
    assert check["status"] == "too_many_attempts"
    answer = resend(client, session_id, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "too_many_attempts")


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
def test_new_start_invalidates_previous_code(client, upstreams):
    upstreams.add_customer(7, PHONE)
    first = start(client)["sessionId"]
    first_code = upstreams.codes_sent()[0]
    second = start(client)["sessionId"]
    old = post(client, "/auth/check", {**TG, "sessionId": first, "code": first_code})
    assert (old["status"], old["errorCode"]) == ("error", "session_not_found")
    new = post(client, "/auth/check", {**TG, "sessionId": second,
                                       "code": upstreams.codes_sent()[1]})
    assert new["status"] == "authorized"


@pytest.mark.parametrize(("env_overrides", "route"), [
    ({"GREENSMS_VK_FROM": ""}, "sms"),  # GreenSMS requires a VK sender: the route is off
    ({"GREENSMS_VK_FROM": "shop"}, "vk"),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_vk_codes_go_by_vk_only_with_a_sender(client, upstreams, kind, route):
    upstreams.add_customer(7, PHONE)
    answer = post(client, "/auth/start", {"channelType": "vk", "messengerUserId": "777",
                                          "phone": PHONE}, kind)
    assert (answer["status"], answer["deliveryRoute"]) == ("sent", route)
    assert [m["route"] for m in upstreams.sent] == [route]
    assert upstreams.state.send_attempts == [route]  # no VK send GreenSMS would refuse
