"""Redis helpers the stores share: the error guard, a script with what rides along in
its round trip, the write batch, a JSON cache with single-flight, and run-once results
under renewed leases."""

from __future__ import annotations

import heapq
import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, NamedTuple, Protocol

import redis
from redis.cluster import RedisCluster
from redis.typing import EncodableT, FieldT

from gurugrow import metrics, redis_keys
from gurugrow.errors import InProgress, StorageUnavailable

# A cluster client also raises RedisClusterException, which is not a RedisError.
REDIS_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException)


# A Redis hash's fields and values as redis-py's ``hset(mapping=...)`` takes them.
RedisHash = dict[FieldT, EncodableT]


class redis_guard:  # noqa: N801 - used as a context manager, reads like a statement
    """Turns redis-py errors into ``StorageUnavailable`` (``raise ... from``)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and isinstance(exc, REDIS_ERRORS):
            raise StorageUnavailable(type(exc).__name__) from exc


class PipelineRider(Protocol):
    """One more command for another step's round trip: it queues the command on that
    step's pipeline and is handed the command's answer (an exception if it failed)."""

    def queue(self, pipe: Any) -> None: ...

    def receive(self, answer: Any) -> None: ...


# The round trip's passenger: the rider waiting for the next script a store runs in this
# context (``riding_along`` sets it, ``run_script`` takes it). A one-place box, so the
# first script inside the block takes the rider and any later one runs alone.
_RIDER: ContextVar[list[PipelineRider] | None] = ContextVar("pipeline_rider", default=None)


@contextmanager
def riding_along(rider: PipelineRider | None) -> Iterator[None]:
    """The first store script run inside the block (``run_script``) carries ``rider``'s
    command in its round trip; the rest of the block runs as without it. ``None``:
    nothing rides (the block runs exactly as outside one)."""
    token = _RIDER.set([rider] if rider is not None else [])
    try:
        yield
    finally:
        _RIDER.reset(token)


def run_script(client: Any, script: Any, keys: list[str], args: list[Any]) -> Any:
    """Run a script registered on ``client``, carrying the rider of the enclosing
    ``riding_along`` block, if one is still waiting, in the same round trip (not on a
    Redis Cluster, whose pipelines refuse scripts: there the rider is left out and gets
    no answer)."""
    waiting = _RIDER.get()
    rider = waiting.pop() if waiting else None
    with redis_guard():
        if rider is None or isinstance(client, RedisCluster):
            return script(keys=keys, args=args)
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        rider.queue(pipe)
        answer, ridden = pipe.execute(raise_on_error=False)
        rider.receive(ridden)
        if isinstance(answer, redis.exceptions.NoScriptError):  # Redis restarted
            return script(keys=keys, args=args)
        if isinstance(answer, Exception):
            raise answer
        return answer


class _Write(NamedTuple):
    queue: Callable[[Any], None]  # puts its commands on a pipeline
    alone: Callable[[], None]  # runs it on its own (a cluster client; a script Redis lost)
    on_failure: Callable[[StorageUnavailable], None] | None  # None: a failure raises


class WriteBatch:
    """Writes whose answers nobody reads, sent to Redis together: one round trip.

    A pipeline, not a transaction: each write stays atomic on its own (a script is one),
    and writes on different keys may share it. Every round trip costs the app,
    redis-server and a context switch each way, more than the commands themselves.
    redis-py's cluster pipeline refuses scripts, so on a Redis Cluster each write goes
    on its own, in order.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._writes: list[_Write] = []

    def script(self, script: Any, keys: list[str], args: list[Any], *,
               on_failure: Callable[[StorageUnavailable], None] | None = None) -> None:
        """Queue a script registered on this client (as EVALSHA itself: redis-py's own
        script queueing would first ask Redis whether it has the script, a round trip)."""
        self._writes.append(_Write(
            lambda pipe: pipe.evalsha(script.sha, len(keys), *keys, *args),
            lambda: script(keys=keys, args=args), on_failure))

    def commands(self, queue: Callable[[Any], None], *,
                 on_failure: Callable[[StorageUnavailable], None] | None = None) -> None:
        """Queue the commands ``queue`` puts on a pipeline, as one write."""
        def alone() -> None:
            pipe = self._client.pipeline(transaction=False)
            queue(pipe)
            pipe.execute()

        self._writes.append(_Write(queue, alone, on_failure))

    def send(self) -> None:
        """Send everything queued. A write that failed raises StorageUnavailable, unless
        it was queued with ``on_failure`` (then that is called, and the rest stands)."""
        with redis_guard():
            if isinstance(self._client, RedisCluster):
                for write in self._writes:
                    self._run_alone(write)
                return
            pipe = self._client.pipeline(transaction=False)
            counts = []
            for write in self._writes:
                before = len(pipe)
                write.queue(pipe)
                counts.append(len(pipe) - before)
            results = iter(pipe.execute(raise_on_error=False))
            for write, count in zip(self._writes, counts, strict=True):
                for result in itertools.islice(results, count):
                    if isinstance(result, redis.exceptions.NoScriptError):
                        self._run_alone(write)  # Redis lost its scripts (a restart)
                    elif isinstance(result, Exception):
                        self._failed(result, write)

    def _run_alone(self, write: _Write) -> None:
        try:
            write.alone()
        except REDIS_ERRORS as e:
            self._failed(e, write)

    @staticmethod
    def _failed(error: Exception, write: _Write) -> None:
        if write.on_failure is None:
            raise error
        write.on_failure(StorageUnavailable(type(error).__name__))


