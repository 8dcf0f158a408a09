"""Small helpers shared by the HTTP tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gurugrow.stores import keys as redis_keys

BODY_KINDS = ("form", "json")

TG = {"channelType": "telegram", "messengerUserId": "123456789", "chatExternalId": "chat-1"}


def post(client, path: str, data: dict[str, Any], kind: str = "form"):
    """POST ``data`` as form-urlencoded or JSON; return the parsed JSON answer."""
    if kind == "json":
        response = client.post(path, json=data)
    else:
        response = client.post(path, data=data)
    assert response.status_code == 200, response.data
    assert response.is_json
    return response.get_json()


def get(client, path: str, params: dict[str, Any]):
    response = client.get(path, query_string=params)
    assert response.status_code == 200, response.data
    return response.get_json()


def set_clock(app, now: float) -> None:
    """Move the app's notion of time (OTP expiry and verifiedUntil)."""
    app.extensions["gurugrow"].clock.set(now)


def redis_of(target: Any) -> Any:
    """The Redis client behind an app (or its Services), for a test that looks at keys."""
    svc = target.extensions["gurugrow"] if hasattr(target, "extensions") else target
    return svc.storage.client


def identity_locked_for(app, channel: str, account_id: str) -> int:
    """Seconds this messenger identity is still locked out of checking codes (0: not),
    read from its lock key in Redis."""
    svc = app.extensions["gurugrow"]
    key = redis_keys.identity_lock(svc.settings.redis_prefix, channel, account_id)
    return max(int(redis_of(svc).ttl(key)), 0)


def run_concurrently(count: int, action: Callable[[], Any]) -> list[Any]:
    """Start ``count`` threads that call ``action`` at the same moment; their results."""
    barrier = threading.Barrier(count)
    results: list[Any] = []

    def run() -> None:
        barrier.wait()
        results.append(action())

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def arrange_bound_world(upstreams):
    """A customer bound to Telegram 100500 with an order, another customer, a catalog
    offer and a bundle (the call-budget and RetailCRM quota tests' common world)."""
    upstreams.add_customer(626518, "+79990000006", bot_telegram_account_id="100500",
                           chatbot_interacted="true")
    upstreams.add_customer(1001, "+79990000001")
    upstreams.add_offer(501, "Миноксидил 5%")
    upstreams.add_bundle(31, "SET-MALE-BASIC")
    upstreams.add_order(5001, 626518, status="send-to-delivery")
    return upstreams
