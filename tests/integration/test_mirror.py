"""The RetailCRM mirror on the real stack: redis-server, gunicorn (2 workers), the
stand-ins over HTTP and the mirror poller as its own process (`flask gurugrow mirror`).

Freshness: a change made in the stand-in RetailCRM shows within MIRROR_POLL_SECONDS + 5 s,
through its history. Failures (the poller killed mid-page, Redis flushed, a history
endpoint failing) leave the service answering, live where the mirror cannot, with the
same answers as without a mirror.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
import requests

from gurugrow.stores import keys as redis_keys
from tests.integration.conftest import ROOT, wait_until
from tests.integration.stack import running_stack

pytestmark = pytest.mark.integration

POLL = 2.0
MAX_LAG = 10.0
SETTINGS = {"GUNICORN_WORKERS": "2", "CRM_MIRROR": "1", "MIRROR_POLL_SECONDS": f"{POLL:g}",
            "MIRROR_MAX_LAG_SECONDS": f"{MAX_LAG:g}"}
FLASK = str(Path(sys.executable).with_name("flask"))
TG_FIELD = "bot_telegram_account_id"
STATE = redis_keys.mirror_state("gg:")


class Poller:
    """`flask --app wsgi gurugrow mirror` with the app's settings, killable."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log_path = env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = self.log_path.open("a")
        self.proc = subprocess.Popen([FLASK, "--app", "wsgi", "gurugrow", "mirror"], cwd=ROOT,
                                     env=self.env, stdout=self._log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mirror")
    with running_stack(workdir, SETTINGS) as (app, standins, redis_server):
        st = standins.state
        for cid in range(7001, 7004):
            st.customers[str(cid)] = {"id": cid, "firstName": "Тест", "phones": [
                {"number": f"+7999555{cid}"}], "customFields": {
                TG_FIELD: f"mirror-{cid}", "chatbot_interacted": "true"}}
            st.orders[str(cid * 10)] = {
                "id": cid * 10, "number": f"M{cid}", "createdAt": "2026-06-01 10:00:00",
                "status": "new", "site": "1minoxidil-ru", "customer": {"id": cid},
                "items": [{"quantity": 1, "offer": {"id": 1, "name": "Миноксидил 5%"}}]}
        poller = Poller(app.env, workdir / "mirror.log")
        poller.start()
        client = redis.Redis.from_url(redis_server.url)
        assert wait_until(lambda: client.hget(STATE, "synced_at") is not None, timeout=30), \
            (workdir / "mirror.log").read_text()[-2000:]
        running = SimpleNamespace(app=app, st=st, client=client, poller=poller, workdir=workdir)
        yield running
        running.poller.kill()


def ask(app, path: str, account: str) -> dict:
    answer = requests.get(f"{app.base}{path}", params={
        "channelType": "telegram", "messengerUserId": account}, timeout=15)
    assert answer.status_code == 200
    return answer.json()


def shows_within(seconds: float, check) -> float:
    """How long until ``check()`` holds (fails past ``seconds``)."""
    started = time.monotonic()
    assert wait_until(check, timeout=seconds, interval=0.1), f"not within {seconds} s"
    return time.monotonic() - started


def mirror_reads(app) -> float:
    text = requests.get(f"{app.base}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("gurugrow_mirror_reads_total{") and 'source="mirror"' in line)


def test_changes_in_retailcrm_show_within_a_poll_and_five_seconds(stack):
    app, st = stack.app, stack.st
    budget = POLL + 5
    assert ask(app, "/orders", "mirror-7001")["orders"][0]["statusGroup"] == "assembling"
    before = mirror_reads(app)
    st.manager_set_order_status("70010", "send-to-delivery")
    shows_within(budget, lambda: ask(app, "/orders", "mirror-7001")["orders"][0][
        "statusGroup"] == "delivery")
    st.manager_edit_customer("7002", **{TG_FIELD: ""})
    shows_within(budget, lambda: ask(app, "/auth/status", "mirror-7002")["status"]
                 == "not_authorized")
    st.manager_add_order({**st.orders["70030"], "id": 70031, "number": "M7003-2",
                          "createdAt": "2026-06-09 10:00:00"})
    shows_within(budget, lambda: ask(app, "/orders", "mirror-7003")["shownCount"] == 2)
    assert mirror_reads(app) > before  # answered from the mirror, not by live calls


def test_a_poller_killed_mid_page_then_restarted_applies_every_change(stack):
    app, st, client = stack.app, stack.st, stack.client
    st.delay["customers"] = 3.0  # the re-read of the changed customers hangs: kill it then
    calls = len(st.calls)
    for cid in range(7011, 7016):
        st.customers[str(cid)] = {"id": cid, "phones": [{"number": f"+7999666{cid}"}],
                                  "customFields": []}
        st.manager_edit_customer(str(cid), **{TG_FIELD: f"mirror-{cid}"})
    since = client.hget(STATE, "customers_since")
    assert wait_until(lambda: "GET /api/v5/customers" in st.calls[calls:], timeout=POLL + 5)
    stack.poller.kill()
    assert client.hget(STATE, "customers_since") == since  # that page was not committed
    del st.delay["customers"]
    # Past MIRROR_MAX_LAG_SECONDS without a sync the service answers live (before that,
    # from the mirror as it was): the same answer the mirror gives once it has the change.
    synced = float(client.hget(STATE, "synced_at"))
    wait_until(lambda: time.time() - synced > MAX_LAG + 1, timeout=MAX_LAG + 5)
    live = ask(app, "/auth/status", "mirror-7013")
    assert live["status"] == "authorized" and live["customerId"] == "7013"
    stack.poller = successor = Poller(app.env, stack.workdir / "mirror-2.log")
    successor.start()
    # The dead poller's lease lapses (at most 15 s), then the successor resumes.
    last = st.history["customers"][-1]["id"]
    shows_within(15 + POLL + 10, lambda: int(client.hget(STATE, "customers_since") or 0)
                 == last)
    for cid in range(7011, 7016):
        assert ask(app, "/auth/status", f"mirror-{cid}")["customerId"] == str(cid)
    assert ask(app, "/auth/status", "mirror-7013") == live


def test_redis_flushed_then_the_mirror_reloads(stack):
    app, client = stack.app, stack.client
    before = ask(app, "/orders", "mirror-7001")
    client.flushall()
    assert ask(app, "/orders", "mirror-7001") == before  # live: the same answer
    shows_within(15 + POLL + 10, lambda: client.hget(STATE, "full_reloads") == b"1")
    reads = mirror_reads(app)
    assert ask(app, "/orders", "mirror-7001") == before
    assert mirror_reads(app) > reads


def test_a_failing_history_endpoint_leaves_the_service_answering_live(stack):
    app, st, client = stack.app, stack.st, stack.client
    before = ask(app, "/orders", "mirror-7001"), ask(app, "/auth/status", "mirror-7001")
    st.fail["orders_history"] = (500, {"success": False, "errorMsg": "Internal error"})
    try:
        synced = float(client.hget(STATE, "synced_at"))
        # No sync succeeds now: past MIRROR_MAX_LAG_SECONDS the reads go live.
        wait_until(lambda: time.time() - synced > MAX_LAG + 1, timeout=MAX_LAG + 5)
        assert float(client.hget(STATE, "synced_at")) == synced
        reads = mirror_reads(app)
        assert (ask(app, "/orders", "mirror-7001"),
                ask(app, "/auth/status", "mirror-7001")) == before
        assert mirror_reads(app) == reads
    finally:
        del st.fail["orders_history"]
    shows_within(POLL + 5, lambda: float(client.hget(STATE, "synced_at")) > synced)


def test_the_mirror_on_one_server_a_cluster_and_a_sentinel(real_redis, prefix, upstreams):
    """Load, sync, read and write through on each kind of Redis the service supports
    (keys of one script share a tag; the rest are pipelined across slots)."""
    from gurugrow import create_app
    from gurugrow.flows.mirror_worker import run_mirror
    from tests.conftest import TEST_ENV
    from tests.helpers import TG, get, post

    app = create_app({**TEST_ENV, "REDIS_PREFIX": prefix, "CRM_MIRROR": "1",
                      "BINDING_CACHE_SECONDS": "0", "ORDERS_CACHE_SECONDS": "0"},
                     redis_client=real_redis)
    svc, client = app.extensions["gurugrow"], app.test_client()
    upstreams.add_customer(626518, "+79991234567", **{TG_FIELD: TG["messengerUserId"],
                                                     "chatbot_interacted": "true"})
    upstreams.add_order(5001, 626518, status="send-to-delivery")
    assert run_mirror(svc, once=True) == {"synced": 1}
    upstreams.state.manager_set_order_status("5001", "complete")
    assert run_mirror(svc, once=True) == {"synced": 1}
    before = len(upstreams.calls)
    assert get(client, "/auth/status", TG)["customerId"] == "626518"
    assert get(client, "/orders", TG)["orders"][0]["statusGroup"] == "complete"
    assert [c for c in upstreams.calls[before:] if "customers" in c or "orders" in c] == []
    assert post(client, "/auth/unlink", TG)["status"] == "unlinked"
    assert get(client, "/auth/status", TG)["status"] == "not_authorized"
    keys = list(real_redis.scan_iter(match=prefix + "mirror:*"))
    assert keys and all(real_redis.ttl(k) > 0 for k in keys)
