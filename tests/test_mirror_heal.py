"""The mirror as RetailCRM really behaves, through HTTP with one poller pass at
a time: absence is not an answer, evictions repaired, the rolling reconcile, "current"
only at the history's end by its pagination, the poller's priority, queued marks.

RetailCRM is the stand-in behind ``responses``; its history records have the shape of
RetailCRM's own fixtures (``created``/``deleted`` only when true, the entity part holding
only ids, a merge recorded with ``combinedTo``).
"""

from __future__ import annotations

import pytest

from gurugrow.flows import mirror_sync
from gurugrow.flows.mirror_worker import next_interval, run_mirror
from gurugrow.governor import JOURNEY, READ, SlotRider, current_priority
from gurugrow.stores import keys as redis_keys
from gurugrow.stores.caches import FlowCaches
from tests import test_mirror
from tests.helpers import TG, get, redis_of, set_clock

TG_FIELD = "bot_telegram_account_id"
ACCOUNT = TG["messengerUserId"]
NOW = 1_780_000_000.0
CRM_ERROR = (500, {"success": False, "errorMsg": "Internal error"})


@pytest.fixture
def env_overrides():
    return {"CRM_MIRROR": "1", "BINDING_CACHE_SECONDS": "0", "ORDERS_CACHE_SECONDS": "0",
            "MIRROR_MAX_LAG_SECONDS": "60", "MIRROR_RECONCILE_SECONDS": "30"}


# The app at a stopped clock, and the world of tests/test_mirror.py: customer 626518 bound
# to Telegram (interacted) with orders 5001 and 5002, unbound customer 1001 with 5003.
svc = test_mirror.svc
world = test_mirror.world


def sync(svc) -> dict[str, int]:
    return run_mirror(svc, once=True)


def crm_reads(world, before: int) -> list[str]:
    return [c for c in world.calls[before:] if c.startswith(("GET /api/v5/customers",
                                                             "GET /api/v5/orders"))]


def binding_key(svc, account: str = ACCOUNT) -> str:
    return redis_keys.mirror_binding(svc.settings.redis_prefix, "telegram", account)


def test_a_deleted_binding_key_answers_live_and_the_poller_repairs_it(client, svc, world):
    sync(svc)
    redis_of(svc).delete(binding_key(svc))
    before = len(world.calls)
    answer = get(client, "/auth/status", TG)
    assert answer["status"] == "authorized" and answer["customerId"] == "626518"
    assert crm_reads(world, before) == ["GET /api/v5/customers"]  # live, not "not bound"
    sync(svc)  # the read asked for the account to be looked up
    assert redis_of(svc).exists(binding_key(svc))
    before = len(world.calls)
    assert get(client, "/auth/status", TG)["customerId"] == "626518"
    assert world.calls[before:] == []


def test_an_account_nobody_holds_is_known_after_one_look(client, svc, world):
    sync(svc)
    stranger = {**TG, "messengerUserId": "nobody-here"}
    assert get(client, "/auth/status", stranger)["status"] == "not_authorized"  # live
    sync(svc)
    before = len(world.calls)
    assert get(client, "/auth/status", stranger)["status"] == "not_authorized"
    assert world.calls[before:] == []  # the mirror knows: bound to nobody


def test_a_missing_order_list_answers_live_and_is_reread(client, svc, world):
    sync(svc)
    live = get(client, "/orders", TG)
    redis_of(svc).delete(redis_keys.mirror_orders(svc.settings.redis_prefix, "626518"))
    before = len(world.calls)
    assert get(client, "/orders", TG) == live
    assert "GET /api/v5/orders" in world.calls[before:]
    sync(svc)
    before = len(world.calls)
    assert get(client, "/orders", TG) == live
    assert crm_reads(world, before) == []


def test_evictions_seen_by_the_poller_reread_what_is_missing(client, svc, world, monkeypatch):
    sync(svc)
    prefix = svc.settings.redis_prefix
    redis_of(svc).delete(binding_key(svc), redis_keys.mirror_orders(prefix, "626518"))
    evicted = iter([2, 2, 2])
    monkeypatch.setattr(FlowCaches, "evicted_keys", lambda caches: next(evicted))
    sync(svc)  # evicted_keys grew: the bound index is walked, 626518 asked for
    assert redis_of(svc).zscore(redis_keys.mirror_recheck(prefix), "c:626518") is not None
    sync(svc)
    before = len(world.calls)
    assert get(client, "/auth/status", TG)["customerId"] == "626518"
    assert get(client, "/orders", TG)["status"] == "ok"
    assert crm_reads(world, before) == []


