"""POST /auth/check, GET /auth/status and POST /auth/unlink through HTTP."""

from __future__ import annotations

import time

import pytest

from tests.helpers import BODY_KINDS, TG, get, post, set_clock

CHECK_FIELDS = {"status", "authorized", "customerId", "verifiedUntil", "maskedPhone",
                "errorCode", "message"}
STATUS_FIELDS = {"status", "customerId", "maskedPhone", "errorCode", "message"}
UNLINK_FIELDS = {"status", "customerId", "channelType", "text", "errorCode", "message"}
PHONE = "79991234567"
TG_FIELD = "bot_telegram_account_id"


def start(client, kind="form", **identity):
    answer = post(client, "/auth/start", {**TG, **identity, "phone": PHONE}, kind)
    assert answer["status"] == "sent"
    return answer["sessionId"]


def check(client, session_id, code, kind="form", **identity):
    return post(client, "/auth/check", {**TG, **identity, "sessionId": session_id,
                                        "code": code}, kind)


def wrong_code(right: str | None) -> str:
    return "000000" if right != "000000" else "111111"


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_right_code_binds_the_account(app, client, upstreams, kind):
    upstreams.add_customer(626518, "+7 (999) 123-45-67")
    set_clock(app, 1_780_000_000.0)  # 2026-05-28T20:26:40Z
    session_id = start(client, kind)
    answer = check(client, session_id, upstreams.codes_sent()[0], kind)
    assert set(answer) == CHECK_FIELDS
    assert answer == {"status": "authorized", "authorized": True, "customerId": "626518",
                      "verifiedUntil": "2026-11-24T20:26:40Z", "maskedPhone": "+7******4567",
                      "errorCode": None, "message": None}
    assert upstreams.edits == [("626518", {
        TG_FIELD: "123456789", "bot_last_verified_channel": "telegram",
        "bot_last_verified_at": "2026-05-28T20:26:40Z",
        "bot_last_verification_method": "telegram_otp", "chatbot_interacted": "true"})]
    # The code is one-time: a replay gets the same answer back, and writes nothing.
    again = check(client, session_id, upstreams.codes_sent()[0], kind)
    assert again == answer
    assert len(upstreams.edits) == 1


def test_sms_fallback_is_recorded_as_sms_otp(client, upstreams):
    upstreams.add_customer(5, PHONE)
    upstreams.fail["telegram"] = (200, {"error": "not available", "code": 2})
    session_id = start(client)
    assert check(client, session_id, upstreams.codes_sent()[0])["status"] == "authorized"
    assert upstreams.field(5, "bot_last_verification_method") == "sms_otp"


def test_whatsapp_id_stays_a_string(client, upstreams):
    upstreams.add_customer(5, PHONE)
    ident = {"channelType": "whatsapp", "messengerUserId": "",
             "customerExternalId": "79990001122"}
    session_id = start(client, **ident)
    assert check(client, session_id, upstreams.codes_sent()[0], **ident)["status"] == "authorized"
    assert upstreams.field(5, "bot_whatsapp_account_id") == "79990001122"
    assert upstreams.sent[0]["route"] == "sms"


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_deduper_choice_is_the_bound_customer(client, upstreams, kind):
    upstreams.add_customer(1, PHONE)
    upstreams.add_customer(2, "8 999 123 45 67")
    upstreams.dedupe_answer = {"status": "resolved_with_fallback_primary", "finalCustomerId": "2"}
    session_id = start(client, kind)
    answer = check(client, session_id, upstreams.codes_sent()[0], kind)
    assert (answer["status"], answer["customerId"]) == ("authorized", "2")
    assert [cid for cid, _ in upstreams.edits] == ["2"]


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_wrong_codes_then_lockout(client, upstreams, kind):
    upstreams.add_customer(5, PHONE)
    session_id = start(client, kind)
    right = upstreams.codes_sent()[0]
    for _ in range(4):
        answer = check(client, session_id, wrong_code(right), kind)
        assert set(answer) == CHECK_FIELDS
        assert (answer["status"], answer["errorCode"], answer["authorized"]) == (
            "invalid_code", "invalid_code", False)
    answer = check(client, session_id, wrong_code(right), kind)
    assert (answer["status"], answer["errorCode"]) == ("too_many_attempts", "too_many_attempts")
    # Even the right code no longer opens a locked session.
    assert check(client, session_id, right, kind)["status"] == "too_many_attempts"
    assert upstreams.edits == []


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_expired_code(app, client, upstreams, kind):
    upstreams.add_customer(5, PHONE)
    session_id = start(client, kind)
    set_clock(app, time.time() + 301)
    answer = check(client, session_id, upstreams.codes_sent()[0], kind)
    assert (answer["status"], answer["errorCode"]) == ("expired", "expired")
    assert upstreams.edits == []


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_decoy_session_never_authorizes(client, upstreams, kind):
    session_id = start(client, kind)  # unknown phone
    for code in ("123456", "000000"):
        assert check(client, session_id, code, kind)["status"] == "invalid_code"
    assert upstreams.edits == []


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_identity_bound_to_another_customer_is_conflict(client, upstreams, kind):
    upstreams.add_customer(5, PHONE)
    upstreams.add_customer(9, "79995550000", **{TG_FIELD: "123456789"})
    session_id = start(client, kind)
    answer = check(client, session_id, upstreams.codes_sent()[0], kind)
    assert set(answer) == CHECK_FIELDS
    assert (answer["status"], answer["errorCode"], answer["authorized"]) == (
        "conflict", "conflict", False)
    assert upstreams.edits == []


