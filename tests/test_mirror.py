"""The RetailCRM mirror through HTTP: loading, syncing from history, reads while current,
the live path otherwise (same answers), write-through, and the poller's failures.

The poller runs in the test (``run_mirror(svc, once=True)``: one pass); RetailCRM is the
stand-in behind ``responses``, whose history endpoints record every change it sees.
"""

from __future__ import annotations

import pytest

from gurugrow.flows.mirror_worker import run_mirror
from gurugrow.stores import keys as redis_keys
from gurugrow.stores.mirror import MirrorStore
from tests.helpers import TG, get, post, redis_of, set_clock

TG_FIELD = "bot_telegram_account_id"
ACCOUNT = TG["messengerUserId"]
NOW = 1_780_000_000.0


@pytest.fixture
def env_overrides():
    # Caches off: a live read really asks RetailCRM, so "answered from the mirror" shows
    # as no call at all.
    return {"CRM_MIRROR": "1", "BINDING_CACHE_SECONDS": "0", "ORDERS_CACHE_SECONDS": "0",
            "MIRROR_MAX_LAG_SECONDS": "60"}


@pytest.fixture
def svc(app):
    set_clock(app, NOW)
    return app.extensions["gurugrow"]


@pytest.fixture
def world(upstreams):
    """Customer 626518 bound to Telegram (interacted), two orders; one unbound customer."""
    upstreams.add_customer(626518, "+79991234567", **{TG_FIELD: ACCOUNT,
                                                     "chatbot_interacted": "true"})
    upstreams.add_customer(1001, "+79990000001")
    upstreams.add_order(5001, 626518, status="send-to-delivery", created="2026-06-01 10:00:00")
    upstreams.add_order(5002, 626518, status="new", created="2026-06-02 10:00:00")
    upstreams.add_order(5003, 1001, created="2026-06-03 10:00:00")
    upstreams.add_offer(501, "Миноксидил 5%")
    return upstreams


def sync(svc) -> dict[str, int]:
    return run_mirror(svc, once=True)


def visit(client) -> tuple[dict, dict]:
    """What a "My orders" tap asks: /auth/status, then /orders."""
    return get(client, "/auth/status", TG), get(client, "/orders", TG)


def crm_reads(upstreams) -> list[str]:
    return [c for c in upstreams.calls if c.startswith(("GET /api/v5/customers",
                                                         "GET /api/v5/orders"))]


def reads_after(upstreams, before: int) -> list[str]:
    """RetailCRM customer and order reads made after the first ``before`` calls."""
    return [c for c in upstreams.calls[before:] if c.startswith(("GET /api/v5/customers",
                                                                 "GET /api/v5/orders"))]


def shown(answer: dict) -> dict[str, str]:
    return {o["sourceOrderId"]: o["statusGroup"] for o in answer["orders"]}


# -- reads ----------------------------------------------------------------------------
def test_loaded_mirror_answers_like_the_live_path_without_a_crm_call(client, svc, world):
    live = visit(client)
    assert live[0]["status"] == "authorized" and live[1]["status"] == "ok"
    assert sync(svc) == {"synced": 1}
    before = len(upstreams_calls := world.calls)
    assert visit(client) == live
    assert upstreams_calls[before:] == []


def test_initial_load_pages_at_100_and_mirrors_only_bound_customers(client, svc, upstreams):
    for cid in range(1, 251):
        fields = {TG_FIELD: f"tg{cid}", "chatbot_interacted": "true"} if cid % 2 else {}
        upstreams.add_customer(cid, f"+7999000{cid:04d}", **fields)
        upstreams.add_order(10_000 + cid, cid, created=f"2026-06-01 10:{cid % 60:02d}:00")
    sync(svc)
    # 3 pages of customers, 3 of orders, one history read per kind (both empty).
    assert crm_reads(upstreams) == (["GET /api/v5/customers/history"]
                                    + ["GET /api/v5/orders/history"]
                                    + ["GET /api/v5/customers"] * 3 + ["GET /api/v5/orders"] * 3)
    state = svc.mirror.state()
    assert (state["customers"], state["orders"], state["full_reloads"]) == ("125", "125", "1")
    assert svc.mirror.binding("telegram", "tg7") == {
        "7": {"maskedPhone": "+7******0007", "interacted": True}}
    # Not in the mirror is not "not bound": the live path answers, the poller looks it up.
    assert svc.mirror.binding("telegram", "tg8") is None
    assert "a:telegram:tg8" in svc.mirror.due_rechecks(10)
    assert [o["id"] for o in svc.mirror.orders("7")] == [10_007]
    assert svc.mirror.orders("8") is None  # not bound: not mirrored, read live


