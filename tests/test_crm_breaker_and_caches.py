"""The RetailCRM circuit breaker and the binding / order-list caches, through HTTP."""

from __future__ import annotations

import time

import pytest
import requests
import responses
from prometheus_client import REGISTRY

from gurugrow.basics.errors import UpstreamUnavailable
from gurugrow.gateways.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from gurugrow.gateways.http import HttpClient
from gurugrow.stores import keys as redis_keys
from tests.helpers import (
    BODY_KINDS,
    TG,
    arrange_bound_world,
    get,
    post,
    redis_of,
    run_concurrently,
)

BOUND = {"channelType": "telegram", "messengerUserId": "100500"}
UNBOUND = {"channelType": "telegram", "messengerUserId": "nobody"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def world(upstreams):
    return arrange_bound_world(upstreams)


# -- breaker ------------------------------------------------------------------------------
def test_breaker_opens_after_consecutive_failures_then_lets_one_probe_through():
    now = [0.0]
    breaker = CircuitBreaker(failures=3, cooloff_seconds=10, monotonic=lambda: now[0])
    for _ in range(2):
        assert breaker.allow()
        breaker.failed()
    breaker.succeeded()  # a success in between starts the count again
    for _ in range(3):
        assert breaker.allow()
        breaker.failed()
    assert breaker.state == OPEN and not breaker.allow()
    now[0] = 10.0
    assert breaker.state == HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # one probe only
    breaker.failed()  # the probe failed: open again for a full cool-off
    assert breaker.state == OPEN
    now[0] = 20.0
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == CLOSED and breaker.allow() and breaker.allow()


def test_a_503_between_timeouts_does_not_keep_the_breaker_closed():
    """503 is the quota's answer: it neither counts as a failure nor clears the failures
    before it, so a CRM alternating timeouts and 503s is still cut off."""
    breaker = CircuitBreaker(failures=2, cooloff_seconds=10)
    crm = HttpClient("retailcrm", "https://crm.example", timeout=1, connect_timeout=1,
                     breaker=breaker)
    url = "https://crm.example/api/v5/customers"
    with responses.RequestsMock() as mock:
        mock.get(url, body=requests.ReadTimeout("read timed out"))
        mock.get(url, status=503, json={"success": False, "errorMsg": "Rate limit"})
        mock.get(url, body=requests.ReadTimeout("read timed out"))
        with pytest.raises(UpstreamUnavailable):
            crm.request("GET", "/api/v5/customers")
        assert crm.request("GET", "/api/v5/customers")[0] == 503
        assert breaker.state == CLOSED
        with pytest.raises(UpstreamUnavailable):
            crm.request("GET", "/api/v5/customers")
    assert breaker.state == OPEN

@pytest.mark.parametrize("env_overrides", [{"RETAILCRM_BREAKER_FAILURES": "2",
                                            "RETAILCRM_BREAKER_COOLOFF_SECONDS": "0.3"}])
@pytest.mark.parametrize("failure", ["timeout", "http_500"])
def test_open_breaker_answers_crm_unavailable_without_calling(client, world, upstreams,
                                                               failure):
    failing = {"on"}
    if failure == "timeout":
        upstreams.app.config["PROPAGATE_EXCEPTIONS"] = True  # reaches requests as raised
        upstreams.app.before_request(lambda: _time_out_customer_lookups(failing))
    else:
        world.fail["customers"] = (500, {"success": False, "errorMsg": "Internal"})
    outcome = "timeout" if failure == "timeout" else "http_5xx"
    labels = {"gateway": "retailcrm", "method": "GET /api/v5/customers", "outcome": outcome}
    seen = sample("gurugrow_upstream_requests_total", **labels)
    for _ in range(2):
        answer = get(client, "/auth/status", BOUND)
        assert answer["errorCode"] == "crm_unavailable"
    assert sample("gurugrow_upstream_requests_total", **labels) == seen + 2
    assert sample("gurugrow_crm_breaker_open") == 1
    calls = len(world.calls)
    for path, kind in (("/auth/status", None), ("/orders", None), ("/auth/start", "form"),
                       ("/auth/start", "json")):
        started = time.monotonic()
        answer = get(client, path, BOUND) if kind is None else post(
            client, path, {**TG, "phone": "79990000001"}, kind)
        assert (answer["status"], answer["errorCode"]) == ("error", "crm_unavailable")
        assert time.monotonic() - started < 0.2
    assert world.calls[calls:] == []  # nothing went out while open
    assert world.sent == []
    time.sleep(0.35)  # cool-off over: one probe goes through; the CRM is back
    world.fail.pop("customers", None)
    failing.clear()
    assert get(client, "/auth/status", BOUND)["status"] == "authorized"
    assert sample("gurugrow_crm_breaker_open") == 0


def _time_out_customer_lookups(failing: set[str]) -> None:
    from flask import request

    if failing and request.path == "/retailcrm/api/v5/customers":
        raise requests.ReadTimeout("read timed out")


def test_health_never_calls_the_crm(client, world):
    before = len(world.calls)
    assert client.get("/health").status_code == 200
    assert world.calls[before:] == []


# -- binding cache --------------------------------------------------------------------------
def test_orders_after_status_reuses_the_cached_binding(app, client, world):
    assert get(client, "/auth/status", BOUND)["status"] == "authorized"
    before = sample("gurugrow_cache_lookups_total", cache="binding", result="hit")
    calls = len(world.calls)
    assert get(client, "/orders", BOUND)["status"] == "ok"
    assert "GET /api/v5/customers" not in world.calls[calls:]
    assert sample("gurugrow_cache_lookups_total", cache="binding", result="hit") == before + 1
    key = redis_keys.binding_cache("gg:", "telegram", "100500")
    assert 0 < redis_of(app).ttl(key) <= 300


def test_a_binding_changed_in_the_crm_shows_within_the_ttl(app, client, world):
    """A manager clearing the field: the cache answers until BINDING_CACHE_SECONDS."""
    get(client, "/auth/status", BOUND)
    world.customers["626518"]["customFields"].pop("bot_telegram_account_id")
    assert get(client, "/auth/status", BOUND)["status"] == "authorized"  # still cached
    redis_of(app).delete(redis_keys.binding_cache("gg:", "telegram", "100500"))  # expired
    assert get(client, "/auth/status", BOUND)["status"] == "not_authorized"


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_no_binding_is_cached_briefly_and_replaced_when_this_service_binds(app, client, world,
                                                                            kind):
    identity = {**TG, "messengerUserId": "new-user"}
    assert get(client, "/auth/status", identity)["status"] == "not_authorized"
    calls = len(world.calls)
    assert get(client, "/auth/status", identity)["status"] == "not_authorized"
    assert world.calls[calls:] == []  # the negative answer came from the cache
    key = redis_keys.binding_cache("gg:", "telegram", "new-user")
    assert 0 < redis_of(app).ttl(key) <= 10
    started = post(client, "/auth/start", {**identity, "phone": "79990000001"}, kind)
    post(client, "/auth/check", {**identity, "sessionId": started["sessionId"],
                                 "code": world.codes_sent()[-1]}, kind)
    calls = len(world.calls)
    status = get(client, "/auth/status", identity)
    assert (status["status"], status["customerId"], status["maskedPhone"]) == (
        "authorized", "1001", "+7******0001")
    assert world.calls[calls:] == []  # written by the bind, no lookup
    assert 10 < redis_of(app).ttl(key) <= 300


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_unlink_looks_up_fresh_and_drops_the_cached_binding(app, client, world, kind):
    get(client, "/auth/status", BOUND)
    calls = len(world.calls)
    assert post(client, "/auth/unlink", BOUND, kind)["status"] == "unlinked"
    assert world.calls[calls:][0] == "GET /api/v5/customers"  # not from the cache
    assert get(client, "/auth/status", BOUND)["status"] == "not_authorized"


def test_several_bound_customers_are_never_cached(app, client, world):
    world.add_customer(2, "+79990000002", bot_telegram_account_id="100500")
    assert get(client, "/auth/status", BOUND)["status"] == "conflict"
    assert not redis_of(app).exists(redis_keys.binding_cache("gg:", "telegram", "100500"))


def test_interacted_flag_is_written_once_and_remembered(app, client, world):
    world.customers["626518"]["customFields"].pop("chatbot_interacted")
    get(client, "/orders", BOUND)
    get(client, "/orders", BOUND)
    assert [e for e in world.edits if "chatbot_interacted" in e[1]] == [
        ("626518", {"chatbot_interacted": "true"})]


@pytest.mark.parametrize("env_overrides", [{"BINDING_CACHE_SECONDS": "0"}])
def test_binding_cache_off(client, world):
    get(client, "/auth/status", BOUND)
    calls = len(world.calls)
    get(client, "/auth/status", BOUND)
    assert world.calls[calls:] == ["GET /api/v5/customers"]


# -- order-list cache -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_order_list_is_cached_and_dropped_when_this_service_orders(app, client, world, kind):
    first = get(client, "/orders", BOUND)
    calls = len(world.calls)
    assert get(client, "/orders", BOUND) == first
    assert world.calls[calls:] == []
    key = redis_keys.orders_cache("gg:", "626518")
    assert 0 < redis_of(app).ttl(key) <= 60
    assert post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"},
                kind)["status"] == "created"
    assert not redis_of(app).exists(key)
    after = get(client, "/orders", BOUND)
    assert after["shownCount"] == first["shownCount"] + 1
    assert post(client, "/orders/recommended/create", {**BOUND, "offerCode":
                "male_hairloss_basic"}, kind)["status"] == "created"
    assert not redis_of(app).exists(key)
    assert get(client, "/orders", BOUND)["shownCount"] >= after["shownCount"]