def test_the_index_evicted_means_a_full_load(svc, world):
    sync(svc)
    redis_of(svc).delete(redis_keys.mirror_bound_index(svc.settings.redis_prefix))
    sync(svc)
    assert svc.mirror.state()["full_reloads"] == "2"


def test_the_reconcile_removes_a_customer_unbound_without_a_history_record(
        app, client, svc, world):
    sync(svc)
    world.state.manager_unbind_silently("626518", TG_FIELD)
    sync(svc)
    assert svc.mirror.customer("626518") is not None  # the history said nothing
    set_clock(app, NOW + 31)  # MIRROR_RECONCILE_SECONDS=30: every bound customer re-read
    sync(svc)
    assert svc.mirror.customer("626518") is None
    before = len(world.calls)
    assert get(client, "/auth/status", TG)["status"] == "not_authorized"
    assert world.calls[before:] == []


def test_the_reconcile_at_the_default_reads_at_most_once_a_minute(app, svc, world):
    svc_settings = svc.settings
    object.__setattr__(svc_settings, "mirror_reconcile_seconds", 86400.0)
    sync(svc)
    for step in range(1, 13):  # two minutes of 10 s polls
        set_clock(app, NOW + 10 * step)
        sync(svc)
    rereads = int(svc.mirror.state().get("calls_reread") or 0)
    assert rereads <= 2


def test_a_write_that_changes_nothing_keeps_the_expiry(svc, world):
    sync(svc)
    redis_of(svc).expire(binding_key(svc), 100)
    world.state.manager_edit_customer("626518", note_field="x")  # not a field we keep
    sync(svc)
    assert 0 < redis_of(svc).ttl(binding_key(svc)) <= 100


@pytest.mark.parametrize("env_overrides", [{
    "CRM_MIRROR": "1", "BINDING_CACHE_SECONDS": "0", "MIRROR_MAX_LAG_SECONDS": "60"}])
def test_a_short_history_page_with_more_after_it_is_not_the_end(app, client, svc, world,
                                                                monkeypatch, env_overrides):
    sync(svc)
    world.state.history_page_cap = 5  # pages of 5 while the pagination counts them all
    for _ in range(30):
        world.state.manager_set_order_status("5001", "complete")
    monkeypatch.setattr(mirror_sync, "MAX_PAGES_PER_PASS", 2)
    set_clock(app, NOW + 61)
    assert sync(svc) == {"behind": 1}  # two short pages read, the pagination says more
    assert svc.mirror.binding("telegram", ACCOUNT) is None  # not current: reads go live
    for _ in range(3):
        sync(svc)
    assert int(svc.mirror.state()["orders_since"]) == world.state.history["orders"][-1]["id"]
    assert svc.mirror.binding("telegram", ACCOUNT) is not None


def test_the_pollers_history_reads_go_ahead_of_live_reads(svc, world, monkeypatch):
    quota = svc.crm._http.quota
    seen: list[str] = []
    real = quota.acquire

    def acquire(deadline=None, priority=None):
        seen.append(priority or current_priority())
        return real(deadline, priority)

    monkeypatch.setattr(quota, "acquire", acquire)
    sync(svc)  # the load: at read priority, in line with live reads
    assert set(seen) == {READ, JOURNEY} and seen[-1] == READ
    seen.clear()
    world.state.manager_set_order_status("5001", "complete")
    sync(svc)
    assert seen and set(seen) == {JOURNEY}


def test_marks_are_queued_and_written_by_the_poller_even_after_a_failure(app, client, svc,
                                                                       world):
    world.state.manager_edit_customer("626518", chatbot_interacted="")  # never marked
    sync(svc)
    before = len(world.calls)
    assert get(client, "/orders", TG)["status"] == "ok"
    assert crm_reads(world, before) == []  # the mirror answers; the mark is only queued
    assert not [c for c in world.calls[before:] if c.startswith("POST")]
    assert svc.mirror.pending_marks() == 1
    world.state.fail["edit"] = CRM_ERROR
    sync(svc)
    assert svc.mirror.pending_marks() == 1  # failed: kept
    del world.state.fail["edit"]
    sync(svc)
    assert svc.mirror.pending_marks() == 1  # tried again only after MARK_RETRY_SECONDS
    set_clock(app, NOW + mirror_sync.MARK_RETRY_SECONDS + 1)
    sync(svc)
    assert svc.mirror.pending_marks() == 0
    assert world.state.customers["626518"]["customFields"]["chatbot_interacted"] == "true"