@pytest.mark.parametrize("break_it", ["stale", "off", "broken", "garbage"])
def test_a_mirror_not_current_answers_exactly_as_without_one(app, client, svc, world,
                                                            redis_client, break_it):
    live = visit(client)
    sync(svc)
    if break_it == "stale":
        set_clock(app, NOW + 61)
    elif break_it == "off":
        svc.mirror = None
    elif break_it == "broken":  # a binding key of the wrong type: Redis refuses the read
        key = redis_keys.mirror_binding(svc.settings.redis_prefix, "telegram", ACCOUNT)
        redis_client.delete(key)
        redis_client.set(key, "garbage")
    else:  # values that are not what the store writes
        prefix = svc.settings.redis_prefix
        redis_client.hset(redis_keys.mirror_binding(prefix, "telegram", ACCOUNT), "626518",
                          "not json")
        redis_client.set(redis_keys.mirror_orders(prefix, "626518"), "[1, 2]")
    before = len(world.calls)
    assert visit(client) == live
    assert "GET /api/v5/customers" in world.calls[before:]


# -- freshness through history ----------------------------------------------------------
def _status_changed(st):
    st.manager_set_order_status("5002", "send-to-delivery")


def _binding_cleared(st):
    st.manager_edit_customer("626518", **{TG_FIELD: ""})


def _order_made_elsewhere(st):
    st.manager_add_order({**st.orders["5002"], "id": 5009, "number": "5009",
                          "createdAt": "2026-06-05 09:00:00", "status": "new"})


@pytest.mark.parametrize("change, status, orders", [
    (_status_changed, "authorized", {"5002": "delivery", "5001": "delivery"}),
    (_binding_cleared, "not_authorized", None),
    (_order_made_elsewhere, "authorized", {"5009": "assembling", "5002": "assembling",
                                           "5001": "delivery"}),
])
def test_a_change_made_in_retailcrm_shows_after_one_sync(client, svc, world, change, status,
                                                        orders):
    sync(svc)
    assert shown(visit(client)[1]) == {"5002": "assembling", "5001": "delivery"}
    change(world.state)
    sync(svc)
    before = len(world.calls)
    state, listing = visit(client)
    assert state["status"] == status
    if orders is None:
        assert listing["errorCode"] == "not_authorized"
    else:
        assert shown(listing) == orders
    assert reads_after(world, before) == []


def test_a_deleted_customer_drops_its_bindings(client, svc, world):
    sync(svc)
    world.state.manager_delete_customer("626518")
    sync(svc)
    assert svc.mirror.binding("telegram", ACCOUNT) == {}
    assert get(client, "/auth/status", TG)["status"] == "not_authorized"


def test_a_merged_away_customer_drops_its_bindings_and_orders(client, svc, world):
    sync(svc)
    world.state.manager_merge_customers("626518", "1001")
    sync(svc)
    assert svc.mirror.customer("626518") is None
    assert svc.mirror.orders("626518") is None
    # RetailCRM carries no custom field over: the result is not bound by the merge.
    assert get(client, "/auth/status", TG)["status"] == "not_authorized"


def test_a_duplicate_merged_into_a_bound_customer_brings_its_orders(client, svc, world):
    """The merge as RetailCRM's history records it: the duplicate's record with
    ``deleted`` and ``combinedTo``, and no orders/history record for the moved order."""
    sync(svc)
    history_before = len(world.state.history["orders"])
    world.state.manager_merge_customers("1001", "626518")
    record = world.state.history["customers"][-1]
    assert record["combinedTo"] == {"id": 626518} and record["deleted"] is True
    assert "created" not in record and record["customer"]["id"] == 1001
    assert len(world.state.history["orders"]) == history_before
    sync(svc)
    before = len(world.calls)
    assert shown(get(client, "/orders", TG)) == {"5003": "assembling", "5002": "assembling",
                                                 "5001": "delivery"}
    assert reads_after(world, before) == []
    # RetailCRM merges asynchronously: the survivor is looked at again one poll later.
    due = redis_of(svc).zscore(redis_keys.mirror_recheck(svc.settings.redis_prefix), "c:626518")
    assert due == NOW + svc.settings.mirror_poll_seconds


