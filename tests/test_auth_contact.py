"""POST /auth/contact through HTTP: a contact the messenger verified binds without a code."""

from __future__ import annotations

import pytest

from gurugrow.basics.errors import StorageUnavailable
from tests.helpers import BODY_KINDS, post, run_concurrently, set_clock

CONTACT_FIELDS = {"status", "authorized", "customerId", "verifiedUntil", "maskedPhone",
                  "errorCode", "message"}
PHONE = "79991234567"
TG_ID = "123456789"
TG_FIELD = "bot_telegram_account_id"
TG_CONTACT = {"channelType": "telegram", "messengerUserId": TG_ID, "chatExternalId": "chat-1",
              "phone": "+7 999 123-45-67", "contactUserId": TG_ID}
CONTACTS_ON = {"CONTACT_VERIFIED_CHANNELS": "telegram,max"}


def share(client, kind="form", **fields):
    return post(client, "/auth/contact", {**TG_CONTACT, **fields}, kind)


@pytest.mark.parametrize("env_overrides", [CONTACTS_ON])
@pytest.mark.parametrize(("channel", "field", "method"), [
    ("telegram", TG_FIELD, "telegram_contact"),
    ("max", "bot_max_account_id", "max_contact"),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_own_contact_binds_the_customer(app, client, upstreams, kind, channel, field, method):
    upstreams.add_customer(626518, "+7 (999) 123-45-67")
    set_clock(app, 1_780_000_000.0)  # 2026-05-28T20:26:40Z
    answer = share(client, kind, channelType=channel)
    assert set(answer) == CONTACT_FIELDS
    assert answer == {"status": "authorized", "authorized": True, "customerId": "626518",
                      "verifiedUntil": "2026-11-24T20:26:40Z", "maskedPhone": "+7******4567",
                      "errorCode": None, "message": None}
    assert upstreams.edits == [("626518", {
        field: TG_ID, "bot_last_verified_channel": channel,
        "bot_last_verified_at": "2026-05-28T20:26:40Z",
        "bot_last_verification_method": method, "chatbot_interacted": "true"})]
    assert upstreams.sent == []  # no code, nothing paid
    # The binding is the one /auth/status and /orders read.
    status = client.get("/auth/status", query_string={"channelType": channel,
                                                      "messengerUserId": TG_ID}).get_json()
    assert (status["status"], status["customerId"]) == ("authorized", "626518")


@pytest.mark.parametrize("env_overrides", [CONTACTS_ON])
@pytest.mark.parametrize(("fields", "error_code"), [
    ({"contactUserId": "987654321"}, "contact_not_own"),  # another user's contact
    ({"contactUserId": ""}, "contact_not_own"),  # a contact that carries no user id
    ({"contactUserId": " 123456789x"}, "contact_not_own"),
    ({"messengerUserId": "987654321"}, "contact_not_own"),
    ({"phone": "12"}, "invalid_phone"),
    ({"channelType": "fax"}, "invalid_channel"),
    ({"messengerUserId": ""}, "invalid_identity"),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_refusals_write_nothing(client, upstreams, kind, fields, error_code):
    upstreams.add_customer(5, PHONE)
    answer = share(client, kind, **fields)
    assert set(answer) == CONTACT_FIELDS
    assert (answer["status"], answer["errorCode"], answer["authorized"]) == (
        "error", error_code, False)
    assert answer["message"]
    assert upstreams.crm_calls() == []  # refused before any lookup, nothing written


@pytest.mark.parametrize(("env_overrides", "channel"), [
    ({}, "telegram"),  # the setting off (the default): the endpoint refuses
    ({}, "max"),
    ({"CONTACT_VERIFIED_CHANNELS": "max"}, "telegram"),  # a channel not listed
    (CONTACTS_ON, "vk"),
    (CONTACTS_ON, "whatsapp"),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_channel_not_listed_is_refused(client, upstreams, kind, channel):
    upstreams.add_customer(5, PHONE)
    answer = share(client, kind, channelType=channel)
    assert (answer["status"], answer["errorCode"], answer["authorized"]) == (
        "error", "contact_channel_not_allowed", False)
    assert upstreams.crm_calls() == []


@pytest.mark.parametrize("env_overrides", [CONTACTS_ON])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_unknown_phone_is_not_found(client, upstreams, kind):
    upstreams.add_customer(5, "79990000000")
    answer = share(client, kind)
    assert set(answer) == CONTACT_FIELDS
    assert (answer["status"], answer["errorCode"], answer["authorized"], answer["customerId"]) == (
        "not_found", "customer_not_found", False, None)
    assert answer["maskedPhone"] == "+7******4567"
    assert "набор" in answer["message"]  # the bot can offer the recommended set
    assert upstreams.edits == []


@pytest.mark.parametrize("env_overrides", [CONTACTS_ON])
@pytest.mark.parametrize(("dedupe", "expected"), [
    ({"status": "resolved", "finalCustomerId": "2"}, ("authorized", None, "2")),
    ({"status": "needs_manual_review", "finalCustomerId": None},
     ("error", "dedupe_failed", None)),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_duplicates_go_through_the_deduper(client, upstreams, kind, dedupe, expected):
    upstreams.add_customer(1, PHONE)
    upstreams.add_customer(2, "8 999 123 45 67")
    upstreams.dedupe_answer = dedupe
    answer = share(client, kind)
    assert (answer["status"], answer["errorCode"], answer["customerId"]) == expected
    assert len(upstreams.dedupe_calls) == 1
    assert [cid for cid, _ in upstreams.edits] == ([expected[2]] if expected[2] else [])


@pytest.mark.parametrize("env_overrides", [CONTACTS_ON])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_account_bound_to_another_customer_is_conflict(client, upstreams, kind):
    upstreams.add_customer(5, PHONE)
    upstreams.add_customer(9, "79995550000", **{TG_FIELD: TG_ID})
    answer = share(client, kind)
    assert (answer["status"], answer["errorCode"], answer["authorized"]) == (
        "conflict", "conflict", False)
    assert upstreams.edits == []


@pytest.mark.parametrize("env_overrides", [CONTACTS_ON])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_replay_gives_the_same_answer_and_writes_once(app, client, upstreams, kind):
    upstreams.add_customer(5, PHONE)
    first = share(client, kind)
    assert first["status"] == "authorized"
    set_clock(app, app.extensions["gurugrow"].clock() + 60)  # a bot's retry a minute later
    assert share(client, kind) == first
    assert share(client, "json" if kind == "form" else "form") == first
    assert len(upstreams.edits) == 1


@pytest.mark.parametrize("env_overrides", [CONTACTS_ON])
def test_a_double_tap_binds_once(client, upstreams):
    upstreams.add_customer(5, PHONE)
    answers = run_concurrently(4, lambda: share(client))
    assert [a["status"] for a in answers] == ["authorized"] * 4
    assert len({a["verifiedUntil"] for a in answers}) == 1
    assert len(upstreams.edits) == 1


@pytest.mark.parametrize("env_overrides", [CONTACTS_ON])
def test_shared_again_after_unlink_binds_again(client, upstreams):
    upstreams.add_customer(5, PHONE)
    assert share(client)["status"] == "authorized"
    unlinked = post(client, "/auth/unlink", {"channelType": "telegram", "messengerUserId": TG_ID})
    assert unlinked["status"] == "unlinked"
    assert not upstreams.field(5, TG_FIELD)  # cleared
    assert share(client)["status"] == "authorized"
    assert upstreams.field(5, TG_FIELD) == TG_ID


@pytest.mark.parametrize("env_overrides", [CONTACTS_ON])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_crm_failing_is_crm_unavailable_and_can_be_tried_again(client, upstreams, kind):
    upstreams.add_customer(5, PHONE)
    upstreams.fail["edit"] = (503, {"success": False, "errorMsg": "Rate limit exceeded"})
    answer = share(client, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "crm_unavailable")
    del upstreams.fail["edit"]
    assert share(client, kind)["status"] == "authorized"


@pytest.mark.parametrize("env_overrides", [{**CONTACTS_ON, "OTP_RESEND_COOLDOWN_SECONDS": "0",
                                            "OTP_MAX_SENDS_PER_ACCOUNT_PER_HOUR": "2"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_per_account_limit_applies_as_for_sends(client, upstreams, kind):
    # Unknown phones: each share is a new request (not a replay) and takes the counter.
    answers = [share(client, kind, phone=f"7999000000{n}") for n in range(3)]
    assert [a["status"] for a in answers] == ["not_found", "not_found", "error"]
    assert answers[2]["errorCode"] == "rate_limited"
    # The same counter as for sends: this account's codes are refused too.
    start = post(client, "/auth/start", {"channelType": "telegram", "messengerUserId": TG_ID,
                                         "phone": PHONE}, kind)
    assert (start["status"], start["errorCode"]) == ("error", "rate_limited")


@pytest.mark.parametrize("env_overrides", [{**CONTACTS_ON, "TRUSTED_PROXIES": "127.0.0.1",
                                            "OTP_MAX_SENDS_PER_IP_PER_HOUR": "1",
    "OTP_MAX_SENDS_PER_IP_PER_HOUR_TOKEN_CALLERS": "1"}])
def test_per_address_limit_applies_as_for_sends(client, upstreams):
    def from_client(address, user):
        return client.post("/auth/contact", data={**TG_CONTACT, "messengerUserId": user,
                                                  "contactUserId": user},
                           headers={"X-Forwarded-For": address}).get_json()

    assert from_client("203.0.113.5", "u1")["status"] == "not_found"
    refused = from_client("203.0.113.5", "u2")
    assert (refused["status"], refused["errorCode"]) == ("error", "rate_limited")
    assert from_client("203.0.113.6", "u3")["status"] == "not_found"


@pytest.mark.parametrize("env_overrides", [CONTACTS_ON])
def test_a_replay_while_the_first_still_binds_for_long_is_in_progress(client, upstreams):
    """The first request's RetailCRM write hangs longer than a replay waits for it (10 s):
    the replay answers in_progress, the first one binds, once."""
    upstreams.add_customer(5, PHONE)
    upstreams.state.delay["edit"] = 12.0
    answers = run_concurrently(2, lambda: share(client, "json"))
    assert sorted((a["status"], a["errorCode"]) for a in answers) == [
        ("authorized", None), ("error", "in_progress")]
    assert len(upstreams.edits) == 1


@pytest.mark.parametrize("env_overrides", [{**CONTACTS_ON,
                                            "OTP_MAX_SENDS_PER_ACCOUNT_PER_HOUR": "1"}])
@pytest.mark.parametrize("failing", ["edit", "redis"])
def test_a_binding_that_fails_gives_the_counters_back(client, upstreams, failing, monkeypatch):
    """An outage while binding (RetailCRM's edit, or Redis when the binding is kept) costs
    the caller none of the account's allowance: the next share, once it is over, binds."""
    from gurugrow.stores.client import WriteBatch

    upstreams.add_customer(5, PHONE)
    if failing == "edit":
        upstreams.fail["edit"] = (503, {"success": False, "errorMsg": "Rate limit exceeded"})
        expected = "crm_unavailable"
    else:
        def down(self):
            raise StorageUnavailable("ConnectionError")
        monkeypatch.setattr(WriteBatch, "send", down)
        expected = "storage_unavailable"
    assert share(client)["errorCode"] == expected
    upstreams.fail.pop("edit", None)
    monkeypatch.undo()
    assert share(client)["status"] == "authorized"


@pytest.mark.parametrize("env_overrides", [CONTACTS_ON])
@pytest.mark.parametrize(("fields", "status"), [
    # The contact's user id is one of the sender's identity fields, not the first one.
    ({"messengerUserId": "", "customerExternalId": "cust-1",
      "messengerAccountIdFallback": TG_ID}, "authorized"),
    ({"customerExternalId": "cust-1"}, "authorized"),  # messengerUserId is TG_ID too
    # None of the sender's fields is the contact's: someone else's contact.
    ({"messengerUserId": "", "customerExternalId": "cust-1"}, "error"),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_the_contact_is_the_senders_when_any_of_its_ids_is(client, upstreams, fields, status,
                                                           kind):
    upstreams.add_customer(5, PHONE)
    answer = share(client, kind, **fields)
    assert answer["status"] == status
    if status == "error":
        assert answer["errorCode"] == "contact_not_own"
        assert not upstreams.field(5, TG_FIELD)
