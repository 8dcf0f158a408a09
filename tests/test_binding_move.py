"""One account, one customer: bindings of one messenger account are serialised, and a
customer's binding that moves to another account cuts the previous one off at once,
mirror on or off."""

from __future__ import annotations

import threading
import time

import pytest

from gurugrow.flows.mirror_worker import run_mirror
from gurugrow.flows.order_once import request_token
from gurugrow.stores import keys as redis_keys
from gurugrow.stores import once
from tests.helpers import BODY_KINDS, get, post, redis_of, run_concurrently, set_clock

TG_FIELD = "bot_telegram_account_id"
OLD = {"channelType": "telegram", "messengerUserId": "111"}
NEW = {"channelType": "telegram", "messengerUserId": "222"}
CONTACT = {"CONTACT_VERIFIED_CHANNELS": "telegram"}
MIRROR = {**CONTACT, "CRM_MIRROR": "1", "MIRROR_MAX_LAG_SECONDS": "60"}


@pytest.fixture
def world(upstreams):
    upstreams.add_customer(626518, "+79991234567", **{TG_FIELD: "111",
                                                     "chatbot_interacted": "true"})
    upstreams.add_customer(1001, "+79990000001", **{TG_FIELD: "333"})
    upstreams.add_order(5001, 626518, status="send-to-delivery")
    upstreams.add_offer(501, "Миноксидил 5%")
    return upstreams


def contact(client, who, phone, kind="form"):
    return post(client, "/auth/contact", {**who, "contactUserId": who["messengerUserId"],
                                          "phone": phone}, kind)


@pytest.mark.parametrize("env_overrides", [CONTACT, MIRROR], ids=["mirror-off", "mirror-on"])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_moved_binding_cuts_the_previous_account_off_at_once(app, client, world, kind,
                                                               env_overrides):
    svc = app.extensions["gurugrow"]
    set_clock(app, 1_780_000_000.0)
    if svc.mirror is not None:
        run_mirror(svc, once=True)
    assert get(client, "/auth/status", OLD)["status"] == "authorized"  # cached now
    assert get(client, "/orders", OLD)["status"] == "ok"
    answer = contact(client, NEW, "79991234567", kind)
    assert (answer["status"], answer["customerId"]) == ("authorized", "626518")
    assert world.field(626518, TG_FIELD) == "222"
    assert get(client, "/auth/status", OLD)["status"] == "not_authorized"
    assert get(client, "/orders", OLD)["status"] == "not_authorized"
    repeat = post(client, "/orders/repeat", {**OLD, "sourceOrderId": "5001"}, kind)
    assert repeat["status"] == "not_authorized"
    assert world.created == []
    assert get(client, "/auth/status", NEW)["status"] == "authorized"


@pytest.mark.parametrize("env_overrides", [CONTACT])
def test_two_contacts_for_one_account_at_once_bind_it_to_one_customer(app, world):
    """Account 444 shares two phones at the same moment: one binding wins, the other is
    refused as a conflict, and customer 1001's earlier binding (to 333) is intact."""
    phones = iter(["79991234567", "79990000001"] * 3)
    who = {"channelType": "telegram", "messengerUserId": "444"}
    world.customers["626518"]["customFields"] = []  # nobody holds 626518 now
    answers = run_concurrently(2, lambda: contact(app.test_client(), who, next(phones)))
    statuses = sorted(a["status"] for a in answers)
    assert statuses == ["authorized", "conflict"]
    holders = [cid for cid in ("626518", "1001") if world.field(int(cid), TG_FIELD) == "444"]
    assert len(holders) == 1
    if holders != ["1001"]:
        assert world.field(1001, TG_FIELD) == "333"


# -- who held the customer before: read by the start, or written by this service since --
NOW = 1_780_000_000.0
OTHER = {"channelType": "telegram", "messengerUserId": "555"}
MANAGERS = {"channelType": "telegram", "messengerUserId": "666"}


def started(client, who, phone, world, kind="form") -> dict:
    """A started code check of ``who`` for ``phone``: the check's fields."""
    answer = post(client, "/auth/start", {**who, "phone": phone}, kind)
    return {**who, "sessionId": answer["sessionId"], "code": world.codes_sent()[-1]}