def test_cache_lookups_are_counted(client, world):
    before = sample("gurugrow_cache_lookups_total", cache="orders", result="miss")
    hits = sample("gurugrow_cache_lookups_total", cache="orders", result="hit")
    get(client, "/orders", BOUND)
    get(client, "/orders", BOUND)
    assert sample("gurugrow_cache_lookups_total", cache="orders", result="miss") == before + 1
    assert sample("gurugrow_cache_lookups_total", cache="orders", result="hit") == hits + 1
    assert sample("gurugrow_cache_lookups_total", cache="statuses", result="hit") >= 1


def test_a_missing_reference_is_loaded_once_for_a_wave(client, world):
    """A broadcast's first wave: eight users' first /orders at once load the statuses
    reference once (the others wait for it), not once each."""
    identities = []
    for i in range(8):
        world.add_customer(3000 + i, f"+7999000{3000 + i}", bot_telegram_account_id=f"w{i}",
                           chatbot_interacted="true")
        identities.append({"channelType": "telegram", "messengerUserId": f"w{i}"})
    world.state.delay["statuses"] = 0.2  # a slow reference answer: the others arrive
    answers = run_concurrently(8, lambda: get(client, "/orders", identities.pop()))
    assert {a["status"] for a in answers} == {"empty"}
    assert world.crm_calls("GET /api/v5/reference/statuses") == [
        "GET /api/v5/reference/statuses"]