def test_two_customers_with_one_messenger_id_are_a_conflict(client, svc, world):
    world.add_customer(777, "+79990000777", **{TG_FIELD: ACCOUNT})
    live = get(client, "/auth/status", TG)
    sync(svc)
    before = len(world.calls)
    assert get(client, "/auth/status", TG) == live
    assert live["status"] == "conflict" and world.calls[before:] == []


def test_a_binding_added_by_a_manager_brings_the_customers_orders(client, svc, world):
    sync(svc)
    world.state.manager_edit_customer("1001", bot_vk_account_id="vk-55")
    sync(svc)
    vk = {"channelType": "vk", "messengerUserId": "vk-55"}
    before = len(world.calls)
    assert get(client, "/auth/status", vk)["customerId"] == "1001"
    assert shown(get(client, "/orders", vk)) == {"5003": "assembling"}
    assert reads_after(world, before) == []
    # The interacted mark is queued, never written in the request: the poller writes it.
    assert world.calls[before:].count("POST /api/v5/customers/1001/edit") == 0
    assert svc.mirror.pending_marks() == 1
    sync(svc)
    assert world.calls[before:].count("POST /api/v5/customers/1001/edit") == 1
    assert svc.mirror.pending_marks() == 0
    assert svc.mirror.binding("vk", "vk-55")["1001"]["interacted"] is True


# -- write-through -----------------------------------------------------------------------
def test_unlink_shows_at_once(client, svc, world):
    sync(svc)
    assert post(client, "/auth/unlink", TG)["status"] == "unlinked"
    before = len(world.calls)
    assert get(client, "/auth/status", TG)["status"] == "not_authorized"
    assert world.calls[before:] == []


@pytest.mark.parametrize("garbage", [b"not json", b"[1, 2]"])
def test_an_unreadable_mirror_record_never_fails_a_done_crm_write(client, svc, world,
                                                                  redis_client, garbage):
    """Unlink clears the CRM field first; a broken mirrored customer then only costs the
    write-through (logged), never the answer."""
    sync(svc)
    redis_client.set(redis_keys.mirror_customer(svc.settings.redis_prefix, "626518"), garbage,
                     ex=60)
    assert post(client, "/auth/unlink", TG)["status"] == "unlinked"
    assert world.field(626518, TG_FIELD) in (None, "")


def test_a_released_lease_is_only_ever_the_releasers_own(svc, redis_client):
    """A poller whose lease lapsed and was taken leaves the successor's lease alone."""
    assert svc.mirror.take_lease("first", 30)
    redis_client.delete(svc.mirror.lease_key)  # lapsed
    assert svc.mirror.take_lease("successor", 30)
    svc.mirror.release_lease("first")
    assert redis_client.get(svc.mirror.lease_key) == b"successor"
    svc.mirror.release_lease("successor")
    assert redis_client.exists(svc.mirror.lease_key) == 0


@pytest.mark.parametrize("phone, customer, old_account_now", [
    ("79990000001", "1001", "authorized"),  # a customer bound for the first time
    ("79991234567", "626518", "not_authorized"),  # rebound: its earlier account is free
])
def test_a_binding_made_here_shows_at_once(client, svc, world, phone, customer,
                                           old_account_now):
    sync(svc)
    other = {**TG, "messengerUserId": "42"}
    session = post(client, "/auth/start", {**other, "phone": phone})["sessionId"]
    answer = post(client, "/auth/check", {**other, "sessionId": session,
                                          "code": world.codes_sent()[-1]})
    assert answer["status"] == "authorized"
    before = len(world.calls)
    assert get(client, "/auth/status", other)["customerId"] == customer
    assert get(client, "/auth/status", TG)["status"] == old_account_now
    assert world.calls[before:] == []
    sync(svc)  # the poller, re-reading the customer from the history, agrees
    assert (get(client, "/auth/status", other)["customerId"],
            get(client, "/auth/status", TG)["status"]) == (customer, old_account_now)