@pytest.mark.parametrize("env_overrides", [CONTACT, MIRROR], ids=["mirror-off", "mirror-on"])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_checked_code_moving_a_binding_cuts_the_previous_account_off_unasked(
        app, client, world, kind, env_overrides):
    """The start's phone lookup read who held the customer: the check writes the binding
    and drops that account without reading the customer again."""
    svc = app.extensions["gurugrow"]
    set_clock(app, NOW)
    if svc.mirror is not None:
        run_mirror(svc, once=True)
    assert get(client, "/auth/status", OLD)["status"] == "authorized"  # cached now
    check = started(client, NEW, "79991234567", world, kind)
    calls = len(world.calls)
    assert post(client, "/auth/check", check, kind)["status"] == "authorized"
    assert "GET /api/v5/customers/626518" not in world.calls[calls:]
    assert world.field(626518, TG_FIELD) == "222"
    assert get(client, "/auth/status", OLD)["status"] == "not_authorized"
    assert get(client, "/auth/status", NEW)["status"] == "authorized"


@pytest.mark.parametrize("env_overrides", [CONTACT])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_binding_written_after_the_start_read_the_field_is_the_one_cut_off(
        app, client, world, kind):
    """NEW's start read 111 in the field; then 555 bound the customer through this
    service. NEW's check must cut 555 off, not 111 again."""
    set_clock(app, NOW)
    check = started(client, NEW, "79991234567", world, kind)
    set_clock(app, NOW + 10)
    assert contact(client, OTHER, "79991234567", kind)["status"] == "authorized"
    assert get(client, "/auth/status", OTHER)["status"] == "authorized"  # cached
    set_clock(app, NOW + 20)
    assert post(client, "/auth/check", check, kind)["status"] == "authorized"
    assert world.field(626518, TG_FIELD) == "222"
    assert get(client, "/auth/status", OTHER)["status"] == "not_authorized"


@pytest.mark.parametrize("env_overrides", [CONTACT])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_field_read_after_this_service_last_wrote_it_is_the_one_believed(
        app, client, world, kind):
    """555 bound the customer through this service; a manager then put 666 in the field
    in RetailCRM. NEW's start read 666: its check cuts 666 off."""
    set_clock(app, NOW)
    assert contact(client, OTHER, "79991234567", kind)["status"] == "authorized"
    world.customers["626518"]["customFields"][TG_FIELD] = "666"  # the manager's edit
    set_clock(app, NOW + 10)
    assert get(client, "/auth/status", MANAGERS)["status"] == "authorized"  # cached
    check = started(client, NEW, "79991234567", world, kind)
    set_clock(app, NOW + 20)
    assert post(client, "/auth/check", check, kind)["status"] == "authorized"
    assert get(client, "/auth/status", MANAGERS)["status"] == "not_authorized"


class PollWatch:
    """``stores.once``'s clock: tells when a claim found the hold taken and began to poll."""

    def __init__(self) -> None:
        self.polling = threading.Event()
        self.monotonic = time.monotonic

    def sleep(self, seconds: float) -> None:
        self.polling.set()
        time.sleep(seconds)


@pytest.mark.parametrize("env_overrides", [{**CONTACT, "BOT_ANSWER_SECONDS": "30"}])
def test_a_check_that_waited_for_its_accounts_hold_reads_the_field_record_again(
        app, client, world, monkeypatch):
    """NEW's check finds its account's binding hold taken and waits; meanwhile 555 binds
    the customer. The record read beside the first (refused) claim is out of date: the
    check reads it again and cuts 555 off."""
    set_clock(app, NOW)
    check = started(client, NEW, "79991234567", world)
    watch = PollWatch()
    monkeypatch.setattr(once, "time", watch)
    hold = redis_keys.operation_lease("gg:", "binding",
                                      request_token("binding", "telegram", "222"))
    redis_of(app).set(hold, "another-attempt", px=60_000)  # a binding of 222 running
    answers: list[dict] = []
    waiting = threading.Thread(target=lambda: answers.append(
        post(app.test_client(), "/auth/check", check)))
    waiting.start()
    assert watch.polling.wait(20)  # the check's first claim was refused: it waits
    set_clock(app, NOW + 10)
    assert contact(client, OTHER, "79991234567")["status"] == "authorized"
    assert get(client, "/auth/status", OTHER)["status"] == "authorized"  # cached
    redis_of(app).delete(hold)  # the other binding of 222 ends
    waiting.join(30)
    assert answers and answers[0]["status"] == "authorized"
    assert world.field(626518, TG_FIELD) == "222"
    assert get(client, "/auth/status", OTHER)["status"] == "not_authorized"


