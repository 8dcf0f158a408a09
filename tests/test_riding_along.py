"""stores.client.riding_along: a rider's command goes in the round trip of the first store
script run inside the block, and only that one; outside a block a script runs alone."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from fakeredis._clients._sync import FakeRedisConnection

from gurugrow.stores import client as storage
from gurugrow.stores.client import riding_along, run_script

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


def test_the_rider_goes_in_the_first_scripts_round_trip_and_no_other(r, round_trips):
    step = r.register_script(STEP)
    step(keys=["step"], args=[])  # loaded, as a warm worker's are
    rider = Rider()
    before = round_trips[0]
    with riding_along(rider):
        assert run_script(r, step, ["step"], []) == 2
        assert round_trips[0] - before == 1  # the step and the rider: one round trip
        assert rider.answers == [1]
        assert run_script(r, step, ["step"], []) == 3  # a later look rides nothing
    assert run_script(r, step, ["step"], []) == 4  # outside: nothing waits to ride
    assert round_trips[0] - before == 3
    assert (rider.answers, r.get("ridden")) == ([1], b"1")


def test_nothing_rides_outside_a_block_or_in_one_given_none(r):
    step = r.register_script(STEP)
    rider = Rider()
    with riding_along(rider):
        with riding_along(None):
            assert run_script(r, step, ["step"], []) == 1
        assert rider.answers == []  # the inner block's script took nothing
        assert run_script(r, step, ["step"], []) == 2
    assert rider.answers == [1]


def test_a_script_redis_lost_runs_again_and_the_rider_keeps_its_answer(r):
    step = r.register_script(STEP)  # never loaded: the pipeline's EVALSHA is NOSCRIPT
    rider = Rider()
    with riding_along(rider):
        assert run_script(r, step, ["step"], []) == 1
    assert (rider.answers, r.get("step"), r.get("ridden")) == ([1], b"1", b"1")


def test_on_a_cluster_client_the_rider_is_left_out_and_hears_nothing(r, monkeypatch):
    monkeypatch.setattr(storage, "RedisCluster", fakeredis.FakeRedis)  # pipelines refuse scripts
    step = r.register_script(STEP)
    rider = Rider()
    with riding_along(rider):
        assert run_script(r, step, ["step"], []) == 1
    assert (rider.answers, r.get("ridden")) == ([], None)
