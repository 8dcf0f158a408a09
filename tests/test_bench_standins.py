"""The benchmark's stand-ins (bench/standins.py): the sandbox stand-ins plus seeding
routes that build a broadcast's audience, and a fixed latency."""

from __future__ import annotations

import time

import pytest

from bench.standins import bench_standins_app


@pytest.fixture
def bench():
    return bench_standins_app()


def test_the_stand_in_seeds_a_bound_audience(bench):
    state = bench.extensions["sandbox_state"]
    seeded = bench.test_client().post("/seed-customers?from=5001&count=3").get_json()
    assert len(seeded["accounts"]) == 3
    for account in seeded["accounts"]:
        bound = [c for c in state.customers.values()
                 if (c["customFields"] or {}).get("bot_telegram_account_id") == account]
        assert len(bound) == 1
        assert any(o["customer"]["id"] == bound[0]["id"] for o in state.orders.values())


@pytest.mark.parametrize("orders", [1, 5])
def test_the_stand_in_seeds_orders_per_customer(bench, orders):
    state = bench.extensions["sandbox_state"]
    before = len(state.orders)
    bench.test_client().post(f"/seed-customers?from=5001&count=2&orders={orders}")
    assert len(state.orders) - before == 2 * orders


def test_the_stand_in_seeds_copies_of_an_order(bench):
    state = bench.extensions["sandbox_state"]
    ids = bench.test_client().post("/seed-orders?from=5001&count=2").get_json()["ids"]
    copies = [state.orders[str(oid)] for oid in ids]
    assert len({o["number"] for o in copies}) == 2
    assert all(o["customer"] == state.orders["5001"]["customer"] for o in copies)
    missing = bench.test_client().post("/seed-orders?from=nope")
    assert missing.status_code == 404


def test_every_answer_waits_the_fixed_latency():
    client = bench_standins_app(latency_seconds=0.05).test_client()
    started = time.monotonic()
    assert client.get("/outbox").status_code == 200
    assert time.monotonic() - started >= 0.05


def test_the_sandbox_itself_has_no_seeding_routes():
    from gurugrow.sandbox.standins import create_standins_app
    assert create_standins_app().test_client().post("/seed-orders?from=5001").status_code == 404
