"""The process's one lease-renewal thread: every running lease renewed on time, none
after its block ends, a lost lease left alone."""

from __future__ import annotations

import threading
import time

from gurugrow.stores.once import LeaseRenewer


class Counter:
    def __init__(self, answers: list[bool | Exception] | None = None) -> None:
        self.calls: list[float] = []
        self.threads: set[str] = set()
        self._answers = list(answers or [])

    def __call__(self) -> bool:
        self.calls.append(time.monotonic())
        self.threads.add(threading.current_thread().name)
        answer = self._answers.pop(0) if self._answers else True
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_many_leases_are_renewed_on_one_thread_and_never_after_their_block():
    counters = [Counter() for _ in range(20)]
    threads_before = threading.active_count()
    renewers = [LeaseRenewer(c, every=0.05) for c in counters]
    for renewer in renewers:
        renewer.__enter__()
    time.sleep(0.3)
    assert threading.active_count() <= threads_before + 1  # not one thread per lease
    for renewer in renewers:
        renewer.__exit__(None, None, None)
    ended = time.monotonic()
    time.sleep(0.15)
    for counter in counters:
        assert 3 <= len(counter.calls) <= 7, counter.calls
        assert all(t <= ended for t in counter.calls)
    assert {name for c in counters for name in c.threads} == {"lease-renewer"}


def test_a_lost_lease_is_not_renewed_again():
    counter = Counter([True, False])
    with LeaseRenewer(counter, every=0.03):
        time.sleep(0.25)
    assert len(counter.calls) == 2


def test_a_failing_renewal_is_tried_again_next_turn():
    counter = Counter([ConnectionError("redis away"), True, True])
    with LeaseRenewer(counter, every=0.03):
        time.sleep(0.2)
    assert len(counter.calls) >= 3


def test_exit_waits_for_a_renewal_in_flight():
    started, release = threading.Event(), threading.Event()
    finished: list[float] = []

    def slow_renew() -> bool:
        started.set()
        release.wait(1)
        finished.append(time.monotonic())
        return True

    renewer = LeaseRenewer(slow_renew, every=0.01)
    renewer.__enter__()
    assert started.wait(1)
    threading.Timer(0.1, release.set).start()
    renewer.__exit__(None, None, None)
    exited = time.monotonic()
    assert finished and finished[0] <= exited  # the caller settles after it, never before


def test_a_short_lease_is_not_held_up_by_a_long_one():
    long, short = Counter(), Counter()
    with LeaseRenewer(long, every=5.0), LeaseRenewer(short, every=0.02):
        time.sleep(0.2)
    assert long.calls == [] and len(short.calls) >= 5
