"""`flask --app wsgi gurugrow account show|unbind|clear <channel> <id>`: a shop's manager
sees what the service knows about one messenger account, unbinds it, lifts its caps; each
command prints what it did and is logged."""

from __future__ import annotations

import logging

import pytest

from tests.helpers import TG, get, post

TG_FIELD = "bot_telegram_account_id"
PHONE = "79991234567"
VERIFIED = {TG_FIELD: "123456789", "bot_last_verified_channel": "telegram",
            "bot_last_verified_at": "2026-05-01T10:00:00Z",
            "bot_last_verification_method": "sms", "chatbot_interacted": "true"}


@pytest.fixture
def env_overrides():
    return {"OTP_RESEND_COOLDOWN_SECONDS": "0", "OTP_MAX_SENDS_PER_ACCOUNT_PER_HOUR": "2",
            "OTP_IDENTITY_MAX_FAILURES": "2", "OTP_LOCKOUT_BASE_SECONDS": "600"}


def command(app, *args: str) -> list[str]:
    result = app.test_cli_runner().invoke(args=["gurugrow", "account", *args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def status(client) -> str:
    return get(client, "/auth/status", {**TG})["status"]


def test_show_tells_binding_verification_cache_and_limits(app, client, upstreams, caplog):
    upstreams.add_customer(626518, "+7 999 123-45-67", **VERIFIED)
    assert status(client) == "authorized"  # the binding is cached now
    caplog.set_level(logging.INFO)
    lines = command(app, "show", "telegram", "123456789")
    text = "\n".join(lines)
    assert lines[0] == "account telegram 123456789 (RetailCRM field bot_telegram_account_id)"
    assert ("binding: customer 626518, phone +7******4567; last verification "
            "2026-05-01T10:00:00Z in telegram by sms; chatbot interacted: true") in text
    assert "cache: bound to customer 626518" in text
    assert "limits: codes this hour 0, codes today 0, wrong codes 0" in text
    assert "lockout: not locked" in text
    assert PHONE not in text and "9991234567" not in text
    assert any("account_shown" in r.getMessage() for r in caplog.records)


def test_show_of_an_unknown_account(app, upstreams):
    text = "\n".join(command(app, "show", "TELEGRAM", "42"))
    assert "binding: none in RetailCRM" in text and "cache: empty" in text


def test_unbind_clears_retailcrm_the_cache_and_the_answer(app, client, upstreams, caplog):
    upstreams.add_customer(626518, PHONE, **VERIFIED)
    assert status(client) == "authorized"
    caplog.set_level(logging.INFO)
    lines = command(app, "unbind", "telegram", "123456789")
    assert lines == ["cleared bot_telegram_account_id of customer 626518 in RetailCRM and "
                     "the mirror", "dropped the cached binding"]
    assert not upstreams.field(626518, TG_FIELD)
    assert status(client) == "not_authorized"  # no stale cached binding answers
    assert any("account_unbound" in r.getMessage() and "626518" in r.getMessage()
               for r in caplog.records)


def test_unbind_clears_every_customer_holding_the_account(app, client, upstreams):
    upstreams.add_customer(1, PHONE, **VERIFIED)
    upstreams.add_customer(2, "79995550000", **{TG_FIELD: "123456789"})
    assert status(client) == "conflict"
    lines = command(app, "unbind", "telegram", "123456789")
    assert len([line for line in lines if line.startswith("cleared")]) == 2
    assert not upstreams.field(1, TG_FIELD) and not upstreams.field(2, TG_FIELD)
    assert status(client) == "not_authorized"


def test_clear_lifts_the_accounts_send_cap_and_lockout(app, client, upstreams, caplog):
    upstreams.add_customer(626518, PHONE)

    def start():
        return post(client, "/auth/start", {**TG, "phone": PHONE})

    _, latest = start(), start()
    refused = start()
    assert (refused["status"], refused["errorCode"]) == ("error", "rate_limited")
    wrong = "000000" if upstreams.codes_sent()[-1] != "000000" else "111111"
    for _ in range(2):  # OTP_IDENTITY_MAX_FAILURES: locked out
        post(client, "/auth/check", {**TG, "sessionId": latest["sessionId"], "code": wrong})
    text = "\n".join(command(app, "show", "telegram", "123456789"))
    assert "codes this hour 2" in text and "lockout: locked for" in text

    caplog.set_level(logging.INFO)
    [line] = command(app, "clear", "telegram", "123456789")
    assert line.startswith("lifted the caps of telegram 123456789 (codes this hour 2, "
                           "codes today 2, lockouts today 1, locked 600 s more)"), line
    assert any("account_cleared" in r.getMessage() for r in caplog.records)
    # At once: a new code, and the right one authorizes.
    again = start()
    assert again["status"] == "sent", again
    answer = post(client, "/auth/check", {**TG, "sessionId": again["sessionId"],
                                          "code": upstreams.codes_sent()[-1]})
    assert answer["status"] == "authorized", answer
    assert "lockout: not locked" in "\n".join(command(app, "show", "telegram", "123456789"))


def test_an_unknown_channel_is_refused_by_the_command(app):
    result = app.test_cli_runner().invoke(args=["gurugrow", "account", "show", "fax", "1"])
    assert result.exit_code == 2 and "fax" in result.output
