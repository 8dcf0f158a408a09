"""Markers and leases are released and finished only by their owner: a slow loader or a
slow run-once attempt whose hold lapsed and was taken by another leaves the other's
marker, lease and result alone."""

from __future__ import annotations

import json

import fakeredis
import pytest

from gurugrow.stores import keys as redis_keys
from gurugrow.stores.cache import cached_json
from gurugrow.stores.once import run_once
from tests.helpers import arrange_bound_world, get, redis_of, run_concurrently

BOUND = {"channelType": "telegram", "messengerUserId": "100500"}

KEY, LEASE = redis_keys.operation_once("gg:", "op", "d"), redis_keys.operation_lease(
    "gg:", "op", "d")


@pytest.fixture
def r():
    return fakeredis.FakeRedis()


def test_a_loader_whose_marker_lapsed_leaves_the_next_loaders_marker(r):
    marker = redis_keys.loading_marker("gg:cache:x")

    def slow_load():
        r.set(marker, "another-loader", ex=5)  # ours lapsed meanwhile; another took it
        return {"v": 1}

    assert cached_json(r, "gg:cache:x", 60, slow_load) == {"v": 1}
    assert r.get(marker) == b"another-loader"
    assert json.loads(r.get("gg:cache:x")) == {"v": 1}


def test_a_loader_releases_its_own_marker(r):
    assert cached_json(r, "gg:cache:y", 60, lambda: [1]) == [1]
    assert r.exists(redis_keys.loading_marker("gg:cache:y")) == 0


def test_an_attempt_whose_lease_was_taken_over_finishes_nothing(r):
    def overtaken(lease):
        r.set(LEASE, "the-next-attempt", px=10_000)  # ours lapsed; the next one holds it
        return {"status": "created", "by": "the-late-attempt"}

    assert run_once(r, KEY, LEASE, 60, overtaken)["by"] == "the-late-attempt"
    assert r.hget(KEY, "result") is None  # the running attempt's result will be kept
    assert r.get(LEASE) == b"the-next-attempt"


@pytest.mark.parametrize("lapsed", [False, True])
def test_the_holder_keeps_its_result_even_when_its_lease_lapsed_unclaimed(r, lapsed):
    def work(lease):
        if lapsed:
            r.delete(LEASE)  # the lease ran out, nobody took over
        return {"status": "created"}

    run_once(r, KEY, LEASE, 60, work)
    assert json.loads(r.hget(KEY, "result")) == {"status": "created"}
    assert r.exists(LEASE) == 0
    # A repeat gets the kept result without running anything.
    assert run_once(r, KEY, LEASE, 60, lambda lease: pytest.fail("ran twice")) == {
        "status": "created"}



def test_callers_missing_one_customers_orders_at_once_load_them_once(client, upstreams):
    """The orders cache is the single-flight JSON cache: concurrent misses cost one CRM
    read, the others wait for it."""
    world = arrange_bound_world(upstreams)
    get(client, "/orders", BOUND)  # statuses and the binding cached; the order list too
    redis_of(client.application).delete(
        redis_keys.orders_cache("gg:", "626518"))
    world.state.delay["orders"] = 0.2  # a slow answer: the others arrive meanwhile
    before = len(world.crm_calls("GET /api/v5/orders"))
    answers = run_concurrently(6, lambda: get(client, "/orders", BOUND))
    assert [a["status"] for a in answers] == ["ok"] * 6
    assert len(world.crm_calls("GET /api/v5/orders")) - before == 1