@contextmanager
def written(client: Any, batch: WriteBatch | None) -> Iterator[WriteBatch]:
    """``batch`` to queue writes on (its owner sends it), or else a batch of one's own,
    sent when the block ends without an error."""
    if batch is not None:
        yield batch
        return
    own = WriteBatch(client)
    yield own
    own.send()


def cached_json(client: redis.Redis, key: str, ttl: int, load: Callable[[], Any],
                cache: str | None = None, *, wait_seconds: float = 5.0,
                poll: float = 0.05) -> Any:
    """``load()``'s value, kept in Redis as JSON for ``ttl`` seconds (0: no cache);
    lookups of a named ``cache`` count in gurugrow_cache_lookups_total.

    One caller loads a missing value while the others wait up to ``wait_seconds`` for
    it: a broadcast's first wave asks RetailCRM once, not once per caller.
    """
    if ttl <= 0:
        return load()
    with redis_guard():
        raw = client.get(key)
    if cache is not None:
        metrics.CACHE_LOOKUPS.labels(cache, "miss" if raw is None else "hit").inc()
    if raw is not None:
        return json.loads(raw)
    marker, owner = redis_keys.loading_marker(key), uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    while True:
        with redis_guard():  # the claim and a second look, in one round trip
            pipe = client.pipeline(transaction=False)
            pipe.set(marker, owner, nx=True, ex=max(int(wait_seconds), 1))
            pipe.get(key)
            claimed, raw = pipe.execute()
        if raw is not None:  # stored between our first look and the claim
            if claimed:
                with redis_guard():
                    _script(client, _RELEASE_SCRIPT)(keys=[marker], args=[owner])
            return json.loads(raw)
        if claimed or time.monotonic() >= deadline:
            break
        time.sleep(poll)
        with redis_guard():
            raw = client.get(key)
        if raw is not None:
            return json.loads(raw)
    stored = False
    try:
        value = load()
        text = json.dumps(value, ensure_ascii=False)
        # The value and (when ours) the marker's release in one round trip.
        batch = WriteBatch(client)
        batch.commands(lambda pipe: pipe.set(key, text, ex=ttl))
        if claimed:
            batch.script(_script(client, _RELEASE_SCRIPT), [marker], [owner])
        batch.send()
        stored = True
    finally:
        if claimed and not stored:  # a failed load frees the marker for the next one
            with redis_guard():
                _script(client, _RELEASE_SCRIPT)(keys=[marker], args=[owner])
    return value


