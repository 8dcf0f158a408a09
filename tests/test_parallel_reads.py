"""A request's two independent RetailCRM reads run at once, so the bot waits for the
slower, not their sum: /auth/check's (who holds the account, what the customer holds)
and /orders/repeat's (an order already made in the window, the catalog). Each read here
waits for the other at a barrier: read one after the other, the barrier breaks."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

import pytest
from werkzeug.wrappers import Response

from gurugrow.basics.parallel import both
from gurugrow.stores import keys as redis_keys
from tests.helpers import BODY_KINDS, arrange_bound_world, post, redis_of

BOUND = {"channelType": "telegram", "messengerUserId": "100500"}
NEW = {"channelType": "telegram", "messengerUserId": "777"}
WHO_HOLDS_THE_ACCOUNT = ("/retailcrm/api/v5/customers", "customFields")
THE_CUSTOMER = ("/retailcrm/api/v5/customers/626518", "")
WINDOW_LOOKUP = ("/retailcrm/api/v5/orders", "externalIds")
CATALOG = ("/retailcrm/api/v5/store/offers", "")


class StandinGate:
    """Stands between the app and the stand-ins: the calls named in ``meet`` wait for
    each other; those named in ``fail`` answer a 500 without reaching them."""

    def __init__(self, upstreams: Any, meet: tuple[tuple[str, str], ...] = (),
                 fail: tuple[tuple[str, str], ...] = ()) -> None:
        self._client = upstreams._client
        self._meet, self._fail = meet, fail
        self.barrier = threading.Barrier(max(len(meet), 1), timeout=10)
        self.met: list[str] = []
        upstreams._client = self

    @staticmethod
    def _is(call: tuple[str, str], path: str, query: str) -> bool:
        return path == call[0] and call[1] in query

    def open(self, path: str, *, query_string: str = "", **kwargs: Any) -> Response:
        if any(self._is(c, path, query_string) for c in self._meet):
            self.barrier.wait()  # BrokenBarrierError when the other read never comes
            self.met.append(path)
        if any(self._is(c, path, query_string) for c in self._fail):
            return Response(b"<html>oops</html>", status=500, content_type="text/html")
        return self._client.open(path, query_string=query_string, **kwargs)


@pytest.fixture
def world(upstreams):
    return arrange_bound_world(upstreams)


def started_check(client, who: dict, kind: str, world) -> dict:
    started = post(client, "/auth/start", {**who, "phone": "79990000006"}, kind)
    return {**who, "sessionId": started["sessionId"], "code": world.codes_sent()[-1]}


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_checks_two_reads_run_at_once(app, client, world, kind):
    """A session that does not say what the customer's field held (one issued before
    sessions said it) reads the customer beside who holds the account."""
    check = started_check(client, NEW, kind, world)
    redis_of(app).hdel(redis_keys.otp_session("gg:", check["sessionId"]), "customer_held",
                       "customer_held_at")
    gate = StandinGate(world, meet=(WHO_HOLDS_THE_ACCOUNT, THE_CUSTOMER))
    answer = post(client, "/auth/check", check, kind)
    assert (answer["status"], answer["customerId"]) == ("authorized", "626518")
    assert sorted(gate.met) == sorted([WHO_HOLDS_THE_ACCOUNT[0], THE_CUSTOMER[0]])
    assert world.field(626518, "bot_telegram_account_id") == "777"


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_repeats_window_lookup_and_catalog_read_run_at_once(client, world, kind):
    gate = StandinGate(world, meet=(WINDOW_LOOKUP, CATALOG))
    answer = post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"}, kind)
    assert answer["status"] == "created"
    assert sorted(gate.met) == sorted([WINDOW_LOOKUP[0], CATALOG[0]])
    assert len(world.created) == 1


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_failed_catalog_read_does_not_hide_an_order_already_made(app, client, world,
                                                                     kind):
    first = post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"}, kind)
    redis_of(app).flushall()  # the run-once marker is gone: RetailCRM has the last word
    StandinGate(world, fail=(CATALOG,))
    again = post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"}, kind)
    assert again == first
    assert len(world.created) == 1


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_failed_catalog_read_with_no_order_made_creates_nothing(client, world, kind):
    StandinGate(world, fail=(CATALOG,))
    answer = post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"}, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "crm_unavailable")
    assert world.created == []


def test_both_ends_the_second_before_raising_the_firsts_error():
    ended: list[str] = []
    second_started = threading.Event()

    def first() -> None:
        second_started.wait(5)
        raise ValueError("first failed")

    def second() -> str:
        second_started.set()
        ended.append("second")
        return "done"

    with pytest.raises(ValueError, match="first failed"):
        both(first, second)
    assert ended == ["second"]


def test_both_runs_the_second_in_the_callers_context():
    seen = contextvars.ContextVar("seen", default="outside")
    seen.set("this request")
    assert both(seen.get, seen.get) == ("this request", "this request")


def test_both_nested_in_a_pool_thread_runs_in_turn_and_never_waits_on_the_pool():
    inner: Callable[[], tuple[int, int]] = lambda: both(lambda: 1, lambda: 2)  # noqa: E731
    assert both(lambda: 0, inner) == (0, (1, 2))