def binding_hold(account: str) -> str:
    return redis_keys.operation_lease("gg:", "binding",
                                      request_token("binding", "telegram", account))


@pytest.fixture
def pipelines(monkeypatch) -> list[list[tuple[str, ...]]]:
    """Each pipeline the app sends: its commands as (name, first key or script's keys)."""
    import redis.client

    sent: list[list[tuple[str, ...]]] = []
    execute = redis.client.Pipeline.execute

    def recording(self, *args, **kwargs):
        sent.append([_named(c[0]) for c in self.command_stack])
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", recording)
    return sent


def _named(args: tuple) -> tuple[str, ...]:
    text = [a.decode() if isinstance(a, bytes) else str(a) for a in args]
    if text[0].upper() == "EVALSHA":
        return ("EVALSHA", *text[3:3 + int(text[2])])
    return (text[0].upper(), text[1])


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_check_frees_its_accounts_binding_hold_last_in_its_closing_round_trip(
        app, client, world, pipelines, kind):
    """One round trip closes the check: the answer kept for replays, NEW's binding cached,
    the field's record, OLD (cut off) dropped and, after all of them, the hold freed."""
    check = started(client, NEW, "79991234567", world, kind)
    assert get(client, "/auth/status", OLD)["status"] == "authorized"  # cached
    pipelines.clear()
    assert post(client, "/auth/check", check, kind)["status"] == "authorized"
    closing = pipelines[-1]
    assert closing[-1][0] == "EVALSHA" and closing[-1][-1] == binding_hold("222")
    written = {command[1] for command in closing[:-1]}
    assert {redis_keys.binding_cache("gg:", "telegram", "222"),
            redis_keys.binding_cache("gg:", "telegram", "111"),
            redis_keys.channel_field_written("gg:", "telegram", "626518")} <= written
    assert not redis_of(app).exists(binding_hold("222"))
    assert get(client, "/auth/status", OLD)["status"] == "not_authorized"


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_check_whose_crm_write_failed_frees_the_hold_and_the_code_at_once(
        app, client, world, kind):
    check = started(client, NEW, "79991234567", world, kind)
    world.fail["edit"] = (503, {"success": False, "errorMsg": "Rate limit exceeded"})
    assert post(client, "/auth/check", check, kind)["errorCode"] == "crm_unavailable"
    assert not redis_of(app).exists(binding_hold("222"))  # not left to lapse
    del world.fail["edit"]
    assert post(client, "/auth/check", check, kind)["status"] == "authorized"
    assert get(client, "/auth/status", OLD)["status"] == "not_authorized"


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_refused_or_replayed_code_frees_the_hold_it_claimed_with_the_check(
        app, client, world, kind):
    """The hold rides the code check's round trip, before the code is known good: a
    refused code, and a replay of a checked one, bind nothing and free it at once."""
    check = started(client, NEW, "79991234567", world, kind)
    refused = post(client, "/auth/check", {**check, "code": wrong(check["code"])}, kind)
    assert refused["status"] == "invalid_code"
    assert not redis_of(app).exists(binding_hold("222"))
    assert post(client, "/auth/check", check, kind)["status"] == "authorized"
    assert post(client, "/auth/check", check, kind)["status"] == "authorized"  # a replay
    assert not redis_of(app).exists(binding_hold("222"))
    assert world.field(626518, TG_FIELD) == "222"


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_refused_code_leaves_another_bindings_hold_alone(app, client, world, kind):
    check = started(client, NEW, "79991234567", world, kind)
    redis_of(app).set(binding_hold("222"), "another-attempt", px=60_000)
    refused = post(client, "/auth/check", {**check, "code": wrong(check["code"])}, kind)
    assert refused["status"] == "invalid_code"
    assert redis_of(app).get(binding_hold("222")) == b"another-attempt"