def test_marks_wait_for_a_spare_slot(client, svc, world, monkeypatch):
    world.state.manager_edit_customer("626518", chatbot_interacted="")
    sync(svc)
    get(client, "/orders", TG)
    monkeypatch.setattr(SlotRider, "take_now", lambda self: False)  # the bucket is busy
    before = len(world.calls)
    sync(svc)
    assert "POST /api/v5/customers/626518/edit" not in world.calls[before:]
    assert svc.mirror.pending_marks() == 1


def test_the_poll_interval_backs_off_when_idle_up_to_half_the_max_lag():
    waits, interval = [], 5.0
    for busy in (False, False, False, False, True, False):
        interval = next_interval(interval, 5.0, 30.0, busy)
        waits.append(interval)
    assert waits == [10.0, 20.0, 30.0, 30.0, 5.0, 10.0]


def _doctor(app) -> str:
    return app.test_cli_runner().invoke(args=["gurugrow", "doctor"]).output


def test_the_load_shows_its_progress_in_the_doctor_and_the_metrics(app, client, svc, world,
                                                                   monkeypatch):
    from tests.test_alerts import sample, scrape

    seen: list[tuple[str, str]] = []
    real = mirror_sync.Sync._progress

    def progress(self, entity, page, total, read):
        real(self, entity, page, total, read)
        line = next(x for x in _doctor(app).splitlines() if "mirror" in x)
        seen.append((line, scrape(client)))

    monkeypatch.setattr(mirror_sync.Sync, "_progress", progress)
    sync(svc)
    line, text = seen[0]
    assert "never loaded" in line and "loading customers: page 1 of 1, " in line
    assert "calls" in line and "s elapsed" in line and "s left of customers" in line
    assert sample(text, "gurugrow_mirror_load_progress", what="page") == 1
    assert sample(text, "gurugrow_mirror_load_progress", what="pages") == 1
    assert sample(text, "gurugrow_mirror_load_progress", what="calls") >= 3
    done = scrape(client)
    assert sample(done, "gurugrow_mirror_load_progress", what="page") == 0  # no load now


def test_the_doctor_says_the_mirrors_redis_must_not_evict(app, svc, world, monkeypatch):
    sync(svc)
    monkeypatch.setattr(redis_of(svc), "config_get", lambda name: {name: "allkeys-lru"},
                        raising=False)
    line = next(x for x in _doctor(app).splitlines() if "mirror" in x)
    assert "FAIL" in line and "evicts keys (maxmemory-policy allkeys-lru)" in line
    monkeypatch.setattr(redis_of(svc), "config_get", lambda name: {name: "noeviction"},
                        raising=False)
    assert "current" in next(x for x in _doctor(app).splitlines() if "mirror" in x)


def test_queued_marks_show_in_the_metrics(client, svc, world):
    from tests.test_alerts import sample, scrape

    world.state.manager_edit_customer("626518", chatbot_interacted="")
    sync(svc)
    get(client, "/orders", TG)
    assert sample(scrape(client), "gurugrow_mirror_pending", what="marks") == 1


