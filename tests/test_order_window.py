"""RetailCRM is the last word on "done": an order request repeated after Redis lost its
keys finds the order it made (by an externalId of what it is and its window) instead of
creating a second one; a deliberate repeat windows later is a new order."""

from __future__ import annotations

import pytest

from tests.helpers import BODY_KINDS, arrange_bound_world, post, redis_of, set_clock

BOUND = {"channelType": "telegram", "messengerUserId": "100500"}
NOW = 1_780_000_000.0


@pytest.fixture
def world(app, upstreams):
    set_clock(app, NOW)
    return arrange_bound_world(upstreams)


def lose_redis(app) -> None:
    redis_of(app).flushall()


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_repeat_replayed_after_redis_lost_its_keys_makes_one_order(app, client, world,
                                                                     kind):
    first = post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"}, kind)
    assert first["status"] == "created"
    lose_redis(app)
    set_clock(app, NOW + 300)
    again = post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"}, kind)
    assert again == first
    assert len(world.created) == 1
    # A deliberate repeat two windows (ORDER_ONCE_WINDOW_SECONDS) later is a new order.
    set_clock(app, NOW + 1300)
    lose_redis(app)
    later = post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"}, kind)
    assert later["status"] == "created" and later["newOrderId"] != first["newOrderId"]
    assert len(world.created) == 2


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_recommended_create_replayed_after_redis_lost_its_keys_makes_one_order(
        app, client, world, kind):
    fields = {**BOUND, "offerCode": "male_hairloss_basic"}
    first = post(client, "/orders/recommended/create", fields, kind)
    assert first["status"] == "created"
    lose_redis(app)
    again = post(client, "/orders/recommended/create", fields, kind)
    assert again == first
    assert len(world.created) == 1
    set_clock(app, NOW + 1300)
    lose_redis(app)  # (fakeredis keeps real time: the marker's TTL has not run out)
    later = post(client, "/orders/recommended/create", fields, kind)
    assert later["status"] == "created" and later["orderId"] != first["orderId"]
