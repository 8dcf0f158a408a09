"""Retries, replays and crashes through HTTP: resend honours what was really sent and who
asks; a replayed check gets the same answer; a crashed check's claim lapses; a send
admission takes all its limits or none, and gives all back when nothing went out; caps
per messenger account; the sandbox's reset clears its Redis keys."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
import responses

from gurugrow.sandbox.standins import create_standins_app
from tests.helpers import BODY_KINDS, TG, post, run_concurrently, set_clock
from tests.test_metrics import scrape, value

PHONE = "79991234567"
OTHER = {**TG, "messengerUserId": "987654321"}
RECIPIENT = {"firstName": "Мария", "lastName": "Петрова", "phone": PHONE}
NO_COOLDOWN = {"OTP_RESEND_COOLDOWN_SECONDS": "0"}
OUTAGE = {"telegram": (200, {"error": "Service unavailable", "code": 2}),
          "sms": (200, {"error": "Insufficient funds", "code": -1})}


@pytest.fixture
def catalog(upstreams):
    upstreams.add_bundle(31, "SET-MALE-BASIC")
    return upstreams


def start(client, kind="form", phone=PHONE, **fields):
    return post(client, "/auth/start", {**TG, "phone": phone, **fields}, kind)


def recommended_start(client, kind="form", **fields):
    return post(client, "/orders/recommended/start", {
        **TG, "offerCode": "male_hairloss_basic", **RECIPIENT, **fields}, kind)


def check(client, session_id, code, kind="form", path="/auth/check", **fields):
    return post(client, path, {**TG, "sessionId": session_id, "code": code, **fields}, kind)


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


# -- resend ---------------------------------------------------------------------------
@pytest.mark.parametrize("env_overrides", [NO_COOLDOWN])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_resend_of_a_new_customers_recommended_start_really_sends(client, catalog, kind):
    """A phone with no customer yet is no decoy for a recommended start: its resend sends
    a real code, and that code completes the order."""
    session_id = recommended_start(client, kind)["sessionId"]
    assert len(catalog.sent) == 1
    answer = post(client, "/orders/recommended/resend", {**TG, "sessionId": session_id,
                                                         "deliveryRoute": "sms"}, kind)
    assert (answer["status"], answer["maskedPhone"]) == ("sent", "+7******4567")
    assert [m["route"] for m in catalog.sent] == ["telegram", "sms"]
    old, new = catalog.codes_sent()
    assert check(client, session_id, old, kind, "/orders/recommended/check")[
        "status"] == "invalid_code"
    done = check(client, session_id, new, kind, "/orders/recommended/check")
    assert done["status"] == "created" and len(catalog.created) == 1


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_code_replaced_after_a_check_leaves_the_checked_session_alone(app, client,
                                                                         upstreams, kind):
    """A resend or the deliveries worker reads the session, then sends for seconds; a check
    landing meanwhile must not be undone by the new code, and concurrent replacements
    each count their send."""
    upstreams.add_customer(5, PHONE)
    session_id = start(client, kind)["sessionId"]
    otp = app.extensions["gurugrow"].otp
    first, second = otp.load(session_id), otp.load(session_id)  # read before their sends
    assert otp.replace_code(first, "123456", "sms") and otp.replace_code(second, "234567",
                                                                          "sms")
    assert otp.load(session_id).sends == 3
    stale = otp.load(session_id)
    assert check(client, session_id, "234567", kind)["status"] == "authorized"
    assert otp.replace_code(stale, "345678", "sms") is False
    replay = check(client, session_id, "234567", kind)
    assert replay["status"] == "authorized", replay

@pytest.mark.parametrize("env_overrides", [NO_COOLDOWN])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_resend_of_an_unknown_phones_auth_start_still_sends_nothing(client, upstreams, kind):
    session_id = start(client, kind)["sessionId"]
    answer = post(client, "/auth/resend", {**TG, "sessionId": session_id}, kind)
    assert answer["status"] == "sent" and upstreams.sent == []


@pytest.mark.parametrize("env_overrides", [NO_COOLDOWN])
@pytest.mark.parametrize(("path", "fields"), [
    ("/auth/resend", {**OTHER}),  # another messenger account
    ("/auth/resend", {"channelType": "vk", "messengerUserId": TG["messengerUserId"]}),
    ("/orders/recommended/resend", {**OTHER}),  # the alias checks the same
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_resend_needs_the_sessions_identity_when_one_is_sent(client, upstreams, kind, path,
                                                            fields):
    upstreams.add_customer(7, PHONE)
    session_id = start(client, kind)["sessionId"]
    answer = post(client, path, {**TG, "sessionId": session_id, **fields}, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "session_not_found")
    assert answer["maskedPhone"] is None  # nothing about the session leaks
    assert len(upstreams.sent) == 1


@pytest.mark.parametrize("env_overrides", [NO_COOLDOWN])
@pytest.mark.parametrize(("path", "fields"), [
    ("/auth/resend", {"messengerUserId": ""}),  # no identity at all: the sessionId suffices
    ("/orders/recommended/resend", {**TG}),  # the alias serves an auth session too
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_resend_without_identity_or_by_the_alias_is_sent(client, upstreams, kind, path,
                                                         fields):
    upstreams.add_customer(7, PHONE)
    session_id = start(client, kind)["sessionId"]
    answer = post(client, path, {**TG, "sessionId": session_id, **fields}, kind)
    assert answer["status"] == "sent"
    assert len(upstreams.sent) == 2


@pytest.mark.parametrize("env_overrides", [NO_COOLDOWN])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_recommended_session_is_resent_by_auth_resend(client, catalog, kind):
    session_id = recommended_start(client, kind)["sessionId"]
    answer = post(client, "/auth/resend", {**TG, "sessionId": session_id}, kind)
    assert answer["status"] == "sent"
    assert len(catalog.sent) == 2


# -- replays --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_replayed_auth_check_gets_the_same_answer_and_writes_once(client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    session_id = start(client, kind)["sessionId"]
    code = upstreams.codes_sent()[0]
    first = check(client, session_id, code, kind)
    assert first["status"] == "authorized"
    assert [check(client, session_id, code, kind) for _ in range(3)] == [first] * 3
    assert len(upstreams.edits) == 1
    # Only the same code by the same identity is a replay.
    refused = [check(client, session_id, wrong(code), kind),
               check(client, session_id, code, kind, **OTHER)]
    assert [(a["status"], a["errorCode"]) for a in refused] == [
        ("error", "session_not_found")] * 2
    assert len(upstreams.edits) == 1


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_replayed_recommended_check_gets_the_same_order(client, catalog, kind):
    session_id = recommended_start(client, kind)["sessionId"]
    code = catalog.codes_sent()[0]
    first = check(client, session_id, code, kind, "/orders/recommended/check")
    again = check(client, session_id, code, kind, "/orders/recommended/check")
    assert first["status"] == "created" and again == first
    assert len(catalog.created) == 1
    assert len([c for c in catalog.customers.values() if c["id"] >= 900000]) == 1


def test_concurrent_replays_wait_for_the_first_check(client, upstreams):
    upstreams.add_customer(7, PHONE)
    session_id = start(client)["sessionId"]
    code = upstreams.codes_sent()[0]
    upstreams.state.delay["edit"] = 0.3  # the binding write is slow
    answers = run_concurrently(5, lambda: check(client, session_id, code))
    assert [a["status"] for a in answers] == ["authorized"] * 5
    assert len({a["verifiedUntil"] for a in answers}) == 1
    assert len(upstreams.edits) == 1


@pytest.mark.parametrize("env_overrides", [{"IN_PROGRESS_LEASE_SECONDS": "0.2"}])
def test_a_check_whose_worker_died_can_be_checked_again(app, client, upstreams):
    upstreams.add_customer(7, PHONE)
    session_id = start(client)["sessionId"]
    code = upstreams.codes_sent()[0]
    # A worker claims the code and dies before it answers: nobody renews its lease.
    otp = app.extensions["gurugrow"].otp
    assert otp.check(session_id, "telegram", TG["messengerUserId"], "auth", code)[0] == "ok"
    time.sleep(0.3)
    answer = check(client, session_id, code)
    assert answer["status"] == "authorized"
    assert len(upstreams.edits) == 1


@pytest.mark.parametrize("env_overrides", [{"IN_PROGRESS_LEASE_SECONDS": "0.2"}])
def test_a_recommended_check_that_died_after_creating_the_customer(app, client, catalog):
    """The dead worker created the new customer (already bound) but never remembered it:
    the next check orders for that customer instead of refusing a conflict or creating
    another one."""
    session_id = recommended_start(client)["sessionId"]
    code = catalog.codes_sent()[0]
    otp = app.extensions["gurugrow"].otp
    assert otp.check(session_id, "telegram", TG["messengerUserId"], "recommended",
                     code)[0] == "ok"
    catalog.add_customer(900100, "+7 999 123-45-67",
                         bot_telegram_account_id=TG["messengerUserId"])
    time.sleep(0.3)
    answer = check(client, session_id, code, path="/orders/recommended/check")
    assert (answer["status"], answer["customerId"]) == ("created", "900100")
    assert [c["id"] for c in catalog.customers.values()] == [900100]
    [order] = catalog.created
    assert order["customer"] == {"id": 900100}


@pytest.mark.parametrize("env_overrides", [{"IN_PROGRESS_LEASE_SECONDS": "0.2"}])
def test_a_slow_check_keeps_its_claim_while_it_runs(client, upstreams):
    """The lease is renewed while the work runs: a replay during a check slower than the
    lease waits for it instead of running it a second time."""
    upstreams.add_customer(7, PHONE)
    session_id = start(client)["sessionId"]
    code = upstreams.codes_sent()[0]
    upstreams.state.delay["edit"] = 1.0  # five leases long
    answers = run_concurrently(2, lambda: check(client, session_id, code))
    assert [a["status"] for a in answers] == ["authorized"] * 2
    assert len(upstreams.edits) == 1


# -- admission: all or nothing --------------------------------------------------------
@pytest.mark.parametrize("env_overrides", [{**NO_COOLDOWN, "OTP_MAX_SENDS_PER_PHONE_PER_DAY": "3",
                                            "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "1"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_refused_admission_takes_no_counter(app, client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    now = 1_780_000_000.0
    set_clock(app, now)
    assert start(client, kind)["status"] == "sent"
    for account in ("b", "c", "d"):  # refused by the hourly cap: the daily one is untouched
        answer = start(client, kind, messengerUserId=account)
        assert (answer["status"], answer["errorCode"]) == ("error", "rate_limited")
        assert 0 < answer["retryAfterSec"] <= 3600
    set_clock(app, now + 3600)  # the next hour, the same UTC day
    assert start(client, kind, messengerUserId="e")["status"] == "sent"
    assert len(upstreams.sent) == 2


@pytest.mark.parametrize("env_overrides", [{"OTP_MAX_SENDS_PER_IP_PER_HOUR": "1",
    "OTP_MAX_SENDS_PER_IP_PER_HOUR_TOKEN_CALLERS": "1"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_refused_admission_takes_no_cooldown(app, client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    upstreams.add_customer(8, "79991234568")
    set_clock(app, 1_780_000_000.0)
    assert start(client, kind)["status"] == "sent"
    refused = start(client, kind, phone="79991234568")
    assert (refused["status"], refused["errorCode"]) == ("error", "rate_limited")
    set_clock(app, 1_780_000_000.0 + 3600)  # the address may send again
    assert start(client, kind, phone="79991234568")["status"] == "sent"


@pytest.mark.parametrize("env_overrides", [{
    "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "2", "OTP_MAX_SENDS_PER_PHONE_PER_DAY": "2",
    "OTP_MAX_SENDS_PER_IP_PER_HOUR": "2",
    "OTP_MAX_SENDS_PER_IP_PER_HOUR_TOKEN_CALLERS": "2", "OTP_MAX_SENDS_PER_ACCOUNT_PER_HOUR": "2",
    "OTP_MAX_SENDS_PER_ACCOUNT_PER_DAY": "2", "OTP_DAILY_SEND_BUDGET": "2"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_an_outage_uses_up_nothing(client, upstreams, kind):
    """During a GreenSMS outage every start fails as delivery_failed, never rate_limited
    nor resend_too_early: cooldown, per-phone hour and day, per-address, per-account and
    the budget are all given back. Afterwards the customer gets the code at once."""
    upstreams.add_customer(7, PHONE)
    upstreams.fail.update(OUTAGE)
    answers = [start(client, kind) for _ in range(5)]
    assert {(a["status"], a["errorCode"]) for a in answers} == {("error", "delivery_failed")}
    upstreams.fail.clear()
    assert start(client, kind)["status"] == "sent"
    assert start(client, kind, messengerUserId="second")["status"] == "sent"  # 2 of 2
    third = start(client, kind, messengerUserId="third")
    assert third["errorCode"] in ("rate_limited", "send_budget_exhausted")


@pytest.mark.parametrize("env_overrides", [{
    "OTP_RESEND_COOLDOWN_SECONDS": "0", "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "2",
    "OTP_MAX_SENDS_PER_ACCOUNT_PER_HOUR": "2", "OTP_DAILY_SEND_BUDGET": "2"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_failed_resend_gives_back_everything(client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    session_id = start(client, kind)["sessionId"]
    upstreams.fail.update(OUTAGE)
    for _ in range(3):
        answer = post(client, "/auth/resend", {**TG, "sessionId": session_id}, kind)
        assert (answer["status"], answer["errorCode"]) == ("error", "delivery_failed")
    upstreams.fail.clear()
    answer = post(client, "/auth/resend", {**TG, "sessionId": session_id}, kind)
    assert answer["status"] == "sent"
    assert check(client, session_id, upstreams.codes_sent()[-1], kind)["status"] == "authorized"


@pytest.mark.parametrize("env_overrides", [{"OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "1",
                                            "OTP_MAX_SENDS_PER_ACCOUNT_PER_HOUR": "1"}])
@pytest.mark.parametrize(("kind", "failure"), [
    ("form", ("customers", (503, {"success": False, "errorMsg": "Rate limit"}))),
    ("json", ("dedupe", (500, {"detail": "boom"}))),
])
def test_an_upstream_failure_before_the_send_gives_back_everything(client, upstreams, kind,
                                                                     failure):
    upstreams.add_customer(7, PHONE)
    upstreams.add_customer(8, "+7 999 123-45-67")  # two customers: the deduper is asked
    upstreams.dedupe_answer = {"status": "resolved", "finalCustomerId": "8"}
    upstreams.fail[failure[0]] = failure[1]
    answer = start(client, kind)
    assert answer["status"] == "error"
    assert answer["errorCode"] in ("crm_unavailable", "dedupe_failed")
    upstreams.fail.clear()
    assert start(client, kind)["status"] == "sent"  # no cooldown, no counter left taken


# -- caps per messenger account -------------------------------------------------------
@pytest.mark.parametrize("env_overrides", [{**NO_COOLDOWN,
                                            "OTP_MAX_SENDS_PER_ACCOUNT_PER_HOUR": "2"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_hourly_cap_per_messenger_account(client, upstreams, kind):
    upstreams.add_customer(7, PHONE)
    before = scrape(client)
    phones = ("79991234567", "79991234561", "79991234562")  # a customer's, then nobody's
    answers = [start(client, kind, phone=p) for p in phones]
    assert [a["status"] for a in answers] == ["sent", "sent", "error"]
    assert answers[2]["errorCode"] == "rate_limited"
    assert 0 < answers[2]["retryAfterSec"] <= 3600
    assert set(answers[2]) == set(answers[0])
    # The same phones from another chat user are not affected.
    assert start(client, kind, phone=phones[2], **OTHER)["status"] == "sent"
    grown = value(scrape(client), "gurugrow_limit_refusals_total", kind="account_hour") - value(
        before, "gurugrow_limit_refusals_total", kind="account_hour")
    assert grown == 1


@pytest.mark.parametrize("env_overrides", [{**NO_COOLDOWN,
                                            "OTP_MAX_SENDS_PER_ACCOUNT_PER_HOUR": "0",
                                            "OTP_MAX_SENDS_PER_ACCOUNT_PER_DAY": "2"}])
def test_daily_cap_per_messenger_account(app, client, upstreams):
    now = 1_780_000_000.0 - 1_780_000_000.0 % 86400  # a UTC midnight
    set_clock(app, now + 3600)
    assert start(client, phone="79991234561")["status"] == "sent"
    set_clock(app, now + 7200)
    assert start(client, phone="79991234562")["status"] == "sent"
    refused = start(client, phone="79991234563")
    assert (refused["status"], refused["errorCode"]) == ("error", "rate_limited")
    assert refused["retryAfterSec"] == 86400 - 7200  # until the UTC day turns
    set_clock(app, now + 86400)
    assert start(client, phone="79991234563")["status"] == "sent"


@pytest.mark.parametrize("env_overrides", [{**NO_COOLDOWN,
                                            "OTP_MAX_SENDS_PER_ACCOUNT_PER_HOUR": "0",
                                            "OTP_MAX_SENDS_PER_ACCOUNT_PER_DAY": "0"}])
def test_account_caps_switch_off_with_zero(client, upstreams):
    answers = [start(client, phone=f"7999123450{n}") for n in range(4)]
    assert [a["status"] for a in answers] == ["sent"] * 4


# -- sandbox reset --------------------------------------------------------------------
STANDINS = "https://standins.test"


@pytest.fixture
def standins_by_url():
    """The stand-ins at their own URL (as ``make run`` serves them), on a ``responses``
    mock: the app's gateways and its /sandbox forwarding reach them over requests."""
    app = create_standins_app(rate_limit_per_second=0)
    client = app.test_client()

    def forward(request) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(request.url)
        body = request.body.encode() if isinstance(request.body, str) else request.body
        answer = client.open(parts.path, method=request.method, query_string=parts.query,
                             headers=dict(request.headers), data=body or b"")
        return answer.status_code, {"Content-Type": answer.content_type}, answer.data

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        for method in ("GET", "POST"):
            rsps.add_callback(method, re.compile(re.escape(STANDINS) + r"/.*"), forward)
        yield app.extensions["sandbox_state"]


@pytest.mark.parametrize("env_overrides", [{"GURUGROW_SANDBOX": "1",
                                            "SANDBOX_STANDINS_URL": STANDINS}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_sandbox_reset_clears_the_redis_keys(client, standins_by_url, kind):
    phone = "79990000001"  # a demo customer
    assert start(client, kind, phone=phone)["status"] == "sent"
    assert start(client, kind, phone=phone)["errorCode"] == "resend_too_early"
    assert client.post("/sandbox/reset").get_json() == {"status": "reset"}
    assert client.get("/sandbox/outbox").get_json() == {"messages": []}
    # No cooldown, session or counter left: the journey runs again at once.
    session_id = start(client, kind, phone=phone)["sessionId"]
    [message] = standins_by_url.outbox
    assert check(client, session_id, message["code"], kind)["status"] == "authorized"
