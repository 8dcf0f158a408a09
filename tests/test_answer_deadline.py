"""Each upstream call's timeout is the smaller of its setting and what is left of the
request's answer deadline; with none left the call is not made."""

from __future__ import annotations

import pytest

from gurugrow.basics import deadline
from gurugrow.basics.deadline import ANSWER_RESERVE_SECONDS, answer_deadline
from gurugrow.basics.errors import DeadlineExceeded
from gurugrow.gateways.http import HttpClient
from tests.helpers import TG, post


def http_client() -> HttpClient:
    return HttpClient("crm", "https://crm.test", timeout=10, connect_timeout=3)


def test_no_deadline_keeps_the_settings():
    assert http_client()._timeout_now("GET", "/x") == ((3, 10), False)


def test_a_deadline_cuts_both_timeouts():
    with answer_deadline(1.0 + ANSWER_RESERVE_SECONDS):
        (connect, read), cut = http_client()._timeout_now("GET", "/x")
    assert cut and 0.9 < connect <= 1.0 and 0.9 < read <= 1.0


def test_no_time_left_makes_no_call(rsps):
    with answer_deadline(ANSWER_RESERVE_SECONDS), pytest.raises(DeadlineExceeded) as raised:
        http_client().request("GET", "/x")
    assert raised.value.__cause__ is None and len(rsps.calls) == 0


@pytest.mark.parametrize("env_overrides", [{"BOT_ANSWER_SECONDS": "1"}])
def test_a_write_without_time_left_answers_in_progress(app, client, upstreams, monkeypatch):
    """A repeat whose create has no time left answers in_progress (the bot repeats it)."""
    upstreams.add_customer(626518, "+79990000006", bot_telegram_account_id="100500")
    upstreams.add_order(5001, 626518, status="send-to-delivery")
    upstreams.add_offer(501, "Миноксидил 5%")
    real = deadline.time_left
    monkeypatch.setattr("gurugrow.gateways.http.time_left",
                        lambda: 0.0 if upstreams.calls[-1:] == ["GET /api/v5/store/offers"]
                        else real())
    answer = post(client, "/orders/repeat", {**TG, "messengerUserId": "100500",
                                             "sourceOrderId": "5001"})
    assert (answer["status"], answer["errorCode"]) == ("error", "in_progress")
    assert upstreams.created == []
