"""stores.client.run_script's rider: its command goes in the round trip of the script it
is handed to, and only that one; without one a script runs alone; several (``Riders``)
each get their own answer."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from fakeredis._clients._sync import FakeRedisConnection

from gurugrow.stores import client as storage
from gurugrow.stores.caches import ChannelFieldRead, FlowCaches
from gurugrow.stores.client import Riders, run_script
from gurugrow.stores.once import ClaimAhead, run_once
from gurugrow.stores.scripts import load_script

STEP = "return redis.call('INCR', KEYS[1])"


class Rider:
    """Rides an INCR of ``ridden``; remembers every answer it was handed."""

    def __init__(self) -> None:
        self.answers: list[Any] = []

    def queue(self, pipe: Any) -> None:
        pipe.incr("ridden")

    def receive(self, answer: Any) -> None:
        self.answers.append(answer)


@pytest.fixture
def r():
    return fakeredis.FakeRedis()


@pytest.fixture
def round_trips(monkeypatch):
    """What the client sends to Redis: one per command, one per pipeline or script."""
    sent = [0]
    original = FakeRedisConnection.send_packed_command

    def counting(self, command, *args, **kwargs):
        sent[0] += 1
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(FakeRedisConnection, "send_packed_command", counting)
    return sent


def test_the_rider_goes_in_its_scripts_round_trip_and_no_other(r, round_trips):
    step = r.register_script(STEP)
    step(keys=["step"], args=[])  # loaded, as a warm worker's are
    rider = Rider()
    before = round_trips[0]
    assert run_script(r, step, ["step"], [], rider) == 2
    assert round_trips[0] - before == 1  # the step and the rider: one round trip
    assert rider.answers == [1]
    assert run_script(r, step, ["step"], []) == 3  # a later look rides nothing
    assert round_trips[0] - before == 2
    assert (rider.answers, r.get("ridden")) == ([1], b"1")


def test_nothing_rides_a_script_given_none(r):
    step = r.register_script(STEP)
    assert run_script(r, step, ["step"], [], None) == 1
    assert r.get("ridden") is None


def test_a_script_redis_lost_runs_again_and_the_rider_keeps_its_answer(r):
    step = r.register_script(STEP)  # never loaded: the pipeline's EVALSHA is NOSCRIPT
    rider = Rider()
    assert run_script(r, step, ["step"], [], rider) == 1
    assert (rider.answers, r.get("step"), r.get("ridden")) == ([1], b"1", b"1")


def test_on_a_cluster_client_the_rider_is_left_out_and_hears_nothing(r, monkeypatch):
    monkeypatch.setattr(storage, "RedisCluster", fakeredis.FakeRedis)  # pipelines refuse scripts
    step = r.register_script(STEP)
    rider = Rider()
    assert run_script(r, step, ["step"], [], rider) == 1
    assert (rider.answers, r.get("ridden")) == ([], None)


def test_several_riders_share_the_round_trip_each_with_its_own_answer(r, round_trips):
    step = r.register_script(STEP)
    step(keys=["step"], args=[])
    r.set("other", "kept")
    first, second = Rider(), ChannelFieldRead("other")
    before = round_trips[0]
    assert run_script(r, step, ["step"], [], Riders(first, None, second)) == 2
    assert round_trips[0] - before == 1
    assert (first.answers, second.answered, second.value) == ([1], True, b"kept")


def test_a_field_record_read_left_out_on_a_cluster_is_read_on_its_own(r, monkeypatch):
    monkeypatch.setattr(storage, "RedisCluster", fakeredis.FakeRedis)  # pipelines refuse scripts
    caches = FlowCaches(r, "gg:")
    caches.put_channel_field_written("telegram", "1001", "555", 1_780_000_000.0, 60)
    read = caches.channel_field_read("telegram", "1001")
    step = r.register_script(STEP)
    run_script(r, step, ["step"], [], Riders(read))
    assert not read.answered
    assert caches.channel_field_written("telegram", "1001", read) == ("555", 1_780_000_000.0)


def claim_ahead(r) -> ClaimAhead:
    for name in ("once_claim", "once_finish"):
        r.script_load(load_script(name))  # loaded, as a warm worker's are
    return ClaimAhead(r, "once:{hold}", "once:{hold}:lease", 60, 1.0)


def test_a_claim_ahead_rides_and_run_once_starts_from_it_without_claiming_again(
        r, round_trips):
    ahead = claim_ahead(r)
    step = r.register_script(STEP)
    step(keys=["step"], args=[])
    run_script(r, step, ["step"], [], Riders(ahead))
    assert r.get("once:{hold}:lease") == ahead.lease.token.encode()
    before, tokens = round_trips[0], []
    run_once(r, "once:{hold}", "once:{hold}:lease", 60,
             lambda lease: tokens.append(lease.token) or {}, keep=lambda result: False,
             ahead=ahead)
    assert tokens == [ahead.lease.token]
    assert round_trips[0] - before == 1  # only the lease freed
    ahead.give_up()  # taken over: nothing left to free, no round trip
    assert round_trips[0] - before == 1
    assert not r.exists("once:{hold}:lease")


def test_a_claim_ahead_left_out_on_a_cluster_is_claimed_by_run_once(r, monkeypatch):
    monkeypatch.setattr(storage, "RedisCluster", fakeredis.FakeRedis)  # pipelines refuse scripts
    ahead = claim_ahead(r)
    run_script(r, r.register_script(STEP), ["step"], [], Riders(ahead))
    assert ahead.answer is None and not r.exists("once:{hold}:lease")
    ran: list[str] = []
    run_once(r, "once:{hold}", "once:{hold}:lease", 60,
             lambda lease: ran.append(lease.token) or {}, ahead=ahead)
    assert len(ran) == 1 and not r.exists("once:{hold}:lease")


def test_a_claim_ahead_given_up_frees_only_its_own_lease(r):
    ahead = claim_ahead(r)
    run_script(r, r.register_script(STEP), ["step"], [], Riders(ahead))
    ahead.give_up()
    assert not r.exists("once:{hold}:lease")
    r.set("once:{hold}:lease", "another-attempt", px=60_000)
    late = claim_ahead(r)
    run_script(r, r.register_script(STEP), ["step"], [], Riders(late))
    late.give_up()  # it found the hold running: nothing of its own to free
    assert r.get("once:{hold}:lease") == b"another-attempt"


def test_a_failed_operation_whose_lease_cannot_be_freed_raises_its_own_error():
    """The lease lapses by itself; Redis going away must not hide why the work failed."""
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)

    def operation(lease: Any) -> dict:
        server.connected = False
        raise ValueError("the operation's own")

    with pytest.raises(ValueError, match="the operation's own"):
        run_once(client, "once:{x}", "once:{x}:lease", 60, operation)