def _order_shapes() -> list[dict]:
    """Every order shape the stand-ins have: the demo data's, the test upstream's (with
    each delivery and tracking form the order view reads), an order this service creates
    (free-form line, unknown offer), and malformed parts."""
    from gurugrow.sandbox.data import demo_data
    from tests.upstreams import Upstreams

    shapes = list(demo_data()["orders"])
    up = Upstreams.__new__(Upstreams)
    up.state = type("S", (), {"orders": {}})()
    deliveries = [None, {"code": "cdek", "data": {"trackNumber": "CD1"},
                         "address": {"text": "Москва, Тверская 1", "city": "Москва"}},
                  {"integrationCode": "russianpost", "trackNumber": "RP1", "cost": 300},
                  {"code": "boxberry", "trackingNumber": "BB1", "address": "Москва"},
                  {"code": "cdek", "data": {"trackingNumber": "CD2", "extra": 1}},
                  {"code": "cdek", "data": "not an object"}]
    for i, delivery in enumerate(deliveries):
        shapes.append(Upstreams.add_order(up, 100 + i, 1, delivery=delivery,
                                          items=[(501, "Миноксидил 5%", 2), (502, "Б", 1.5)]))
    shapes += [
        {"id": 200, "number": "200A", "createdAt": "2026-06-01 10:00:00", "status": "new",
         "customer": {"id": 1}, "items": [{"quantity": 1, "productName": "Товар",
                                           "offer": None, "initialPrice": 0}]},
        {"id": 201, "createdAt": "0001-01-01 00:00:00", "status": "complete",
         "customer": {"id": 1}, "items": None, "delivery": None},
        {"id": 202, "createdAt": "not a date", "status": "new", "customer": {"id": 1}},
    ]
    return shapes


def test_a_mirrored_order_converts_exactly_like_a_live_one_at_a_fraction_of_the_size():
    import json
    from zoneinfo import ZoneInfo

    from gurugrow.flows.mirror_orders import slim_order
    from gurugrow.flows.order_view import present_order

    urls = {"cdek": "https://cdek.example/{code}", "russianpost": "https://rp.example/{code}",
            "boxberry": "https://bb.example/{code}"}
    raw_size = slim_size = 0
    for order in _order_shapes():
        slim = json.loads(json.dumps(slim_order(order)))  # as stored and read back
        for group in ("assembling", "delivery", "complete"):
            for zone in (ZoneInfo("Europe/Moscow"), ZoneInfo("Asia/Vladivostok")):
                assert present_order(slim, group, urls, zone) == present_order(
                    order, group, urls, zone), order["id"]
        assert slim["id"] == order["id"] and slim.get("status") == order.get("status")
        raw_size += len(json.dumps(order, ensure_ascii=False))
        slim_size += len(json.dumps(slim, ensure_ascii=False))
    assert slim_size < raw_size * 0.6


def test_the_load_locates_the_historys_end_in_one_call_whatever_its_length(client, svc,
                                                                          world):
    for _ in range(450):  # a long history, old but for the last 50 records
        world.state.manager_set_order_status("5001", "complete")
    for record in world.state.history["orders"][:400]:
        record["createdAt"] = "2020-01-01 10:00:00"
    sync(svc)
    history_calls = [c for c in world.calls if c.endswith("/history")]
    assert history_calls == ["GET /api/v5/customers/history", "GET /api/v5/orders/history"]
    state = svc.mirror.state()
    assert int(state["orders_since"]) == world.state.history["orders"][-1]["id"]


def test_a_history_quiet_for_the_hour_is_followed_from_the_hour_by_date(client, svc, world):
    for _ in range(5):
        world.state.manager_set_order_status("5001", "complete")
    for record in world.state.history["orders"]:
        record["createdAt"] = "2020-01-01 10:00:00"
    sync(svc)
    assert svc.mirror.state()["orders_since"] == "0"  # none in the last hour
    world.state.manager_set_order_status("5001", "send-to-delivery")
    sync(svc)
    assert int(svc.mirror.state()["orders_since"]) == world.state.history["orders"][-1]["id"]
    shown = {o["sourceOrderId"]: o["statusGroup"] for o in get(client, "/orders", TG)["orders"]}
    assert shown["5001"] == "delivery"


def test_a_mirror_with_nobody_bound_is_not_loaded_again(svc, world):
    world.state.manager_edit_customer("626518", **{TG_FIELD: ""})
    sync(svc)
    sync(svc)
    assert svc.mirror.state()["full_reloads"] == "1"
    assert svc.mirror.bound_count() == 0


def test_a_mark_for_a_customer_gone_from_retailcrm_is_dropped(client, svc, world):
    world.state.manager_edit_customer("626518", chatbot_interacted="")
    sync(svc)
    get(client, "/orders", TG)
    assert svc.mirror.pending_marks() == 1
    world.state.customers.pop("626518")  # gone with no history record yet
    before = len(world.calls)
    sync(svc)
    assert "POST /api/v5/customers/626518/edit" in world.calls[before:]
    assert svc.mirror.pending_marks() == 0
