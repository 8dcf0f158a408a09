"""Pins the upstream requests and Redis round trips each endpoint makes in its common case,
at the minimum the contract allows (RetailCRM allows a key ~10 requests a second)."""

from __future__ import annotations

import pytest
from fakeredis._clients._sync import FakeRedisConnection

from gurugrow.stores import keys as redis_keys
from tests.helpers import TG, arrange_bound_world, get, post, redis_of

BOUND = {"channelType": "telegram", "messengerUserId": "100500"}


class RoundTrips:
    """Counts what the app sends to Redis: one per command, one per pipeline or script."""

    def __init__(self) -> None:
        self.count = 0


# A new connection's handshake (HELLO, CLIENT SETINFO): made once per pooled connection,
# when a request's two reads at once first need a second one; not a request's trip.
HANDSHAKE = (b"HELLO", b"CLIENT")


@pytest.fixture
def round_trips(monkeypatch):
    counter = RoundTrips()
    original = FakeRedisConnection.send_packed_command

    def counting(self, command, *args, **kwargs):
        first = command[0] if isinstance(command, list | tuple) else command
        if not any(b"\r\n" + word + b"\r\n" in first[:40] for word in HANDSHAKE):
            counter.count += 1
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(FakeRedisConnection, "send_packed_command", counting)
    return counter


@pytest.fixture
def world(upstreams):
    """A bound customer with an order, a catalog with the offers and a bundle."""
    return arrange_bound_world(upstreams)


def measure(world, round_trips, call):
    """(CRM requests as METHOD path, GreenSMS sends, deduper calls, Redis round trips)."""
    crm_before, sent_before = len(world.calls), len(world.sent)
    dedupe_before, trips_before = len(world.dedupe_calls), round_trips.count
    answer = call()
    return (answer, world.calls[crm_before:], len(world.sent) - sent_before,
            len(world.dedupe_calls) - dedupe_before, round_trips.count - trips_before)


def warm(client, world):
    """First calls load scripts and fill caches; the common case is the warm one."""
    get(client, "/orders", BOUND)
    post(client, "/orders/recommended/preview", {**BOUND, "offerCode": "male_hairloss_basic"})
    warm_session = post(client, "/auth/start", {**TG, "phone": "79990000009",
                                                "messengerUserId": "warm"})["sessionId"]
    post(client, "/auth/check", {**TG, "messengerUserId": "warm", "sessionId": warm_session,
                                 "code": "000000"})
    tracked = post(client, "/auth/start", {**TG, "phone": "79990000006",
                                           "messengerUserId": "warm-2"})["sessionId"]
    post(client, "/auth/resend", {**TG, "messengerUserId": "warm-2",
                                  "sessionId": tracked})  # loads the delivery scripts
    known = post(client, "/auth/start", {**TG, "phone": "79990000001",
                                         "messengerUserId": "warm"})["sessionId"]
    post(client, "/auth/check", {**TG, "messengerUserId": "warm", "sessionId": known,
                                 "code": world.codes_sent()[-1]})
    post(client, "/orders/recommended/create", {**BOUND, "offerCode": "male_hairloss_basic",
                                                "firstName": "Разогрев"})
    world.add_order(5002, 626518, status="send-to-delivery")
    post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5002"})


# A lease is renewed every quarter of its length while its work runs: a long lease keeps a
# loaded machine's slow request from adding a renewal to the count.
STEADY_LEASES = {"IN_PROGRESS_LEASE_SECONDS": "60"}


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0",
                                            **STEADY_LEASES}])
