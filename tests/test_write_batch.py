"""WriteBatch: writes nobody reads an answer of, sent in one round trip; a lost script is
run again, a best-effort write's failure is only reported, any other failure raises."""

from __future__ import annotations

import fakeredis
import pytest

from gurugrow.basics.errors import StorageUnavailable
from gurugrow.stores.client import WriteBatch, written

SET_SCRIPT = "redis.call('SET', KEYS[1], ARGV[1], 'EX', 60) return 1"


@pytest.fixture
def r():
    return fakeredis.FakeRedis()


def test_scripts_and_commands_go_together_and_a_script_redis_lost_is_run_again(r):
    script = r.register_script(SET_SCRIPT)  # never loaded: Redis answers NOSCRIPT
    batch = WriteBatch(r)
    batch.script(script, ["a"], ["1"])
    batch.commands(lambda pipe: (pipe.set("b", "2", ex=60), pipe.set("c", "3", ex=60)))
    batch.send()
    assert [r.get(k) for k in ("a", "b", "c")] == [b"1", b"2", b"3"]
    assert 0 < r.ttl("a") <= 60

    again = WriteBatch(r)  # now loaded: EVALSHA succeeds in the pipeline itself
    again.script(script, ["a"], ["4"])
    again.send()
    assert r.get("a") == b"4"


def test_a_failed_write_raises_unless_it_is_best_effort(r):
    r.set("not-a-hash", "x")
    failures = []
    batch = WriteBatch(r)
    batch.commands(lambda pipe: pipe.hset("not-a-hash", "f", "v"), on_failure=failures.append)
    batch.commands(lambda pipe: pipe.set("kept", "1", ex=60))
    batch.send()
    assert r.get("kept") == b"1"
    assert len(failures) == 1 and isinstance(failures[0], StorageUnavailable)

    strict = WriteBatch(r)
    strict.commands(lambda pipe: pipe.hset("not-a-hash", "f", "v"))
    with pytest.raises(StorageUnavailable):
        strict.send()


def test_redis_down_raises_storage_unavailable():
    server = fakeredis.FakeServer()
    server.connected = False
    down = fakeredis.FakeRedis(server=server)
    batch = WriteBatch(down)
    batch.commands(lambda pipe: pipe.set("k", "v"), on_failure=lambda error: None)
    with pytest.raises(StorageUnavailable):
        batch.send()


def test_on_a_cluster_client_each_write_goes_on_its_own(r, monkeypatch):
    """redis-py's cluster pipeline refuses scripts: a cluster client sends one by one."""
    from gurugrow.stores import client as storage

    monkeypatch.setattr(storage, "RedisCluster", fakeredis.FakeRedis)
    script = r.register_script(SET_SCRIPT)
    r.set("not-a-hash", "x")
    failures = []
    batch = WriteBatch(r)
    batch.script(script, ["a"], ["1"])
    batch.commands(lambda pipe: pipe.hset("not-a-hash", "f", "v"), on_failure=failures.append)
    batch.commands(lambda pipe: pipe.set("b", "2", ex=60))
    batch.send()
    assert (r.get("a"), r.get("b"), len(failures)) == (b"1", b"2", 1)


def test_written_sends_its_own_batch_at_the_end_and_leaves_a_given_one_to_its_owner(r):
    with written(r, None) as own:
        own.commands(lambda pipe: pipe.set("own", "1", ex=60))
        assert r.get("own") is None
    assert r.get("own") == b"1"

    given = WriteBatch(r)
    with written(r, given) as writes:
        writes.commands(lambda pipe: pipe.set("given", "1", ex=60))
    assert r.get("given") is None
    given.send()
    assert r.get("given") == b"1"


APPEND_SCRIPT = "redis.call('RPUSH', KEYS[1], ARGV[1]) redis.call('EXPIRE', KEYS[1], 60) return 1"


@pytest.mark.parametrize("cluster", [False, True])
def test_a_last_write_goes_after_every_other_queued_before_or_after_it(r, monkeypatch,
                                                                      cluster):
    """A hold freed last: whoever takes it next finds everything it guarded written."""
    if cluster:
        from gurugrow.stores import client as storage

        monkeypatch.setattr(storage, "RedisCluster", fakeredis.FakeRedis)
    script = r.register_script(APPEND_SCRIPT)
    r.script_load(APPEND_SCRIPT)  # a lost script runs on its own after the rest
    batch = WriteBatch(r)
    batch.script(script, ["order"], ["first"])
    batch.script(script, ["order"], ["freed"], last=True)
    batch.commands(lambda pipe: pipe.rpush("order", "queued after it"))
    batch.send()
    assert r.lrange("order", 0, -1) == [b"first", b"queued after it", b"freed"]


@pytest.mark.parametrize("cluster", [False, True])
def test_then_is_handed_the_answers_once_sent_and_not_when_the_write_failed(r, monkeypatch,
                                                                          cluster):
    if cluster:
        from gurugrow.stores import client as storage

        monkeypatch.setattr(storage, "RedisCluster", fakeredis.FakeRedis)
    r.set("token", "t-1")
    r.set("not-a-hash", "x")
    heard: list = []
    batch = WriteBatch(r)
    batch.commands(lambda pipe: (pipe.delete("cached"), pipe.getdel("token")),
                   then=heard.append)
    batch.commands(lambda pipe: pipe.hset("not-a-hash", "f", "v"),
                   on_failure=lambda error: None, then=heard.append)
    assert heard == []  # nothing before the batch goes
    batch.send()
    assert heard == [[0, b"t-1"]] and r.get("token") is None


def test_a_failed_write_raises_only_once_every_sent_write_is_settled(r):
    """The pipeline applied the writes around a failed one: each ``then`` after it still
    hears of its answers (a token taken out of Redis is handed over, not lost with the
    error), and a best-effort failure after it is still reported."""
    r.set("not-a-hash", "x")
    r.set("token", "t-1")
    taken, failures = [], []
    batch = WriteBatch(r)
    batch.commands(lambda pipe: pipe.hset("not-a-hash", "f", "v"))
    batch.commands(lambda pipe: pipe.getdel("token"), then=taken.append)
    batch.commands(lambda pipe: pipe.hset("not-a-hash", "g", "v"), on_failure=failures.append)
    with pytest.raises(StorageUnavailable):
        batch.send()
    assert taken == [[b"t-1"]] and r.get("token") is None
    assert len(failures) == 1