def delete_matching(client: redis.Redis, pattern: str, batch: int = 500) -> int:
    """Delete every key matching a SCAN ``pattern`` (on every node of a cluster); the
    number deleted. For the sandbox's reset only: a live service never wipes its keys."""
    deleted, chunk = 0, []
    with redis_guard():
        for key in client.scan_iter(match=pattern, count=batch):
            chunk.append(key)
            if len(chunk) >= batch:
                deleted += client.delete(*chunk)
                chunk = []
        if chunk:
            deleted += client.delete(*chunk)
    return deleted


class _Renewal:
    """One lease being renewed: when it is next due, and whether it still runs."""

    __slots__ = ("renew", "every", "due", "active")

    def __init__(self, renew: Callable[[], bool], every: float, due: float) -> None:
        self.renew, self.every, self.due, self.active = renew, every, due, True


class _Renewals:
    """One background thread per process renews every running lease when it falls due.

    Not a thread per lease: a thread start and join on every claimed code or repeat
    costs more CPU than the Redis round trips of the request itself.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._reset()

    def _reset(self) -> None:
        # After a fork the parent's thread and lock do not exist here: start afresh.
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Renewal]] = []
        self._count = itertools.count()
        self._running: _Renewal | None = None
        self._thread: threading.Thread | None = None

    def add(self, renew: Callable[[], bool], every: float) -> _Renewal:
        if self._pid != os.getpid():
            self._reset()
        entry = _Renewal(renew, every, time.monotonic() + every)
        with self._cond:
            heapq.heappush(self._heap, (entry.due, next(self._count), entry))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-renewer",
                                                daemon=True)
                self._thread.start()
            if self._heap[0][2] is entry:  # due before the one the thread waits for
                self._cond.notify()
        return entry

    def remove(self, entry: _Renewal) -> None:
        """Stop renewing ``entry``; returns once no renewal of it is in flight, so the
        caller may settle the lease knowing nothing renews it afterwards."""
        with self._cond:
            entry.active = False
            while self._running is entry:
                self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and not self._heap[0][2].active:
                    heapq.heappop(self._heap)  # removed while waiting: drop it
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, entry = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                self._running = entry
            try:
                kept = entry.renew()
            except Exception:  # noqa: BLE001 - a failed renewal must not kill the work
                kept = True  # Redis may be back by the next turn
            with self._cond:
                self._running = None
                if kept and entry.active:
                    entry.due = time.monotonic() + entry.every
                    heapq.heappush(self._heap, (entry.due, next(self._count), entry))
                # else lost: someone took over; stop renewing someone else's lease
                self._cond.notify_all()


_RENEWALS = _Renewals()


class LeaseRenewer:
    """Calls ``renew`` every ``every`` seconds (on the process's renewal thread) while
    the ``with`` block runs, so a lease outlives slow work but lapses soon after a crash.
    Stops after ``renew`` returns False (the lease was lost)."""

    def __init__(self, renew: Callable[[], bool], every: float) -> None:
        self._renew = renew
        self._every = every
        self._entry: _Renewal | None = None

    def __enter__(self) -> LeaseRenewer:
        self._entry = _RENEWALS.add(self._renew, self._every)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._entry is not None:
            _RENEWALS.remove(self._entry)


# The marker of one idempotent operation is a hash (its ``result`` once kept, and the
# ``notes`` of the attempt that ran it); the attempt running it holds a lease key with a
# short TTL, renewed while it works. A crashed attempt's lease lapses by itself and the
# next attempt takes over, with the notes (e.g. the order number it was creating).
_CLAIM_SCRIPT = """
local m = redis.call('HMGET', KEYS[1], 'result', 'notes')
if m[1] then return {'done', m[1]} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'running', ''} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local resumed = redis.call('HSETNX', KEYS[1], 'claimed', '1') == 0
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {resumed and 'resumed' or 'claimed', m[2] or ''}
"""
_NOTE_SCRIPT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'notes', ARGV[2])
return 1
"""
# Only the lease's holder finishes: when another attempt took over (this one's lease
# lapsed), its result is the one to keep and this one writes nothing. A lapsed lease
# nobody took still lets the holder keep its result, or a replay would redo the work.
_FINISH_SCRIPT = """
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'result', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
if holder then redis.call('DEL', KEYS[2]) end
return 1
"""
# Deletes a marker (KEYS[1]) only while it is still the caller's (ARGV[1]).
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Extends a lease (KEYS[1]) only while its holder (ARGV[1]) still holds it.
RENEW_LEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class Lease:
    """One attempt's hold on an operation. ``resumed`` says an earlier attempt ran (and
    crashed or failed); ``notes`` are what it wrote down. ``note`` writes this attempt's,
    before a step whose effect the next attempt must be able to find (an order number)."""

    def __init__(self, client: redis.Redis, keys: list[str], lease_seconds: float,
                 notes: dict[str, Any]) -> None:
        self._client = client
        self._keys = keys
        self._ms = max(int(lease_seconds * 1000), 1)
        self.token = uuid.uuid4().hex
        self.notes = notes
        self.resumed = False  # an earlier attempt ran (and died or failed) before this one

    def note(self, **fields: Any) -> None:
        """Remember ``fields`` with the operation (kept until its window ends)."""
        self.notes = {**self.notes, **fields}
        with redis_guard():
            _script(self._client, _NOTE_SCRIPT)(
                keys=self._keys, args=[self.token, json.dumps(self.notes, ensure_ascii=False)])

    def renew(self) -> bool:
        """Extend the lease; False when it was lost (lapsed and taken over)."""
        with redis_guard():
            return bool(_script(self._client, RENEW_LEASE_SCRIPT)(
                keys=self._keys[1:], args=[self.token, self._ms]))


