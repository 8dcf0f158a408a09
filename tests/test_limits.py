"""Abuse limits through HTTP: countries, hourly caps per phone and address, the global
daily budget, lockout of a messenger account that keeps guessing, forwarded addresses."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from gurugrow.basics.callers import client_ip
from gurugrow.stores import keys as redis_keys
from tests.helpers import BODY_KINDS, TG, identity_locked_for, post, redis_of

NO_COOLDOWN = {"OTP_RESEND_COOLDOWN_SECONDS": "0"}


def start(client, phone="79991234567", kind="form", headers=None, **fields):
    data = {**TG, "phone": phone, **fields}
    if headers:
        response = client.post("/auth/start", data=data, headers=headers)
        return response.get_json()
    return post(client, "/auth/start", data, kind)


@pytest.mark.parametrize(("phone", "allowed"), [
    ("+7 999 123-45-67", True), ("+7 701 123 45 67", True), ("+375 29 123-45-67", True),
    ("+1 202 555 0143", False), ("+44 7911 123456", False), ("+998 90 123 45 67", False),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_only_allowed_countries_get_codes(client, upstreams, kind, phone, allowed):
    answer = start(client, phone, kind)
    if allowed:
        assert answer["status"] == "sent"
    else:
        assert (answer["status"], answer["errorCode"]) == ("error", "phone_country_not_allowed")
        assert upstreams.crm_calls() == []  # refused before any lookup


@pytest.mark.parametrize("env_overrides", [{**NO_COOLDOWN,
                                            "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "2"}])
def test_hourly_cap_per_phone_applies_to_known_and_unknown_alike(client, upstreams):
    upstreams.add_customer(1, "79991234567")
    for phone in ("79991234567", "79997654321"):  # a customer's phone, then nobody's
        answers = [start(client, phone, messengerUserId=f"u{i}") for i in range(3)]
        assert [a["status"] for a in answers] == ["sent", "sent", "error"]
        assert answers[2]["errorCode"] == "rate_limited"
        assert set(answers[2]) == set(answers[0])


@pytest.mark.parametrize("env_overrides", [{**NO_COOLDOWN, "OTP_MAX_SENDS_PER_IP_PER_HOUR": "2",
                                            "OTP_MAX_SENDS_PER_IP_PER_HOUR_TOKEN_CALLERS": "2",
                                            "TRUSTED_PROXIES": "127.0.0.1"}])
def test_hourly_cap_per_client_address_behind_a_trusted_proxy(client, upstreams):
    def from_client(address, n):
        return start(client, f"7999123450{n}", headers={"X-Forwarded-For": address},
                     messengerUserId=f"ip{n}")["status"]

    assert [from_client("203.0.113.5", n) for n in range(3)] == ["sent", "sent", "error"]
    assert from_client("203.0.113.6", 4) == "sent"  # another client is not affected


@pytest.mark.parametrize(("remote", "forwarded", "expected"), [
    ("127.0.0.1", "203.0.113.5", "203.0.113.5"),
    ("127.0.0.1", "198.51.100.1, 203.0.113.5", "203.0.113.5"),  # prepended hop ignored
    ("127.0.0.1", "203.0.113.5, 10.0.0.2", "203.0.113.5"),  # trusted hops skipped
    ("192.0.2.9", "203.0.113.5", "192.0.2.9"),  # peer is not a trusted proxy
    ("127.0.0.1", None, "127.0.0.1"),
    ("127.0.0.1", "not-an-ip", "not-an-ip"),
])
def test_client_address(remote, forwarded, expected):
    trusted = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8")]
    assert client_ip(remote, forwarded, trusted) == expected


@pytest.mark.parametrize("env_overrides", [{**NO_COOLDOWN, "OTP_DAILY_SEND_BUDGET": "3"}])
def test_daily_budget_stops_all_sending(client, upstreams, caplog):
    logging.getLogger("gurugrow").propagate = True
    upstreams.add_customer(1, "79991234567")
    upstreams.add_customer(2, "79991234568")
    with caplog.at_level(logging.ERROR, logger="gurugrow"):
        assert start(client, "79991234567")["status"] == "sent"
        assert start(client, "79995550000", messengerUserId="decoy")["status"] == "sent"
        assert "send_budget_exhausted" not in caplog.text
        assert start(client, "79991234568")["status"] == "sent"
    # The ERROR line says how much of the budget went to starts that sent nothing.
    assert "send_budget_exhausted budget=3 no_send_starts=1" in caplog.text
    for phone in ("79991234567", "79990000000"):  # known and unknown: the same refusal
        answer = start(client, phone, messengerUserId="again")
        assert (answer["status"], answer["errorCode"]) == ("error", "send_budget_exhausted")
    assert len(upstreams.sent) == 2


PRICED = {**NO_COOLDOWN, "CODE_PRICES": "sms=4.90,telegram=1.20,vk=1.00"}


@pytest.mark.parametrize("env_overrides", [{**PRICED, "OTP_DAILY_COST_BUDGET": "3"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_daily_cost_budget_stops_all_sending(client, upstreams, caplog, kind):
    logging.getLogger("gurugrow").propagate = True
    upstreams.add_customer(1, "79991234567")
    # 1.20 + a start to an unknown phone (nothing sent, nothing paid: its cost goes back)
    # + 1.20 + 1.20 = 3.60: the last send reaches the budget of 3, the next is refused.
    with caplog.at_level(logging.ERROR, logger="gurugrow"):
        answers = [start(client, phone, kind, messengerUserId=f"u{n}") for n, phone in
                   enumerate(("79991234567", "79990000000", "79991234567", "79991234567"))]
    assert [a["status"] for a in answers] == ["sent"] * 4
    assert "cost_budget_exhausted budget=3.0" in caplog.text
    for phone in ("79991234567", "79990000000"):  # known and unknown: the same refusal
        answer = start(client, phone, kind, messengerUserId="again")
        assert (answer["status"], answer["errorCode"]) == ("error", "cost_budget_exhausted")
        assert answer["message"]
    assert len(upstreams.sent) == 3
    scraped = client.get("/metrics").get_data(as_text=True)
    assert "gurugrow_cost_budget_used 3.6" in scraped and "gurugrow_cost_budget 3.0" in scraped


@pytest.mark.parametrize("env_overrides", [{**PRICED, "OTP_DAILY_COST_BUDGET": "5"}])
def test_cost_budget_charges_the_sms_a_fallback_took(client, upstreams):
    upstreams.add_customer(1, "79991234567")
    upstreams.fail["telegram"] = (200, {"error": "not available", "code": 2})
    assert start(client)["status"] == "sent"  # admitted at 1.20, went by SMS at 4.90
    assert [m["route"] for m in upstreams.sent] == ["sms"]
    answer = start(client, messengerUserId="second")  # 4.90 of 5 spent: a 1.20 send passes
    assert answer["status"] == "sent"
    answer = start(client, messengerUserId="third")
    assert (answer["status"], answer["errorCode"]) == ("error", "cost_budget_exhausted")


@pytest.mark.parametrize("env_overrides", [{**PRICED, "OTP_DAILY_COST_BUDGET": "2"}])
def test_a_failed_delivery_gives_its_cost_back(client, upstreams):
    upstreams.add_customer(1, "79991234567")
    for route in ("telegram", "sms"):
        upstreams.fail[route] = (200, {"error": "Insufficient funds", "code": -1})
    assert start(client)["errorCode"] == "delivery_failed"
    assert start(client, messengerUserId="b")["errorCode"] == "delivery_failed"
    for route in ("telegram", "sms"):
        del upstreams.fail[route]
    assert start(client, messengerUserId="c")["status"] == "sent"  # nothing was spent


@pytest.mark.parametrize("env_overrides", [{**NO_COOLDOWN, "OTP_IDENTITY_MAX_FAILURES": "3",
                                            "OTP_LOCKOUT_BASE_SECONDS": "100"}])
def test_wrong_codes_across_sessions_lock_the_account_out_longer_each_time(app, client,
                                                                          upstreams):
    upstreams.add_customer(1, "79991234567")

    def guess_three_times() -> list[str]:
        session_id = start(client)["sessionId"]
        wrong = "000000" if upstreams.codes_sent()[-1] != "000000" else "111111"
        return [post(client, "/auth/check", {**TG, "sessionId": session_id,
                                             "code": wrong})["status"] for _ in range(3)]

    assert guess_three_times() == ["invalid_code", "invalid_code", "invalid_code"]
    assert 90 < identity_locked_for(app, "telegram", "123456789") <= 100
    # Locked: even the right code of a new session is refused.
    session_id = start(client)["sessionId"]
    answer = post(client, "/auth/check", {**TG, "sessionId": session_id,
                                          "code": upstreams.codes_sent()[-1]})
    assert (answer["status"], answer["errorCode"]) == ("too_many_attempts", "too_many_attempts")
    store = redis_of(app)
    # The first lockout has run out.
    store.delete(redis_keys.identity_lock("gg:", "telegram", "123456789"))
    guess_three_times()
    assert 190 < identity_locked_for(app, "telegram", "123456789") <= 200
    # Another messenger account is not affected.
    assert identity_locked_for(app, "telegram", "someone-else") == 0


# -- the bot platform's network, and others' accounts spending a phone's caps -------------
def no_send_starts(client, accounts: int, per_account: int) -> list[dict]:
    """``accounts`` invented messenger accounts each asking codes for ``per_account``
    phones nobody has (no-send starts: the stand-in CRM has no customer for them)."""
    return [start(client, f"7999500{a:02d}{n:02d}", messengerUserId=f"invented-{a}")
            for a in range(accounts) for n in range(per_account)]


@pytest.fixture
def quick_decoys(app, monkeypatch):
    """A decoy's wait (as long as a real send) is not what these tests are about."""
    monkeypatch.setattr(app.extensions["gurugrow"].send_timer, "draw", lambda: 0.0)


