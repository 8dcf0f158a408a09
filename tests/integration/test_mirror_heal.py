"""The mirror as RetailCRM really behaves, on the real stack: redis-server,
gunicorn (2 workers), the stand-ins over HTTP and the poller as its own process.

History records are shaped as RetailCRM's own fixtures show them: ``created``/``deleted``
only when true, an entity part holding only ids, a customer merge recorded with
``combinedTo`` and no order records for the orders it moved.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from gurugrow.stores import keys as redis_keys
from tests.integration.conftest import wait_until
from tests.integration.stack import running_stack
from tests.integration.test_mirror import Poller, ask, mirror_reads, shows_within

pytestmark = pytest.mark.integration

POLL = 2.0
MAX_LAG = 10.0
RECONCILE = 30.0
SETTINGS = {"GUNICORN_WORKERS": "2", "CRM_MIRROR": "1", "MIRROR_POLL_SECONDS": f"{POLL:g}",
            "MIRROR_MAX_LAG_SECONDS": f"{MAX_LAG:g}",
            "MIRROR_RECONCILE_SECONDS": f"{RECONCILE:g}",
            "BINDING_CACHE_SECONDS": "0", "ORDERS_CACHE_SECONDS": "0"}
TG_FIELD = "bot_telegram_account_id"
PREFIX = "gg:"
STATE = redis_keys.mirror_state(PREFIX)
BOUND = range(8001, 8101)  # 100 bound customers


def _customer(cid: int, *, interacted: bool = True) -> dict:
    fields = {TG_FIELD: f"heal-{cid}"}
    if interacted:
        fields["chatbot_interacted"] = "true"
    return {"id": cid, "firstName": "Тест", "phones": [{"number": f"+7999444{cid}"}],
            "customFields": fields}


def _order(oid: int, cid: int, created: str = "2026-06-01 10:00:00") -> dict:
    return {"id": oid, "number": f"H{oid}", "createdAt": created, "status": "new",
            "site": "1minoxidil-ru", "customer": {"id": cid},
            "items": [{"quantity": 1, "offer": {"id": 1, "name": "Миноксидил 5%"}}]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mirror-heal")
    with running_stack(workdir, SETTINGS) as (app, standins, redis_server):
        st = standins.state
        for cid in BOUND:
            st.customers[str(cid)] = _customer(cid)
            st.orders[str(cid * 10)] = _order(cid * 10, cid)
        poller = Poller(app.env, workdir / "mirror.log")
        poller.start()
        client = redis.Redis.from_url(redis_server.url)
        assert wait_until(lambda: client.hget(STATE, "synced_at") is not None, timeout=60), \
            (workdir / "mirror.log").read_text()[-2000:]
        from types import SimpleNamespace
        yield SimpleNamespace(app=app, st=st, client=client, poller=poller, workdir=workdir)
        poller.kill()


def current(client) -> bool:
    synced = client.hget(STATE, "synced_at")
    return synced is not None and time.time() - float(synced) <= MAX_LAG


def test_a_duplicate_merged_into_a_bound_customer_shows_its_orders(stack):
    app, st = stack.app, stack.st
    st.customers["9001"] = {"id": 9001, "firstName": "Дубль", "customFields": [],
                            "phones": [{"number": "+79994448001"}]}
    st.orders["90010"] = _order(90010, 9001, "2026-06-05 10:00:00")
    st.orders["90011"] = _order(90011, 9001, "2026-06-06 10:00:00")
    assert ask(app, "/orders", "heal-8001")["shownCount"] == 1
    orders_history = len(st.history["orders"])
    st.manager_merge_customers("9001", "8001")
    assert len(st.history["orders"]) == orders_history  # no record for the moved orders
    shows_within(POLL + 5, lambda: ask(app, "/orders", "heal-8001")["shownCount"] == 3)


def test_a_deleted_binding_key_keeps_answering_and_is_repaired(stack):
    app, client = stack.app, stack.client
    key = redis_keys.mirror_binding(PREFIX, "telegram", "heal-8002")
    assert client.exists(key)
    client.delete(key)
    answer = ask(app, "/auth/status", "heal-8002")
    assert answer["status"] == "authorized" and answer["customerId"] == "8002"
    shows_within(POLL + 5, lambda: client.exists(key) == 1)
    assert ask(app, "/auth/status", "heal-8002")["customerId"] == "8002"


def test_redis_evicting_under_allkeys_lru_never_unbinds_anyone(stack):
    app, client = stack.app, stack.client
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.config_set("maxmemory", str(used + 256 * 1024))
    try:
        filler = "x" * 2048
        for i in range(600):  # ~1.2 MB into 256 KB of room: the LRU evicts mirror keys too
            try:
                client.set(f"filler:{i}", filler)
            except redis.ResponseError:
                break
        assert int(client.info("stats")["evicted_keys"]) > 0
        client.delete(*[f"filler:{i}" for i in range(600)])
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda cid: ask(app, "/auth/status", f"heal-{cid}"), BOUND))
        assert [a["customerId"] for a in answers] == [str(cid) for cid in BOUND]
    finally:
        client.config_set("maxmemory", "0")
        client.config_set("maxmemory-policy", "noeviction")

    def repaired() -> bool:
        index = redis_keys.mirror_bound_index(PREFIX)
        members = {m.decode() for m in client.zrange(index, 0, -1)}
        return all(str(cid) in members and client.exists(
            redis_keys.mirror_binding(PREFIX, "telegram", f"heal-{cid}"),
            redis_keys.mirror_customer(PREFIX, str(cid)),
            redis_keys.mirror_orders(PREFIX, str(cid))) == 3 for cid in BOUND)

    shows_within(60, repaired)
    shows_within(POLL + 5, lambda: current(client))
    reads = mirror_reads(app)
    assert ask(app, "/auth/status", "heal-8003")["customerId"] == "8003"
    assert mirror_reads(app) > reads  # from the mirror again


def test_a_customer_unbound_without_a_history_record_goes_by_the_reconcile(stack):
    app, st, client = stack.app, stack.st, stack.client
    st.manager_unbind_silently("8004", TG_FIELD)
    record = redis_keys.mirror_customer(PREFIX, "8004")
    shows_within(60, lambda: not client.exists(record))
    assert ask(app, "/auth/status", "heal-8004")["status"] == "not_authorized"


def test_a_short_history_page_with_more_after_it_is_not_current(stack):
    st, client = stack.st, stack.client
    st.history_page_cap = 5
    try:
        flood_at = time.time()
        for _ in range(200):
            st.manager_set_order_status("80050", "complete")
        last = st.history["orders"][-1]["id"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            synced, since = client.hmget(STATE, "synced_at", "orders_since")
            if float(synced) > flood_at:
                # "current" as of a moment after the flood only once all of it was read
                assert int(since) == last
                break
            time.sleep(0.05)
        else:
            pytest.fail("never caught up")
    finally:
        st.history_page_cap = None


def test_a_stale_mirror_catches_up_within_two_polls_during_a_burst(stack):
    app, st, client = stack.app, stack.st, stack.client
    st.rate_limit = 10
    st.fail["orders_history"] = (500, {"success": False, "errorMsg": "Internal error"})
    try:
        assert wait_until(lambda: not current(client), timeout=MAX_LAG + 10)
    finally:
        del st.fail["orders_history"]
    done = threading.Event()
    caught_up: list[float] = []
    started = time.monotonic()

    def watch() -> None:
        while not done.is_set():
            if current(client):
                caught_up.append(time.monotonic() - started)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()

    def user(i: int) -> None:
        cid = BOUND[i % len(BOUND)]
        requests.get(f"{app.base}/auth/status", params={
            "channelType": "telegram", "messengerUserId": f"heal-{cid}"}, timeout=30)

    try:
        with ThreadPoolExecutor(50) as pool:
            list(pool.map(user, range(200)))
        burst = time.monotonic() - started
    finally:
        done.set()
        watcher.join()
        st.rate_limit = 0
    assert caught_up, "the mirror never caught up"
    assert caught_up[0] <= 2 * POLL + 2, (caught_up, burst)
    assert caught_up[0] < burst  # while the burst was still running
    assert st.refused_over_rate == 0


def test_never_marked_customers_are_served_from_the_mirror_and_marked_afterwards(stack):
    app, st, client = stack.app, stack.st, stack.client
    fresh = range(8201, 8401)  # 200 bound customers never marked
    for cid in fresh:
        st.customers[str(cid)] = _customer(cid, interacted=False)
        st.orders[str(cid * 10)] = _order(cid * 10, cid)
        st.manager_edit_customer(str(cid), **{TG_FIELD: f"heal-{cid}"})
    shows_within(60, lambda: all(client.exists(redis_keys.mirror_orders(PREFIX, str(c)))
                                 for c in fresh) and current(client))
    st.rate_limit = 10
    try:
        live = mirror_reads_live(app)
        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(
                lambda cid: (ask(app, "/auth/status", f"heal-{cid}"),
                             ask(app, "/orders", f"heal-{cid}")), fresh))
        assert all(a["status"] == "authorized" and o["status"] == "ok" for a, o in answers)
        assert mirror_reads_live(app) - live <= 0.05 * len(fresh)
        shows_within(120, lambda: all(
            (st.customers[str(c)]["customFields"] or {}).get("chatbot_interacted") == "true"
            for c in fresh))
        assert st.refused_over_rate == 0
    finally:
        st.rate_limit = 0


def mirror_reads_live(app) -> float:
    text = requests.get(f"{app.base}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("gurugrow_mirror_reads_total{") and 'source="live"' in line)