def _script(client: redis.Redis, source: str) -> Any:
    # Registering only hashes the source locally; the script is loaded on first use.
    return client.register_script(source)


def run_once(client: redis.Redis, key: str, lease_key: str, window: int,
             operation: Callable[[Lease], dict], *,
             keep: Callable[[dict], bool] = lambda result: True,
             wait_seconds: float = 10.0, poll: float = 0.05,
             lease_seconds: float = 1.0) -> dict:
    """Run ``operation`` once per ``key`` within ``window`` seconds; repeats get its result.
    ``lease_key`` (same cluster slot) is held while an attempt runs it.

    The running attempt holds a lease of ``lease_seconds``, renewed while it works. A
    concurrent repeat waits up to ``wait_seconds`` for the first one's result, then
    raises InProgress; when the lease lapses (the worker died) it takes over at once,
    with the notes the first attempt left in ``Lease.notes``. A result that ``keep``
    rejects, or an exception, frees the operation for the next call (notes are kept).
    """
    keys = [key, lease_key]
    deadline = time.monotonic() + wait_seconds
    while True:
        lease = Lease(client, keys, lease_seconds, {})
        with redis_guard():
            state, raw = _script(client, _CLAIM_SCRIPT)(
                keys=keys, args=[lease.token, lease._ms, window])
        state = state.decode() if isinstance(state, bytes) else state
        if state == "done":
            return json.loads(raw)
        if state in ("claimed", "resumed"):
            lease.resumed = state == "resumed"
            break
        if time.monotonic() >= deadline:
            raise InProgress(key)
        time.sleep(poll)
    lease.notes = json.loads(raw) if raw else {}
    result: dict | None = None
    try:
        with LeaseRenewer(lease.renew, every=lease_seconds / 4):
            result = operation(lease)
    finally:
        kept = json.dumps(result, ensure_ascii=False) if result is not None and keep(
            result) else ""
        with redis_guard():
            _script(client, _FINISH_SCRIPT)(keys=keys, args=[lease.token, kept, window])
    return result