@pytest.mark.parametrize(("env_overrides", "customer_answer"), [
    # Every bot user calls from the platform's addresses: they skip the per-address cap,
    # and the per-account caps (10 an hour) stopped each invented account.
    ({"ALLOWED_CALLER_NETWORKS": "127.0.0.0/8"}, ("sent", None)),
    # Callers with one of API_TOKENS only (the platform's addresses unknown): no
    # per-address cap unless the operator sets one for token callers.
    ({}, ("sent", None)),
    # Set explicitly, it applies (300 an hour), shared by everyone behind the address.
    ({"OTP_MAX_SENDS_PER_IP_PER_HOUR_TOKEN_CALLERS": "300"}, ("error", "rate_limited")),
], ids=["through-the-bot-platform", "token-callers", "token-callers-capped"])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_starts_from_invented_accounts_do_not_lock_customers_out(
        client, upstreams, quick_decoys, customer_answer, kind):
    upstreams.add_customer(7, "79991234567")
    answers = no_send_starts(client, accounts=30, per_account=10)
    assert [a["status"] for a in answers] == ["sent"] * 300
    assert upstreams.sent == []  # nothing was sent to anybody
    more = start(client, "79995009999", messengerUserId="invented-0")
    assert (more["status"], more["errorCode"]) == ("error", "rate_limited")  # its own cap
    customer = start(client, "79991234567", kind, messengerUserId="real-customer")
    assert (customer["status"], customer.get("errorCode")) == customer_answer