def test_requests_per_endpoint(client, world, round_trips):
    """Warm: the binding is cached (by warm()'s /orders), the order list is not (warm()'s
    order creation dropped it). Every CRM call costs one Redis round trip for its slot."""
    warm(client, world)
    m = lambda call: measure(world, round_trips, call)  # noqa: E731

    answer, crm, sms, dedupe, trips = m(lambda: get(client, "/auth/status", BOUND))
    assert (answer["status"], crm, sms, dedupe, trips) == ("authorized", [], 0, 0, 1)

    # binding hit, order-list miss + its loading marker (one load for callers missing
    # at once) + slot + store with the marker's release, statuses hit
    answer, crm, sms, dedupe, trips = m(lambda: get(client, "/orders", BOUND))
    assert (answer["status"], crm, trips) == ("ok", ["GET /api/v5/orders"], 6)

    answer, crm, sms, dedupe, trips = m(lambda: post(client, "/auth/start", {
        **TG, "phone": "79990000001"}))
    # admission with the CRM call's slot, then the session and its delivery record
    # (GreenSMS's request_id, the due check) together
    assert (answer["status"], crm, sms, dedupe, trips) == (
        "sent", ["GET /api/v5/customers"], 1, 0, 2)
    session_id = answer["sessionId"]

    # the binding check stays fresh from the CRM; the new binding is cached
    answer, crm, sms, dedupe, trips = m(lambda: post(client, "/auth/check", {
        **TG, "sessionId": session_id, "code": world.codes_sent()[-1]}))
    # Find-verify-and-claim with the first CRM call's slot and the account's binding
    # hold; after "who holds the account", what this service last wrote into the
    # customer's field (who held it before is what the start's lookup read, unless
    # written since: no read of the customer) with the write's slot, due next; then,
    # together, the answer a replay gets back stored, the new binding cached, the field's
    # record and, last, the hold freed.
    assert (answer["status"], crm, trips) == (
        "authorized", ["GET /api/v5/customers", "POST /api/v5/customers/1001/edit"], 3)

    answer, crm, sms, dedupe, trips = m(lambda: post(client, "/auth/start", {
        **TG, "phone": "79990000001", "messengerUserId": "r"}))
    status_calls = len(world.state.status_calls)
    answer, crm, sms, dedupe, trips = m(lambda: post(client, "/auth/resend", {
        **TG, "messengerUserId": "r", "sessionId": answer["sessionId"]}))
    # session, delivery record, its new status (delivered), admission, new code, new record;
    # and one GreenSMS status read of the previous (Telegram) send.
    assert (answer["status"], crm, sms, trips) == ("sent", [], 1, 6)
    assert len(world.state.status_calls) == status_calls + 1

    answer, crm, sms, dedupe, trips = m(lambda: post(client, "/orders/repeat", {
        **BOUND, "sourceOrderId": "5001"}))
    # The cached binding, the source order's slot; the claim with the slot of the first of
    # two reads at once (the order looked up by its windowed externalId, as Redis may
    # have lost the marker, beside the catalog), the other's slot; the new order's number
    # noted (found by it after a crash) with the create's slot; then together the
    # customer's cached order list dropped, the answer kept and the lease freed.
    assert (answer["status"], crm, trips) == ("created", [
        "GET /api/v5/orders/5001", "GET /api/v5/orders", "GET /api/v5/store/offers",
        "POST /api/v5/orders/create"], 6)

    answer, crm, sms, dedupe, trips = m(lambda: post(client, "/orders/recommended/preview", {
        **BOUND, "offerCode": "male_hairloss_basic"}))
    # The binding, then the bundle's cached catalog entry (its price for the text).
    assert (answer["status"], crm, trips) == ("ok", [], 2)

    answer, crm, sms, dedupe, trips = m(lambda: post(client, "/orders/recommended/create", {
        **BOUND, "offerCode": "male_hairloss_basic"}))
    # looked up by its windowed externalId first (Redis may have lost the run-once marker)
    assert (answer["status"], crm, trips) == (
        "created", ["GET /api/v5/orders", "POST /api/v5/orders/create"], 7)

    # unlink looks the binding up fresh, then drops the cached one
    answer, crm, sms, dedupe, trips = m(lambda: post(client, "/auth/unlink", BOUND))
    assert (answer["status"], crm, trips) == (
        "unlinked", ["GET /api/v5/customers", "POST /api/v5/customers/626518/edit"], 4)


def my_orders_visit(client, world, round_trips) -> list[str]:
    """A "My orders" visit as the bot makes it: /auth/status, then /orders."""
    _, crm_status, *_ = measure(world, round_trips, lambda: get(client, "/auth/status", BOUND))
    _, crm_orders, *_ = measure(world, round_trips, lambda: get(client, "/orders", BOUND))
    return crm_status + crm_orders