def test_a_repeated_order_is_never_missing(client, svc, world):
    sync(svc)
    created = post(client, "/orders/repeat", {**TG, "sourceOrderId": "5001"})
    assert created["status"] == "created"
    # Read live until the poller has re-read the new order; then from the mirror again.
    assert created["newOrderId"] in shown(get(client, "/orders", TG))
    sync(svc)
    before = len(world.calls)
    assert created["newOrderId"] in shown(get(client, "/orders", TG))
    assert world.calls[before:] == []


# -- the poller: lease, positions, failures ----------------------------------------------
def test_one_poller_at_a_time(svc, world, redis_client):
    other = MirrorStore(redis_client, svc.settings.redis_prefix, max_lag_seconds=60,
                        clock=svc.clock)
    assert other.take_lease("someone-else", 30)
    assert run_mirror(svc, once=True) == {"standby": 1}
    assert svc.mirror.state() == {}
    assert world.calls == []
    other.release_lease("someone-else")
    assert sync(svc) == {"synced": 1}


def test_a_poller_killed_mid_page_loses_nothing_and_skips_nothing(client, svc, world,
                                                                   monkeypatch):
    sync(svc)
    for cid in range(2001, 2006):  # five customers bound by managers: one history page
        world.add_customer(cid, f"+7999111{cid}")
        world.state.manager_edit_customer(str(cid), **{TG_FIELD: f"m{cid}"})
    saved = svc.mirror.state()["customers_since"]
    real_put, puts = svc.mirror.put_customer, []

    def dies_on_the_third(*args, **kwargs):
        puts.append(args[0])
        if len(puts) == 3:
            raise SystemExit("killed")  # the process dies: nothing after this runs
        return real_put(*args, **kwargs)

    monkeypatch.setattr(svc.mirror, "put_customer", dies_on_the_third)
    with pytest.raises(SystemExit):
        sync(svc)
    assert svc.mirror.state()["customers_since"] == saved  # the page was not committed
    monkeypatch.setattr(svc.mirror, "put_customer", real_put)
    redis_of(svc).delete(svc.mirror.lease_key)  # the dead poller's lease lapses
    asked: list[list[str]] = []
    real_by_ids = svc.crm.by_ids
    monkeypatch.setattr(svc.crm, "by_ids", lambda kind, ids: asked.append(list(ids))
                        or real_by_ids(kind, ids))
    sync(svc)
    # The successor re-reads exactly the uncommitted page's customers, once each.
    assert asked == [[str(cid) for cid in range(2001, 2006)]]
    assert svc.mirror.state()["customers_since"] == str(world.state.history["customers"][-1]["id"])
    for cid in range(2001, 2006):
        assert get(client, "/auth/status", {**TG, "messengerUserId": f"m{cid}"})[
            "customerId"] == str(cid)


def test_redis_flushed_reads_go_live_then_the_mirror_reloads(client, svc, world,
                                                            redis_client):
    live = visit(client)
    sync(svc)
    redis_client.flushall()
    before = len(world.calls)
    assert visit(client) == live
    assert "GET /api/v5/customers" in world.calls[before:]
    assert sync(svc) == {"synced": 1}
    assert svc.mirror.state()["full_reloads"] == "1"
    before = len(world.calls)
    assert visit(client) == live
    assert world.calls[before:] == []


def test_a_failing_history_endpoint_leaves_the_service_answering_live(app, client, svc,
                                                                     world):
    live = visit(client)
    sync(svc)
    world.fail["customers_history"] = (500, {"success": False, "errorMsg": "Internal"})
    set_clock(app, NOW + 30)
    assert sync(svc) == {"crm_failed": 1}
    assert visit(client) == live  # still current (30 s < 60 s): from the mirror
    set_clock(app, NOW + 61)
    assert sync(svc) == {"crm_failed": 1}
    before = len(world.calls)
    assert visit(client) == live
    assert "GET /api/v5/customers" in world.calls[before:]  # stale: live, same answers


