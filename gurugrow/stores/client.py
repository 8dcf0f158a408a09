"""The Redis client's edge: the error guard (redis-py errors → StorageUnavailable),
scripts with a rider in their round trip, and the write batch."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, NamedTuple, Protocol

import redis
from redis.cluster import RedisCluster
from redis.typing import EncodableT, FieldT

from gurugrow.basics.errors import StorageUnavailable

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


class Riders:
    """Several riders in one step's round trip, each handed its own command's answer."""

    def __init__(self, *riders: PipelineRider | None) -> None:
        self.riders = [r for r in riders if r is not None]

    def queue(self, pipe: Any) -> None:
        for rider in self.riders:
            rider.queue(pipe)

    def receive_all(self, answers: list[Any]) -> None:
        for rider, answer in zip(self.riders, answers, strict=True):
            rider.receive(answer)


def run_script(client: Any, script: Any, keys: list[str], args: list[Any],
               rider: PipelineRider | Riders | None = None) -> Any:
    """Run a script registered on ``client``, with ``rider``'s command (or each of
    ``Riders``') in the same round trip (not on a Redis Cluster, whose pipelines refuse
    scripts: there the riders are left out and get no answer)."""
    with redis_guard():
        if rider is None or isinstance(client, RedisCluster):
            return script(keys=keys, args=args)
        riders = rider if isinstance(rider, Riders) else Riders(rider)
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        riders.queue(pipe)
        answer, *ridden = pipe.execute(raise_on_error=False)
        riders.receive_all(ridden)
        if isinstance(answer, redis.exceptions.NoScriptError):  # Redis restarted
            return script(keys=keys, args=args)
        if isinstance(answer, Exception):
            raise answer
        return answer


def run_riders(client: Any, riders: Riders) -> None:
    """Riders with no script to ride on: their commands together, in one round trip of
    their own (not on a Redis Cluster: there they get no answer, as in ``run_script``)."""
    if isinstance(client, RedisCluster):
        return
    with redis_guard():
        pipe = client.pipeline(transaction=False)
        riders.queue(pipe)
        riders.receive_all(pipe.execute(raise_on_error=False))


class _Write(NamedTuple):
    queue: Callable[[Any], None]  # puts its commands on a pipeline
    alone: Callable[[], list[Any]]  # runs it on its own (a cluster; a script Redis lost)
    on_failure: Callable[[StorageUnavailable], None] | None  # None: a failure raises
    then: Callable[[list[Any]], None] | None  # handed the commands' answers once sent


class WriteBatch:
    """Writes whose answers nobody reads, sent to Redis together: one round trip."""
    # A pipeline, not a transaction: each write stays atomic on its own (a script is one), and
    # writes on different keys may share it. Every round trip costs the app, redis-server and a
    # context switch each way, more than the commands themselves. redis-py's cluster pipeline
    # refuses scripts, so on a Redis Cluster each write goes on its own, in order.

    def __init__(self, client: Any) -> None:
        self._client = client
        self._writes: list[_Write] = []
        self._last: list[_Write] = []

    def script(self, script: Any, keys: list[str], args: list[Any], *,
               on_failure: Callable[[StorageUnavailable], None] | None = None,
               last: bool = False) -> None:
        """Queue a script registered on this client, as EVALSHA itself."""
        # EVALSHA itself: redis-py's own script queueing would first ask Redis whether it
        # has the script, a round trip.
        write = _Write(lambda pipe: pipe.evalsha(script.sha, len(keys), *keys, *args),
                       lambda: [script(keys=keys, args=args)], on_failure, None)
        # ``last``: after every other write, queued before or after (a hold is freed once
        # everything it guards is written).
        (self._last if last else self._writes).append(write)

    def commands(self, queue: Callable[[Any], None], *,
                 on_failure: Callable[[StorageUnavailable], None] | None = None,
                 then: Callable[[list[Any]], None] | None = None) -> None:
        """Queue the commands ``queue`` puts on a pipeline, as one write; ``then`` is
        handed their answers once the batch is sent."""
        def alone() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            queue(pipe)
            return list(pipe.execute())

        self._writes.append(_Write(queue, alone, on_failure, then))

    def send(self) -> None:
        """Send everything queued. A write that failed raises StorageUnavailable, unless
        it was queued with ``on_failure`` (then that is called, and the rest stands)."""
        writes = [*self._writes, *self._last]
        if not writes:
            return
        with redis_guard():
            if isinstance(self._client, RedisCluster):
                for write in writes:  # one by one: a write after a failure is not sent
                    if (failure := self._run_alone(write)) is not None:
                        raise failure
                return
            pipe = self._client.pipeline(transaction=False)
            counts = []
            for write in writes:
                before = len(pipe)
                write.queue(pipe)
                counts.append(len(pipe) - before)
            results = iter(pipe.execute(raise_on_error=False))
            # All of them were sent: each is settled before one's failure raises, so what
            # the others applied stands and their ``then`` hears of it (a token taken is
            # handed over, not lost with the error).
            failure = None
            for write, count in zip(writes, counts, strict=True):
                answers = list(itertools.islice(results, count))
                unsettled = None
                if any(isinstance(a, redis.exceptions.NoScriptError) for a in answers):
                    unsettled = self._run_alone(write)  # Redis lost its scripts (a restart)
                elif failed := next((a for a in answers if isinstance(a, Exception)), None):
                    unsettled = self._failed(failed, write)
                elif write.then is not None:
                    write.then(answers)
                failure = failure or unsettled
            if failure is not None:
                raise failure

    def _run_alone(self, write: _Write) -> Exception | None:
        """Run one write on its own; the failure to raise, if it is not best effort."""
        try:
            answers = write.alone()
        except REDIS_ERRORS as e:
            return self._failed(e, write)
        if write.then is not None:
            write.then(answers)
        return None

    @staticmethod
    def _failed(error: Exception, write: _Write) -> Exception | None:
        """A write failed: ``error`` to raise, or None once its ``on_failure`` heard it."""
        if write.on_failure is None:
            return error
        write.on_failure(StorageUnavailable(type(error).__name__))
        return None


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


def registered_script(client: redis.Redis, source: str) -> Any:
    # Registering only hashes the source locally; the script is loaded on first use.
    return client.register_script(source)