@pytest.mark.parametrize("env_overrides", [{**NO_COOLDOWN}])
def test_clearing_a_phone_lets_its_owner_have_a_code_again(app, client, upstreams):
    """Five accounts spend the phone's hourly cap; the documented command clears it."""
    upstreams.add_customer(7, "79991234567")
    assert [start(client, messengerUserId=f"other-{i}")["status"] for i in range(5)] == [
        "sent"] * 5
    refused = start(client, messengerUserId="owner")
    assert (refused["status"], refused["errorCode"]) == ("error", "rate_limited")
    result = app.test_cli_runner().invoke(args=["gurugrow", "clear-phone", "+7 999 123-45-67"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "cleared 2 code counter(s) of +7******4567"
    assert "79991234567" not in result.output
    assert start(client, messengerUserId="owner")["status"] == "sent"
    # Only that phone: another phone's counters are untouched.
    again = app.test_cli_runner().invoke(args=["gurugrow", "clear-phone", "79997654321"])
    assert again.output.strip() == "cleared 0 code counter(s) of +7******4321"


def test_clearing_refuses_what_is_not_a_phone(app):
    result = app.test_cli_runner().invoke(args=["gurugrow", "clear-phone", "nope"])
    assert result.exit_code == 2 and "not a phone number" in result.output