# -- the stand-in's history ------------------------------------------------------------------
def test_history_records_have_the_documented_shape(world):
    world.state.manager_set_order_status("5001", "complete")
    record = world.state.history["orders"][-1]
    assert set(record) == {"id", "createdAt", "source", "field", "oldValue", "newValue",
                           "apiKey", "order"}
    assert record["order"] == {"id": 5001, "site": "test-site"}
    assert record["apiKey"] == {"current": False}


@pytest.mark.parametrize("query, status", [
    ({"filter[sinceId]": "0", "limit": "100"}, 200),
    ({"page": "1", "limit": "100"}, 200),
    ({"filter[sinceId]": "0", "page": "1", "limit": "100"}, 400),
    ({"filter[sinceId]": "x", "limit": "100"}, 400),
])
def test_history_endpoint_pages_by_since_id_or_page_never_both(world, query, status):
    import requests

    world.state.manager_set_order_status("5001", "complete")
    answer = requests.get("https://crm.test/api/v5/orders/history", params=query,
                          headers={"X-API-KEY": "sandbox-retailcrm-key"}, timeout=5)
    assert answer.status_code == status
    if status == 200:
        assert [r["order"]["id"] for r in answer.json()["history"]] == [5001]


# -- operations ---------------------------------------------------------------------------
def test_metrics_show_the_mirror_scraped_from_redis(client, svc, world):
    from tests.test_alerts import sample, scrape

    assert sample(scrape(client), "gurugrow_mirror_lag_seconds") == -1  # never synced
    sync(svc)
    visit(client)
    text = scrape(client)
    assert sample(text, "gurugrow_mirror_lag_seconds") == 0
    assert sample(text, "gurugrow_mirror_max_lag_seconds") == 60
    assert sample(text, "gurugrow_mirror_entities", kind="customers") == 1
    assert sample(text, "gurugrow_mirror_entities", kind="orders") == 2
    assert sample(text, "gurugrow_mirror_sync_calls", kind="load") == 2
    assert sample(text, "gurugrow_mirror_full_reloads") == 1
    assert sample(text, "gurugrow_mirror_reads_total", what="binding", source="mirror") >= 2


@pytest.mark.parametrize("arrange, mark, detail", [
    (lambda app, svc: None, "FAIL", "never loaded"),
    (lambda app, svc: sync(svc), "ok  ", "current: last sync 0 s ago"),
    (lambda app, svc: (sync(svc), set_clock(app, NOW + 90)), "FAIL", "last sync 90 s ago"),
])
def test_the_doctor_shows_the_mirrors_state(app, svc, world, arrange, mark, detail):
    arrange(app, svc)
    result = app.test_cli_runner().invoke(args=["gurugrow", "doctor"])
    line = next(t for t in result.stdout.splitlines() if " mirror: " in t)
    assert line.startswith(mark) and detail in line


def test_the_mirror_command_refuses_when_off(upstreams):
    import fakeredis

    from gurugrow import create_app
    from tests.conftest import TEST_ENV

    app = create_app(TEST_ENV, redis_client=fakeredis.FakeRedis())
    result = app.test_cli_runner().invoke(args=["gurugrow", "mirror", "--once"])
    assert result.exit_code == 2 and "CRM_MIRROR is off" in result.output


def test_the_mirror_command_loads_with_a_progress_line(app, svc, world):
    result = app.test_cli_runner().invoke(args=["gurugrow", "mirror", "--once"])
    assert result.exit_code == 0, result.output
    assert "mirror load: customers: page 1 of 1, 2 read" in result.output
    assert result.output.strip().endswith("synced=1")


@pytest.mark.parametrize("env_overrides", [{
    "CRM_MIRROR": "1", "RETAILCRM_RATE_LIMIT": "20", "RETAILCRM_QUEUE_SECONDS": "0.3"}])
