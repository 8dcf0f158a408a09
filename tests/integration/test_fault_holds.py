"""Faults at the wrong moment, against the real stack (gunicorn + redis-server + stand-ins
over HTTP): nothing doubled, no limit bypassed."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from tests.integration.conftest import wait_until
from tests.integration.stack import fresh_stack, kill_during, running_stack

pytestmark = pytest.mark.integration

SETTINGS = {"REDIS_TIMEOUT_SECONDS": "0.5", "RETAILCRM_TIMEOUT_SECONDS": "2",
            "GREENSMS_TIMEOUT_SECONDS": "1", "DEDUPE_TIMEOUT_SECONDS": "1",
            "HTTP_CONNECT_TIMEOUT_SECONDS": "1", "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "5",
            "OTP_RESEND_COOLDOWN_SECONDS": "60", "OTP_MAX_SENDS_PER_PHONE_PER_DAY": "1000",
            "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "8", "GUNICORN_TIMEOUT": "20",
            "RETAILCRM_BREAKER_FAILURES": "1000", "CONTACT_VERIFIED_CHANNELS": "telegram",
            # Token-only callers (API_TOKENS, no ALLOWED_CALLER_NETWORKS), a cost budget.
            "CODE_PRICES": "sms=1,telegram=1", "OTP_DAILY_COST_BUDGET": "100",
            "RETAILCRM_RATE_LIMIT": "200"}
PHONE = "79990000001"  # one customer (1001) in the stand-ins' demo data
NEW_PHONE = "79990000004"  # nobody: the recommended check creates the customer


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("holds"), SETTINGS) as running:
        yield running


@pytest.fixture
def fresh(stack):
    return fresh_stack(stack)


def start(base: str, user: str, phone: str = PHONE, **extra) -> dict:
    return requests.post(f"{base}/auth/start", data={
        "phone": phone, "channelType": "telegram", "messengerUserId": user,
        "deliveryRoute": "sms", **extra}, timeout=30).json()


def test_a_slow_greensms_that_delivers_lifts_no_send_limit(fresh):
    """GreenSMS answers after GREENSMS_TIMEOUT_SECONDS but every message is delivered:
    each such send counts, so at most OTP_MAX_SENDS_PER_PHONE_PER_HOUR messages reach the
    phone from any number of starts, and the cooldown holds for each account."""
    app, standins, _ = fresh
    standins.state.delay_after["sms"] = 1.5  # delivered, answered after the 1 s timeout
    answers = [start(app.base, user=f"acc{i}") for i in range(12)]
    repeats = [start(app.base, user="acc0") for _ in range(3)]
    time.sleep(1.0)  # the last late answers land
    delivered = [m for m in standins.state.outbox if m["to"] == PHONE]
    print(f"\nslow GreenSMS: {len(answers) + len(repeats)} starts, "
          f"{len(delivered)} messages reached the phone")
    statuses = [(a["status"], a["errorCode"]) for a in answers]
    assert statuses[:5] == [("sent", None)] * 5  # the session is valid: the code may arrive
    assert statuses[5:] == [("error", "rate_limited")] * 7
    assert {(a["status"], a["errorCode"]) for a in repeats} == {("error", "resend_too_early")}
    assert len(delivered) == 5
    assert "code_send_unknown" in app.log()


def test_a_worker_killed_during_customers_create_makes_one_customer(fresh):
    """SIGKILL while the recommended check's customers/create is in flight, then the bot
    repeats the check: one customer, one order, and the account is authorized."""
    app, standins, _ = fresh
    user = {"channelType": "telegram", "messengerUserId": "newbie"}
    started = requests.post(f"{app.base}/orders/recommended/start", data={
        **user, "phone": NEW_PHONE, "offerCode": "male_hairloss_basic",
        "firstName": "Иван", "deliveryRoute": "sms"}, timeout=30).json()
    assert started["status"] == "sent"
    [message] = [m for m in standins.state.outbox if m["to"] == NEW_PHONE]
    check = {**user, "sessionId": started["sessionId"], "code": message["code"]}
    standins.state.delay["create_customer"] = 2.0
    kill_during(app, standins, lambda: requests.post(
        f"{app.base}/orders/recommended/check", data=check, timeout=30),
        "POST /api/v5/customers/create")
    answer: dict = {}

    def created() -> bool:
        nonlocal answer
        answer = requests.post(f"{app.base}/orders/recommended/check", data=check,
                               timeout=30).json()
        return answer["status"] == "created"

    assert wait_until(created, timeout=20, interval=0.5), answer
    time.sleep(2.5)  # the dead worker's create has landed or been refused by now
    customers = [c for c in standins.state.customers.values()
                 if any(p.get("number") == NEW_PHONE for p in c.get("phones") or [])]
    assert [str(c["id"]) for c in customers] == [answer["customerId"]]
    assert len(standins.state.created_orders) == 1
    status = requests.get(f"{app.base}/auth/status", params=user, timeout=30).json()
    assert status["status"] == "authorized"
    # The binding cache lapsed or not, RetailCRM knows one holder of the account.
    redis_flush = redis.Redis.from_url(fresh[2].url)
    redis_flush.flushdb()
    status = requests.get(f"{app.base}/auth/status", params=user, timeout=30).json()
    assert status["status"] == "authorized"


def contact(base: str, user: str, phone: str) -> dict:
    return requests.post(f"{base}/auth/contact", data={
        "channelType": "telegram", "messengerUserId": user, "contactUserId": user,
        "phone": phone}, timeout=30).json()


def test_two_contacts_for_one_account_at_once_bind_it_to_one_customer(fresh):
    app, standins, _ = fresh
    assert contact(app.base, "555", "79990000007")["status"] == "authorized"  # 1008 ← 555
    # Each binding write takes RetailCRM a while: the other binding reads who holds the
    # account meanwhile.
    standins.state.delay["edit"] = 0.6
    answers: list[dict] = []
    threads = [threading.Thread(target=lambda p=phone: answers.append(contact(
        app.base, "444", p))) for phone in ("79990000001", "79990000007")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    standins.state.delay.clear()
    assert sorted(a["status"] for a in answers) == ["authorized", "conflict"]
    field = {cid: (standins.state.customers[cid]["customFields"] or {}).get(
        "bot_telegram_account_id") for cid in ("1001", "1008")}
    holders = [cid for cid, value in field.items() if value == "444"]
    assert len(holders) == 1
    if holders == ["1001"]:
        assert field["1008"] == "555"  # the loser's customer keeps its earlier binding


def test_a_moved_binding_cuts_the_previous_account_off_mirror_off(fresh):
    app, standins, _ = fresh
    old = {"channelType": "telegram", "messengerUserId": "100500"}  # holds 1006
    assert requests.get(f"{app.base}/auth/status", params=old, timeout=30).json()[
        "status"] == "authorized"  # and cached
    moved = contact(app.base, "777", "79990000006")
    assert (moved["status"], moved["customerId"]) == ("authorized", "1006")
    status = requests.get(f"{app.base}/auth/status", params=old, timeout=30).json()
    assert status["status"] == "not_authorized"
    repeat = requests.post(f"{app.base}/orders/repeat", data={**old, "sourceOrderId": "5001"},
                           timeout=30).json()
    assert repeat["status"] == "not_authorized"
    assert standins.state.created_orders == []


def test_redis_flushed_between_a_repeat_and_its_replay_makes_one_order(fresh):
    app, standins, redis_server = fresh
    repeat = {"channelType": "telegram", "messengerUserId": "100500", "sourceOrderId": "5001"}
    first = requests.post(f"{app.base}/orders/repeat", data=repeat, timeout=30).json()
    assert first["status"] == "created"
    redis.Redis.from_url(redis_server.url).flushall()  # a restart without persistence
    again = requests.post(f"{app.base}/orders/repeat", data=repeat, timeout=30).json()
    assert (again["status"], again["newOrderId"]) == ("created", first["newOrderId"])
    assert len(standins.state.created_orders) == 1


def test_health_is_503_while_redis_refuses_writes(fresh):
    """Redis full under noeviction answers PING but refuses every write: /health says so
    (503, with Redis's reason) instead of 200 while every start is storage_unavailable."""
    app, _, redis_server = fresh
    client = redis.Redis.from_url(redis_server.url)
    assert requests.get(f"{app.base}/health", timeout=10).status_code == 200
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")  # below what it holds: at maxmemory, full
    try:
        response = requests.get(f"{app.base}/health", timeout=10)
        body = response.json()
        assert (response.status_code, body["status"], body["redis"]) == (
            503, "error", "refuses_writes")
        assert body["reason"].startswith("OutOfMemoryError") and "maxmemory" in body["reason"]
        assert start(app.base, user="full")["errorCode"] == "storage_unavailable"
    finally:
        client.config_set("maxmemory", "0")
    assert requests.get(f"{app.base}/health", timeout=10).status_code == 200


def test_strangers_starts_leave_real_customers_their_codes(fresh):
    """Token-only configuration: 300 starts to unknown phones from 30 throwaway accounts
    (all from one address, as the bot platform's) neither spend a per-address cap shared
    by everyone nor the day's cost budget (100 here, 1 a code): a real customer's start
    is then sent."""
    app, standins, _ = fresh

    def stranger(n: int) -> str:
        answer = start(app.base, user=f"throwaway{n // 10}", phone=f"7999500{n:04d}")
        return answer["status"] if answer["status"] == "sent" else str(answer)

    with ThreadPoolExecutor(3) as pool:
        statuses = list(pool.map(stranger, range(300)))
    assert statuses == ["sent"] * 300
    assert standins.state.outbox == type(standins.state.outbox)()  # nothing was sent
    customer = start(app.base, user="real-customer")
    assert (customer["status"], customer["errorCode"]) == ("sent", None)