def test_my_orders_visit_costs_two_calls_cold_and_one_warm(client, world, round_trips):
    # Another customer's visit loads the statuses reference (shared, cached 10 minutes).
    world.add_customer(7, "+79990000007", bot_telegram_account_id="other",
                       chatbot_interacted="true")
    get(client, "/orders", {"channelType": "telegram", "messengerUserId": "other"})
    cold = my_orders_visit(client, world, round_trips)
    assert cold == ["GET /api/v5/customers", "GET /api/v5/orders"]
    # Warm: the binding is cached and the order list expired (or was dropped).
    redis_of(client.application).delete(
        redis_keys.orders_cache("gg:", "626518"))
    assert my_orders_visit(client, world, round_trips) == ["GET /api/v5/orders"]
    # Within ORDERS_CACHE_SECONDS nothing at all.
    assert my_orders_visit(client, world, round_trips) == []


def test_duplicates_cost_one_deduper_call(client, world, round_trips):
    world.add_customer(2, "89990000001")
    world.dedupe_answer = {"status": "resolved", "finalCustomerId": "2"}
    answer, crm, sms, dedupe, trips = measure(world, round_trips, lambda: post(
        client, "/auth/start", {**TG, "phone": "79990000001"}))
    assert (answer["status"], crm, sms, dedupe) == ("sent", ["GET /api/v5/customers"], 1, 1)


@pytest.mark.parametrize("env_overrides", [{"CONTACT_VERIFIED_CHANNELS": "telegram",
                                            **STEADY_LEASES}])
def test_requests_of_a_contact_binding(client, world, round_trips):
    """A shared contact: the phone's customer, who holds the messenger id, the binding
    write — the calls of /auth/start's lookup and /auth/check's binding, and no send."""
    contact = {"channelType": "telegram", "messengerUserId": "c1", "contactUserId": "c1",
               "phone": "79990000001"}
    post(client, "/auth/contact", {**contact, "messengerUserId": "w", "contactUserId": "w"})
    m = lambda call: measure(world, round_trips, call)  # noqa: E731
    answer, crm, sms, dedupe, trips = m(lambda: post(client, "/auth/contact", contact))
    # claim the run-once marker, the counters with the first CRM call's slot, the
    # account's binding hold claimed with the customer's field as this service last
    # wrote it (to "w", later than the phone's lookup read it) and the next slot, the
    # last slot; together: as the customer was bound to "w" before, w's cached binding
    # dropped, the binding cache with the unlink pointer, the field's record, and the
    # hold freed; then w's kept contact answer dropped, the answer kept for replays
    assert (answer["status"], crm, sms, dedupe, trips) == ("authorized", [
        "GET /api/v5/customers", "GET /api/v5/customers",
        "POST /api/v5/customers/1001/edit"], 0, 0, 7)
    # a replay: the kept answer, nothing else
    answer, crm, sms, dedupe, trips = m(lambda: post(client, "/auth/contact", contact))
    assert (answer["status"], crm, trips) == ("authorized", [], 1)


@pytest.mark.parametrize(("newest_first", "calls"), [(True, 1), (False, 2)])
def test_my_orders_of_45_orders_cost_one_call_newest_first_and_two_oldest_first(
        client, world, round_trips, newest_first, calls):
    """RetailCRM's page order is stated nowhere: page 1, and when it lists oldest first,
    the one page (limit 50) that holds the newest 20."""
    for oid in range(6001, 6046):
        world.add_order(oid, 626518, status="send-to-delivery",
                        created=f"2026-07-{1 + (oid - 6001) // 24:02d} "
                                f"{(oid - 6001) % 24:02d}:00:00")
    world.state.orders_newest_first = newest_first
    get(client, "/orders", BOUND)  # loads the binding and the statuses reference
    redis_of(client.application).delete(
        redis_keys.orders_cache("gg:", "626518"))
    answer, crm, *_ = measure(world, round_trips, lambda: get(
        client, "/orders", {**BOUND, "limit": "3"}))
    assert [o["orderNumber"] for o in answer["orders"]] == ["6045", "6044", "6043"]
    assert crm == ["GET /api/v5/orders"] * calls