@pytest.mark.parametrize("failure", [
    (400, {"success": False, "errorMsg": "Customer is not loaded", "errors": ["customFields"]}),
    (503, {"success": False, "errorMsg": "Rate limit exceeded"}),
    (405, "<html><body>Not allowed</body></html>"),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_our_crm_write_failing_does_not_burn_the_code(client, upstreams, kind, failure):
    upstreams.add_customer(5, PHONE)
    session_id = start(client, kind)
    code = upstreams.codes_sent()[0]
    upstreams.fail["edit"] = failure
    answer = check(client, session_id, code, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "crm_unavailable")
    del upstreams.fail["edit"]
    assert check(client, session_id, code, kind)["status"] == "authorized"


@pytest.mark.parametrize(("fields", "error_code"), [
    ({"sessionId": "unknown"}, "session_not_found"),
    ({"messengerUserId": "someone-else"}, "session_not_found"),
    ({"channelType": "vk"}, "session_not_found"),
    ({"channelType": "fax"}, "invalid_channel"),
    ({"messengerUserId": ""}, "invalid_identity"),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_check_refusals(client, upstreams, kind, fields, error_code):
    upstreams.add_customer(5, PHONE)
    session_id = start(client, kind)
    data = {**TG, "sessionId": session_id, "code": upstreams.codes_sent()[0], **fields}
    answer = post(client, "/auth/check", data, kind)
    assert set(answer) == CHECK_FIELDS
    assert (answer["status"], answer["errorCode"], answer["authorized"]) == (
        "error", error_code, False)
    assert upstreams.edits == []


@pytest.mark.parametrize("code", ["", "1" * 40, "12ab56", "   "])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_malformed_or_empty_code_answers_status_invalid_code(client, upstreams, kind, code):
    upstreams.add_customer(5, PHONE)
    session_id = start(client, kind)
    data = {**TG, "sessionId": session_id, "code": code}
    answer = post(client, "/auth/check", data, kind)
    assert (answer["status"], answer["errorCode"], answer["authorized"]) == (
        "invalid_code", "invalid_code", False)
    assert answer["message"] == "Код неверный. Проверьте его и попробуйте ещё раз."
    assert upstreams.edits == []


# -- status ---------------------------------------------------------------------------
STATUS_QUERY = {"channelType": "telegram", "chatExternalId": "chat-1",
                "customerExternalId": "cust-1", "messengerUserId": "123456789"}


@pytest.mark.parametrize(("bound", "query", "expected"), [
    ([], {}, ("not_authorized", None, "not_authorized")),
    ([626518], {}, ("authorized", "626518", None)),
    ([626518], {"customerId": "626518"}, ("authorized", "626518", None)),
    ([626518], {"customerId": "1"}, ("conflict", None, "customer_mismatch")),
    ([1, 2], {}, ("conflict", None, "conflict")),
])
def test_status(client, upstreams, bound, query, expected):
    for cid in bound:
        upstreams.add_customer(cid, "+7 999 123-45-67", **{TG_FIELD: "123456789"})
    upstreams.add_customer(77, "+7 999 000-00-00", **{TG_FIELD: "cust-1"})  # lower priority id
    answer = get(client, "/auth/status", {**STATUS_QUERY, **query})
    assert set(answer) == STATUS_FIELDS
    assert (answer["status"], answer["customerId"], answer["errorCode"]) == expected
    if answer["status"] == "authorized":
        assert answer["maskedPhone"] == "+7******4567"


@pytest.mark.parametrize(("query", "error_code"), [
    ({"channelType": "icq"}, "invalid_channel"),
    ({"messengerUserId": "", "customerExternalId": ""}, "invalid_identity"),
])
def test_status_bad_input(client, upstreams, query, error_code):
    answer = get(client, "/auth/status", {**STATUS_QUERY, **query})
    assert (answer["status"], answer["errorCode"]) == ("error", error_code)


@pytest.mark.parametrize("failure", [
    (503, {"success": False, "errorMsg": "Rate limit"}),
    (200, "{not json"),
    (403, {"success": False, "errorMsg": "Wrong \"apiKey\" value."}),
])
def test_status_when_crm_fails(client, upstreams, failure):
    upstreams.fail["customers"] = failure
    answer = get(client, "/auth/status", STATUS_QUERY)
    assert (answer["status"], answer["errorCode"]) == ("error", "crm_unavailable")
    assert answer["message"]


def test_status_uses_the_identity_fields_in_order(client, upstreams):
    upstreams.add_customer(3, PHONE, **{TG_FIELD: "fallback-id"})
    query = {"channelType": "Telegram", "messengerAccountIdFallback": "fallback-id",
             "chatExternalId": "123456789"}
    assert get(client, "/auth/status", query)["customerId"] == "3"


# -- unlink ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_unlink_clears_only_the_channel_field(client, upstreams, kind):
    upstreams.add_customer(626518, PHONE, **{
        TG_FIELD: "123456789", "bot_vk_account_id": "55", "bot_last_verified_channel": "telegram"})
    answer = post(client, "/auth/unlink", {**TG, "customerId": "626518"}, kind)
    assert answer == {
        "status": "unlinked", "customerId": "626518", "channelType": "telegram",
        "text": "Учётная запись отвязана. Для входа в защищённые разделы потребуется снова "
                "подтвердить номер телефона.",
        "errorCode": None, "message": None}
    assert upstreams.edits == [("626518", {TG_FIELD: ""})]
    assert upstreams.field(626518, "bot_vk_account_id") == "55"
    assert upstreams.field(626518, "bot_last_verified_channel") == "telegram"
    assert get(client, "/auth/status", TG)["status"] == "not_authorized"


@pytest.mark.parametrize(("bound", "fields", "expected"), [
    ([], {}, ("not_authorized", "not_authorized")),
    ([1, 2], {}, ("conflict", "conflict")),
    ([1], {"customerId": "2"}, ("conflict", "customer_mismatch")),
    ([1], {"channelType": "sms"}, ("error", "invalid_channel")),
    ([1], {"messengerUserId": ""}, ("error", "invalid_identity")),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_unlink_refusals(client, upstreams, kind, bound, fields, expected):
    for cid in bound:
        upstreams.add_customer(cid, PHONE, **{TG_FIELD: "123456789"})
    answer = post(client, "/auth/unlink", {**TG, **fields}, kind)
    assert set(answer) == UNLINK_FIELDS
    assert (answer["status"], answer["errorCode"]) == expected
    assert upstreams.edits == []


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_unlink_crm_error(client, upstreams, kind):
    upstreams.add_customer(1, PHONE, **{TG_FIELD: "123456789"})
    upstreams.fail["edit"] = (500, "<html>oops</html>")
    answer = post(client, "/auth/unlink", TG, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "crm_unavailable")