def test_a_load_longer_than_the_queue_deadline_completes(svc, upstreams, env_overrides):
    # 14 calls at 20/s wait about 0.65 s in all: each call has its own queue deadline.
    for cid in range(1, 601):
        upstreams.add_customer(cid, f"+7999000{cid:04d}", **{TG_FIELD: f"tg{cid}"})
        upstreams.add_order(10_000 + cid, cid)
    assert sync(svc) == {"synced": 1}
    assert svc.mirror.state()["customers"] == "600"


@pytest.mark.parametrize("path, form, changed", [
    ("/manager/order-status", {"orderId": "5001", "status": "complete"},
     lambda st: st.orders["5001"]["status"] == "complete"),
    ("/manager/customer-field", {"customerId": "626518", "code": TG_FIELD, "value": ""},
     lambda st: TG_FIELD not in (st.customers["626518"]["customFields"] or {})),
    ("/manager/order-status", {"orderId": "nope", "status": "complete"}, None),
])
def test_the_sandbox_manager_changes_retailcrm_through_its_history(world, path, form,
                                                                  changed):
    answer = world.app.test_client().post(path, data=form)
    if changed is None:
        assert answer.status_code == 404
        return
    assert answer.get_json() == {"status": "changed"}
    assert changed(world.state)
    kind = "orders" if "order" in path else "customers"
    assert world.state.history[kind][-1]["source"] == "user"


def test_a_long_catch_up_is_not_current_until_the_history_is_drained(app, client, svc, world,
                                                                    monkeypatch):
    from gurugrow.flows import mirror_sync

    sync(svc)
    for _ in range(150):  # two pages of history
        world.state.manager_set_order_status("5001", "complete")
    monkeypatch.setattr(mirror_sync, "MAX_PAGES_PER_PASS", 1)
    set_clock(app, NOW + 61)
    assert sync(svc) == {"behind": 1}  # one page applied, one to go: still stale
    before = len(world.calls)
    get(client, "/auth/status", TG)
    assert "GET /api/v5/customers" in world.calls[before:]  # so reads go live
    assert sync(svc) == {"synced": 1}
    before = len(world.calls)
    get(client, "/auth/status", TG)
    assert world.calls[before:] == []


@pytest.mark.parametrize("bound, expected_order_calls", [
    (3, 1 + 3),  # fewer bound customers than pages of orders: page 1, then one each
    (8, 6),  # more: all six pages of orders
])
def test_the_load_reads_orders_the_cheaper_way(svc, upstreams, bound, expected_order_calls):
    for cid in range(1, 11):
        fields = {TG_FIELD: f"tg{cid}"} if cid <= bound else {}
        upstreams.add_customer(cid, f"+7999000{cid:04d}", **fields)
    for oid in range(1, 601):  # six pages, 60 orders each customer
        upstreams.add_order(oid, (oid - 1) % 10 + 1,
                            created=f"2026-06-{1 + oid // 60:02d} 10:{oid % 60:02d}:00")
    sync(svc)
    assert len([c for c in upstreams.calls if c == "GET /api/v5/orders"]) == expected_order_calls
    state = svc.mirror.state()
    assert (state["customers"], state["orders"]) == (str(bound), str(bound * 20))
    newest = sorted((o for o in upstreams.state.orders.values() if o["customer"]["id"] == 1),
                    key=lambda o: o["createdAt"], reverse=True)[:20]
    assert sorted(o["id"] for o in svc.mirror.orders("1")) == sorted(o["id"] for o in newest)


def test_the_in_process_store_has_no_mirror():
    from gurugrow import create_app

    app = create_app({"GURUGROW_SANDBOX": "1", "REDIS_URL": "memory://"})
    assert app.extensions["gurugrow"].settings.crm_mirror is True
    assert app.extensions["gurugrow"].mirror is None  # no poller could share it


def test_a_poller_that_lost_its_lease_writes_no_position(svc, world, monkeypatch):
    sync(svc)
    saved = svc.mirror.state()
    world.state.manager_set_order_status("5001", "complete")
    redis_of(svc).set(svc.mirror.lease_key, "the-successor", ex=30)  # it lapsed; taken over
    monkeypatch.setattr(svc.mirror, "take_lease", lambda token, seconds: True)  # too late
    assert sync(svc) == {"lease_lost": 1}
    assert svc.mirror.state() == saved  # neither position nor sync time moved
