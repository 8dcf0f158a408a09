"""The shared RetailCRM bucket, through its script (fakeredis) and through HTTP: the
one-second window, journey priority, `busy`, 503/429 slowing everybody down."""

from __future__ import annotations

import threading
import time

import fakeredis
import pytest
from prometheus_client import REGISTRY

from gurugrow.basics.errors import CrmBusy
from gurugrow.governor import JOURNEY, READ, CrmQuota, crm_priority
from gurugrow.stores import keys as redis_keys
from gurugrow.stores.client import run_script
from gurugrow.stores.quota import BUSY, GRANTED, IN_LINE
from gurugrow.stores.scripts import load_script
from tests.helpers import BODY_KINDS, TG, arrange_bound_world, get, post, redis_of

BOUND = {"channelType": "telegram", "messengerUserId": "100500"}


def quota(client=None, *, rate=9, queue=100.0, horizon=3.0, **kwargs) -> CrmQuota:
    return CrmQuota(client or fakeredis.FakeRedis(), "gg:", rate_limit=rate,
                    queue_seconds=queue, read_horizon_seconds=horizon, **kwargs)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- the script ---------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [9, 10, 3])
def test_no_one_second_window_ever_holds_more_than_the_rate(rate):
    """300 grants from 8 threads at once: any rate+1 consecutive slots span more than one
    second, so no window, open or closed, holds more than ``rate`` of them."""
    bucket = quota(rate=rate, queue=1000.0)
    slots: list[int] = []
    lock = threading.Lock()

    def take(n: int) -> None:
        for i in range(n):
            grant = bucket.reserve(JOURNEY, 1000.0, f"t{threading.get_ident()}-{i}")
            assert grant.state == GRANTED
            with lock:
                slots.append(grant.slot_us)

    threads = [threading.Thread(target=take, args=(300 // 8,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slots.sort()
    assert len(slots) == 8 * (300 // 8) and len(set(slots)) == len(slots)
    spans = [slots[i + rate] - slots[i] for i in range(len(slots) - rate)]
    assert min(spans) > 1_000_000
    # No burst allowance: the first grants are already spaced by 1/rate.
    gaps = [slots[i + 1] - slots[i] for i in range(len(slots) - 1)]
    assert min(gaps) == 1_000_000 // rate + 1


def test_an_idle_bucket_grants_at_once_and_paces_the_next():
    bucket = quota(rate=10)
    first = bucket.reserve(READ, 10, "a")
    second = bucket.reserve(READ, 10, "b")
    assert (first.state, second.state) == (GRANTED, GRANTED)
    assert first.seconds == 0 and 0.09 < second.seconds <= 0.1001


def test_journey_calls_pass_a_wave_of_reads():
    """Reads reserve at most the read horizon (1 s) ahead, then wait in line; a journey
    call reserves past the line, so it waits about the horizon, not the whole wave."""
    bucket = quota(rate=10, queue=10.0, horizon=1.0)
    states = [bucket.reserve(READ, 10.0, f"read-{i}").state for i in range(40)]
    assert states[:11] == [GRANTED] * 11  # slots 0 … 1.0 s ahead
    assert set(states[11:]) == {IN_LINE}  # 29 reads in line
    journey = bucket.reserve(JOURNEY, 10.0, "journey")
    assert journey.state == GRANTED and journey.seconds <= 1.2
    # The head of the line is next after the journey call; a newcomer goes to the back.
    head = bucket.reserve(READ, 10.0, "read-11")
    late = bucket.reserve(READ, 10.0, "late")
    assert head.state == IN_LINE and late.state == IN_LINE
    assert late.seconds > head.seconds + 2.5  # 29 readers ahead of it at 0.1 s each


def test_a_line_longer_than_the_patience_is_busy_at_once():
    bucket = quota(rate=10, queue=2.0, horizon=1.0)
    for i in range(11):
        assert bucket.reserve(READ, 2.0, f"r{i}").state == GRANTED
    assert bucket.reserve(READ, 2.0, "in-line").state == IN_LINE
    for i in range(9):
        bucket.reserve(READ, 2.0, f"more-{i}")
    refused = bucket.reserve(READ, 2.0, "refused")
    assert refused.state == BUSY and refused.seconds > 2.0
    journey = bucket.reserve(JOURNEY, 0.5, "journey")  # 1.1 s ahead > its 0.5 s
    assert journey.state == BUSY


def test_acquire_sleeps_until_its_slot_and_counts_it():
    slept: list[float] = []
    bucket = quota(rate=5, sleep=slept.append)
    before = sample("gurugrow_crm_slots_total", priority="read")
    bucket.acquire(priority=READ)
    bucket.acquire(priority=READ)
    assert len(slept) == 1 and 0.15 < slept[0] <= 0.2001  # the first slot was free
    assert sample("gurugrow_crm_slots_total", priority="read") == before + 2


def test_acquire_raises_busy_with_the_wait_and_leaves_no_place_in_line():
    client = fakeredis.FakeRedis()
    bucket = quota(client, rate=10, queue=1.0, horizon=0.5)
    bucket.slow_down(5.0)
    before = sample("gurugrow_crm_busy_total", priority="read")
    with pytest.raises(CrmBusy) as caught:
        bucket.acquire(priority=READ)
    assert caught.value.retry_after == 5
    assert sample("gurugrow_crm_busy_total", priority="read") == before + 1
    assert client.zcard(redis_keys.crm_quota_waiting("gg:")) == 0


def test_every_key_has_a_ttl_and_one_hash_tag():
    client = fakeredis.FakeRedis()
    bucket = quota(client, rate=10, horizon=0.1)
    for i in range(5):
        bucket.reserve(READ, 10.0, f"r{i}")
    keys = client.keys("gg:crm:*")
    assert {k.decode() for k in keys} == {redis_keys.crm_quota_tail("gg:"),
                                         redis_keys.crm_quota_waiting("gg:")}
    assert all(client.pttl(k) > 0 for k in keys)
    assert all("{crm-quota}" in k.decode() for k in keys)


# -- through HTTP ---------------------------------------------------------------------------
@pytest.fixture
def world(upstreams):
    return arrange_bound_world(upstreams)


def crm_quota(app) -> CrmQuota:
    return app.extensions["gurugrow"].crm._http.quota


@pytest.mark.parametrize("env_overrides", [{"RETAILCRM_QUEUE_SECONDS": "2"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_no_slot_in_time_answers_busy_without_calling_the_crm(app, client, world, kind):
    crm_quota(app).slow_down(30.0)  # as if the line were 30 s long
    calls = len(world.calls)
    started = time.monotonic()
    answers = [get(client, "/auth/status", BOUND), get(client, "/orders", BOUND),
               post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"}, kind),
               post(client, "/orders/recommended/preview",
                    {**BOUND, "offerCode": "male_hairloss_basic"}, kind),
               post(client, "/auth/start", {**TG, "phone": "79990000001"}, kind)]
    assert time.monotonic() - started < 1.0  # refused at once, not after the wait
    for answer in answers:
        assert (answer["status"], answer["errorCode"]) == ("error", "busy")
        assert 29 <= answer["retryAfterSec"] <= 31
        assert "попробуйте" in answer["message"]
    assert world.calls[calls:] == []
    assert world.sent == []


@pytest.mark.parametrize("env_overrides", [{"RETAILCRM_QUEUE_SECONDS": "2",
                                            "OTP_RESEND_COOLDOWN_SECONDS": "60"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_busy_burns_neither_the_code_nor_the_cooldown(app, client, world, kind):
    crm_quota(app).slow_down(30.0)
    refused = post(client, "/auth/start", {**TG, "phone": "79990000001"}, kind)
    assert refused["errorCode"] == "busy"
    redis_of(app).delete(redis_keys.crm_quota_tail("gg:"))
    started = post(client, "/auth/start", {**TG, "phone": "79990000001"}, kind)
    assert started["status"] == "sent"  # the busy start took no cooldown
    crm_quota(app).slow_down(30.0)
    check = {**TG, "sessionId": started["sessionId"], "code": world.codes_sent()[-1]}
    busy = post(client, "/auth/check", check, kind)
    assert (busy["status"], busy["errorCode"]) == ("error", "busy")
    redis_of(app).delete(redis_keys.crm_quota_tail("gg:"))
    assert post(client, "/auth/check", check, kind)["status"] == "authorized"


@pytest.mark.parametrize("env_overrides", [{"RETAILCRM_MAX_RETRIES": "2",
                                            "RETAILCRM_THROTTLE_PAUSE_SECONDS": "0.3"}])
@pytest.mark.parametrize("status", [503, 429])
def test_a_throttled_read_slows_the_bucket_and_retries_through_it(app, client, world, status):
    world.fail_once["customers"] = (status, {"success": False, "errorMsg": "Rate limit"})
    times: list[float] = []
    original = crm_quota(app).acquire
    crm_quota(app).acquire = lambda *a, **kw: (original(*a, **kw), times.append(
        time.monotonic()))[0]
    before = sample("gurugrow_crm_throttled_total", http_status=str(status))
    answer = get(client, "/auth/status", BOUND)
    assert answer["status"] == "authorized"
    assert world.crm_calls("GET /api/v5/customers") == ["GET /api/v5/customers"] * 2
    assert times[1] - times[0] >= 0.29  # the retry waited out the pause, in the bucket
    assert sample("gurugrow_crm_throttled_total", http_status=str(status)) == before + 1


@pytest.mark.parametrize("env_overrides", [{"RETAILCRM_MAX_RETRIES": "3",
                                            "RETAILCRM_QUEUE_SECONDS": "1"}])
def test_retry_after_pauses_everybody_and_is_bounded_by_the_queue(app, client, world):
    world.fail["customers"] = (503, {"success": False, "errorMsg": "Rate limit"})
    world.app.after_request(_retry_after_header)
    started = time.monotonic()
    answer = get(client, "/auth/status", BOUND)
    assert (answer["status"], answer["errorCode"]) == ("error", "busy")
    assert time.monotonic() - started < 1.0
    assert world.crm_calls("GET /api/v5/customers") == ["GET /api/v5/customers"]
    # Everybody else waits too: even a journey call finds no slot for 5 s.
    other = post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"})
    assert (other["errorCode"], other["retryAfterSec"]) == ("busy", 5)


def _retry_after_header(response):
    if response.status_code == 503:
        response.headers["Retry-After"] = "5"
    return response


def test_writes_are_never_repeated_after_a_throttle(app, client, world):
    world.fail["create"] = (503, {"success": False, "errorMsg": "Rate limit"})
    answer = post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"})
    assert answer["status"] == "error"
    assert len(world.crm_calls("POST /api/v5/orders/create")) == 1


def test_journey_endpoints_take_journey_slots(app, client, world):
    before = {p: sample("gurugrow_crm_slots_total", priority=p) for p in (JOURNEY, READ)}
    get(client, "/auth/status", {**BOUND, "messengerUserId": "fresh"})
    assert sample("gurugrow_crm_slots_total", priority=READ) == before[READ] + 1
    post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"})
    assert sample("gurugrow_crm_slots_total", priority=JOURNEY) >= before[JOURNEY] + 3


def test_a_cold_reference_is_loaded_ahead_of_the_reads_in_line(app, client, world):
    """The statuses and the time zone a cold /orders loads serve every request after it:
    their calls take journey slots, so a wave of reads cannot keep them from loading
    (each /orders would otherwise run out of time before its turn, and answer busy)."""
    before = {p: sample("gurugrow_crm_slots_total", priority=p) for p in (JOURNEY, READ)}
    assert get(client, "/orders", BOUND)["status"] == "ok"
    assert world.crm_calls("GET /api/v5/reference/statuses")
    assert world.crm_calls("GET /api/v5/settings")
    assert sample("gurugrow_crm_slots_total", priority=JOURNEY) == before[JOURNEY] + 2
    # the binding and the order list are reads
    assert sample("gurugrow_crm_slots_total", priority=READ) == before[READ] + 2
    assert get(client, "/orders", BOUND)["status"] == "ok"  # warm: no reference call
    assert sample("gurugrow_crm_slots_total", priority=JOURNEY) == before[JOURNEY] + 2


@pytest.mark.parametrize("env_overrides", [{"RETAILCRM_RATE_LIMIT": "9",
                                            "RETAILCRM_QUEUE_SECONDS": "10"}])
def test_the_doctor_prints_the_configured_quota(app, world):
    result = app.test_cli_runner().invoke(args=["gurugrow", "doctor"])
    settings_line = result.stdout.splitlines()[0]
    assert settings_line.startswith("ok   settings")
    assert "RetailCRM quota 9 calls/s shared by every worker" in settings_line
    assert "waits up to 10 s for a slot" in settings_line
    assert "never past 3 s from its arrival (BOT_ANSWER_SECONDS)" in settings_line
    assert "at most 16 waiting per worker (RETAILCRM_MAX_WAITING)" in settings_line


def test_the_calls_of_one_request_share_one_queue_deadline():
    now = [100.0]
    bucket = quota(queue=10.0, monotonic=lambda: now[0])
    assert bucket.deadline() == 110.0  # outside a request: each call its own
    now[0] = 105.0
    assert bucket.deadline() == 115.0
    with crm_priority(READ):
        first = bucket.deadline()
        now[0] = 108.0
        assert bucket.deadline() == first == 115.0  # the second call has 7 s left
    with crm_priority(READ):
        assert bucket.deadline() == 118.0  # the next request starts afresh


def test_a_call_that_wakes_too_late_takes_a_new_slot():
    """Sent late, a call would bunch up with the next slots' calls at the CRM."""
    now = [0.0]

    def oversleep(seconds: float) -> None:
        now[0] += seconds + (0.2 if not naps else 0.0)  # the first nap runs late
        naps.append(seconds)

    naps: list[float] = []
    bucket = quota(rate=10, sleep=oversleep, monotonic=lambda: now[0])
    bucket.acquire(priority=JOURNEY)  # a free slot: no nap
    other = bucket.reserve(JOURNEY, 10.0, "x")  # someone else's slot in between
    bucket.acquire(priority=JOURNEY)
    assert len(naps) == 2  # the overslept one, and a fresh slot
    assert naps[1] > other.seconds  # the fresh slot comes after the others


# -- a slot taken in another step's round trip (the code check's) ------------------------
TAIL = redis_keys.crm_quota_tail("gg:")


RIDER_OUTCOMES = ("kept", "none", "used", "given_back", "wasted")


def rider_outcomes(since: dict[str, float] | None = None) -> dict[str, float]:
    """gurugrow_crm_slot_riders_total by outcome; with ``since``, only what changed."""
    now = {o: sample("gurugrow_crm_slot_riders_total", outcome=o) for o in RIDER_OUTCOMES}
    if since is None:
        return now
    return {o: now[o] - since[o] for o in RIDER_OUTCOMES if now[o] != since[o]}


def ride(client, bucket: CrmQuota) -> None:
    """Ask for a slot the way the code check does: riding another step's script."""
    rider = bucket.rider()
    assert rider is not None
    other_step = client.register_script("return 1")
    assert run_script(client, other_step, [], [], rider) == 1


def test_a_slot_taken_ahead_is_waited_for_by_the_next_call_without_a_round_trip():
    client = fakeredis.FakeRedis()
    slept: list[float] = []
    bucket = quota(client, rate=5, sleep=slept.append)
    bucket.reserve(JOURNEY, 10.0, "-")  # someone took the free slot: ours is 0.2 s ahead
    before = sample("gurugrow_crm_slots_total", priority=JOURNEY)
    riders = rider_outcomes()
    with crm_priority(JOURNEY):
        ride(client, bucket)
        tail = client.get(TAIL)
        bucket.acquire()  # the slot taken ahead: no look at the bucket
        assert client.get(TAIL) == tail
        bucket.acquire()  # the next call asks the bucket itself
        assert int(client.get(TAIL)) > int(tail)
    # Waits are measured on Redis's clock, which runs on while a loaded machine gets
    # here: each is at most one interval (0.2 s) and more than nothing, never a bound
    # on how fast this test runs.
    assert len(slept) == 2 and 0 < slept[0] <= 0.2001 and 0 < slept[1] - slept[0] <= 0.2001
    assert sample("gurugrow_crm_slots_total", priority=JOURNEY) == before + 2
    assert rider_outcomes(riders) == {"kept": 1, "used": 1}


def test_an_unused_slot_taken_ahead_goes_back_unless_someone_reserved_after_it():
    client = fakeredis.FakeRedis()
    bucket = quota(client, rate=5)
    bucket.reserve(JOURNEY, 10.0, "-")
    free = client.get(TAIL)  # the next free slot
    riders = rider_outcomes()
    with crm_priority(JOURNEY):
        ride(client, bucket)
        assert int(client.get(TAIL)) > int(free)
    assert client.get(TAIL) == free  # given back at the request's end
    assert rider_outcomes(riders) == {"kept": 1, "given_back": 1}

    riders = rider_outcomes()
    with crm_priority(JOURNEY):
        ride(client, bucket)
        bucket.reserve(JOURNEY, 10.0, "-")  # another worker's slot after ours
        taken = client.get(TAIL)
    assert client.get(TAIL) == taken  # ours stays unused: spacing before throughput
    assert rider_outcomes(riders) == {"kept": 1, "wasted": 1}


@pytest.mark.parametrize("priority", [JOURNEY, READ])
@pytest.mark.parametrize(("taken", "kept"), [
    (0, True),  # an idle bucket: the next slot is now
    (1, True),  # the next slot is one interval ahead: still room now
    (3, False),  # a queue has formed: a look made before the call is decided takes none
    (12, False),  # a wave, readers in line past the horizon
])
def test_a_rider_takes_only_a_slot_the_bucket_has_spare_now(priority, taken, kept):
    client = fakeredis.FakeRedis()
    bucket = quota(client, rate=10, queue=10.0, horizon=1.0)
    client.script_load(load_script("quota_take"))  # loaded, as a warm worker's is
    for i in range(taken):
        bucket.reserve(READ, 10.0, f"r{i}")
    waiting = redis_keys.crm_quota_waiting("gg:")
    line, tail = client.zcard(waiting), client.get(TAIL)
    riders = rider_outcomes()
    with crm_priority(priority):
        ride(client, bucket)
        assert client.zcard(waiting) == line  # never a place in the readers' line
        assert (client.get(TAIL) != tail) is kept
        assert rider_outcomes(riders) == ({"kept": 1} if kept else {"none": 1})


def test_a_slot_that_cannot_go_back_while_redis_is_down_is_counted_wasted_not_raised():
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    bucket = quota(client, rate=5)
    bucket.reserve(JOURNEY, 10.0, "-")  # loads the script, as a worker's first call does
    riders = rider_outcomes()
    with crm_priority(JOURNEY):
        ride(client, bucket)
        server.connected = False  # Redis goes away before the request ends
    assert rider_outcomes(riders) == {"kept": 1, "wasted": 1}


def test_a_rider_outside_a_request_is_none_and_a_busy_answer_keeps_nothing():
    client = fakeredis.FakeRedis()
    bucket = quota(client, rate=10, queue=1.0)
    assert bucket.rider() is None  # outside a request
    bucket.slow_down(30.0)
    with crm_priority(JOURNEY):
        ride(client, bucket)
        with pytest.raises(CrmBusy):
            bucket.acquire()  # it asked the bucket again: still busy


def test_a_request_holding_a_slot_ahead_is_offered_no_second_one():
    """A second slot ahead would serve the call after next, one call-time later: past the
    slot's tolerance, unused, a slot of the quota lost. The next rider comes once the
    slot ahead is used."""
    client = fakeredis.FakeRedis()
    bucket = quota(client, rate=10, sleep=lambda seconds: None)
    client.script_load(load_script("quota_take"))  # loaded, as a warm worker's is
    riders = rider_outcomes()
    with crm_priority(JOURNEY):
        ride(client, bucket)
        assert bucket.rider() is None
        bucket.acquire()  # the next call uses the slot ahead
        assert bucket.rider() is not None
    assert rider_outcomes(riders) == {"kept": 1, "used": 1}


# A slot's tolerance is half its interval: at 2 calls/s 0.25 s, the stall this machine may
# take between a slot's step and its call without the test calling the slot wasted (at
# the default rate it would be 55 ms).
SLOW_QUOTA = {"RETAILCRM_RATE_LIMIT": "2"}


@pytest.mark.parametrize("env_overrides", [SLOW_QUOTA])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_check_wastes_no_slot_when_its_lookup_outlasts_the_slot_tolerance(
        app, client, world, kind):
    """The write's slot is taken when the write is next, not before the lookup: a slot
    taken ahead of a lookup slower than the tolerance would go unused every check."""
    assert crm_quota(app).late_tolerance == pytest.approx(0.25, abs=0.001)
    started = post(client, "/auth/start", {**TG, "phone": "79990000001"}, kind)
    late = crm_quota(app).late_tolerance + 0.05
    world.delay["GET /api/v5/customers"] = late  # a RetailCRM lookup of normal speed
    riders = rider_outcomes()
    answer = post(client, "/auth/check", {**TG, "sessionId": started["sessionId"],
                                         "code": world.codes_sent()[-1]}, kind)
    assert answer["status"] == "authorized"
    assert rider_outcomes(riders) == {"kept": 1, "used": 1}


@pytest.mark.parametrize("env_overrides", [SLOW_QUOTA])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_repeat_wastes_no_slot_when_its_reads_outlast_the_slot_tolerance(
        app, client, world, kind):
    """Its slots ride the claim (for the first of its two reads at once) and the number's
    note (for the create): each taken just before its call, none left unused."""
    assert crm_quota(app).late_tolerance == pytest.approx(0.25, abs=0.001)
    late = crm_quota(app).late_tolerance + 0.05
    for call in ("GET /api/v5/customers", "GET /api/v5/orders/5001", "GET /api/v5/orders",
                 "GET /api/v5/store/offers"):
        world.delay[call] = late
    riders = rider_outcomes()
    answer = post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"}, kind)
    assert answer["status"] == "created"
    assert rider_outcomes(riders) == {"kept": 2, "used": 2}


@pytest.mark.parametrize("env_overrides", [{"RETAILCRM_RATE_LIMIT": "1"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_wrong_codes_take_no_crm_slot_from_a_queue(app, client, world, kind, monkeypatch):
    """A caller flooding wrong codes while others wait must not use up the quota."""
    started = post(client, "/auth/start", {**TG, "phone": "79990000001"}, kind)
    bucket = crm_quota(app)
    for i in range(3):  # a queue: the next free slot is seconds ahead
        bucket.reserve(JOURNEY, 10.0, f"w{i}")
    otp = app.extensions["gurugrow"].otp
    checked = otp.check

    def check_while_others_reserve(*args, **kwargs):
        outcome = checked(*args, **kwargs)
        bucket.reserve(JOURNEY, 10.0, "another-worker")  # a wasted slot could not go back
        return outcome

    monkeypatch.setattr(otp, "check", check_while_others_reserve)
    redis_client = redis_of(app)
    queued = int(redis_client.get(TAIL))
    wrong = "000000" if world.codes_sent()[-1] != "000000" else "111111"
    for _ in range(3):
        answer = post(client, "/auth/check", {**TG, "sessionId": started["sessionId"],
                                             "code": wrong}, kind)
        assert answer["status"] == "invalid_code"
    # Only the other workers' three slots were taken.
    assert int(redis_client.get(TAIL)) == queued + 3 * bucket.interval_us


@pytest.mark.parametrize("env_overrides", [{"RETAILCRM_RATE_LIMIT": "1"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_refused_start_gives_its_crm_slot_back(app, client, world, kind):
    first = post(client, "/auth/start", {**TG, "phone": "79990000001"}, kind)
    assert first["status"] == "sent"
    redis_client = redis_of(app)
    free = redis_client.get(TAIL)  # 1 s after the first start's slot
    again = post(client, "/auth/start", {**TG, "phone": "79990000001"}, kind)
    assert again["errorCode"] == "resend_too_early"  # the cooldown: no CRM call
    assert redis_client.get(TAIL) == free


@pytest.mark.parametrize("env_overrides", [{"RETAILCRM_RATE_LIMIT": "1"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_refused_code_gives_its_crm_slot_back(app, client, world, kind):
    started = post(client, "/auth/start", {**TG, "phone": "79990000001"}, kind)
    redis_client = redis_of(app)
    slots = sample("gurugrow_crm_slots_total", priority=JOURNEY)
    free = redis_client.get(TAIL)  # the start's call took the free slot: the next is 1 s on
    wrong = "000000" if world.codes_sent()[-1] != "000000" else "111111"
    answer = post(client, "/auth/check", {**TG, "sessionId": started["sessionId"],
                                         "code": wrong}, kind)
    assert answer["status"] == "invalid_code"
    assert redis_client.get(TAIL) == free  # not given back, it would be 1 s later still
    assert sample("gurugrow_crm_slots_total", priority=JOURNEY) == slots


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_checked_code_takes_a_slot_for_each_crm_call(app, client, world, kind):
    started = post(client, "/auth/start", {**TG, "phone": "79990000001"}, kind)
    slots = sample("gurugrow_crm_slots_total", priority=JOURNEY)
    answer = post(client, "/auth/check", {**TG, "sessionId": started["sessionId"],
                                         "code": world.codes_sent()[-1]}, kind)
    assert answer["status"] == "authorized"
    # who holds the account and the write (what the customer's field held, the start read)
    assert sample("gurugrow_crm_slots_total", priority=JOURNEY) == slots + 2


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_check_after_redis_lost_its_scripts_still_rides_and_answers(app, client, world,
                                                                    kind):
    started = post(client, "/auth/start", {**TG, "phone": "79990000001"}, kind)
    redis_of(app).script_flush()  # as after a Redis restart
    slots = sample("gurugrow_crm_slots_total", priority=JOURNEY)
    answer = post(client, "/auth/check", {**TG, "sessionId": started["sessionId"],
                                         "code": world.codes_sent()[-1]}, kind)
    assert answer["status"] == "authorized"
    assert world.crm_calls("POST /api/v5/customers/1001/edit")
    assert sample("gurugrow_crm_slots_total", priority=JOURNEY) == slots + 2


# -- bounded waiting and the bot's patience -------------------------------------------------
ALL_CRM_ENDPOINTS = [  # (method, path, body, priority of its CRM calls)
    ("GET", "/auth/status", BOUND, READ),
    ("GET", "/orders", BOUND, READ),
    ("POST", "/orders/recommended/preview", {**BOUND, "offerCode": "male_hairloss_basic"}, READ),
    ("POST", "/orders/repeat", {**BOUND, "sourceOrderId": "5001"}, JOURNEY),
    ("POST", "/auth/start", {**TG, "phone": "79990000001"}, JOURNEY),
]


def call(client, method: str, path: str, body: dict, kind: str) -> dict:
    return get(client, path, body) if method == "GET" else post(client, path, body, kind)


def fill_waiting_room(app, priority: str) -> int:
    """Take every place of the app's waiting room ``priority`` may use, as that many
    parked requests would; the number taken."""
    room = crm_quota(app).waiting_room
    taken = 0
    while room.enter(priority):
        taken += 1
    return taken


@pytest.mark.parametrize("env_overrides", [{"RETAILCRM_MAX_WAITING": "4"}])
@pytest.mark.parametrize(("method", "path", "body", "priority"), ALL_CRM_ENDPOINTS)
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_full_waiting_room_answers_busy_at_once_without_a_place_in_line(
        app, client, world, method, path, body, priority, kind):
    assert fill_waiting_room(app, priority) == (4 if priority == READ else 6)
    calls, tail = len(world.calls), redis_keys.crm_quota_tail("gg:")
    before = sample("gurugrow_crm_waiting_room_full_total", priority=priority)
    answer = call(client, method, path, {**body, "messengerUserId": "uncached"}, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "busy")
    assert answer["retryAfterSec"] >= 1
    # Neither a CRM call nor a look at the bucket: no slot reserved, no place in line.
    assert world.calls[calls:] == []
    assert not redis_of(app).exists(tail)
    assert redis_of(app).zcard(redis_keys.crm_quota_waiting("gg:")) == 0
    assert sample("gurugrow_crm_waiting_room_full_total", priority=priority) == before + 1
    # What needs no CRM call still answers; a place freed serves the next one.
    assert client.get("/health").status_code == 200
    crm_quota(app).waiting_room.leave()
    served = call(client, method, path, body, kind)
    assert served.get("errorCode") != "busy", served


@pytest.mark.parametrize("env_overrides", [{"RETAILCRM_MAX_WAITING": "2"}])
def test_journey_steps_keep_places_when_reads_fill_the_room(app, client, world):
    assert fill_waiting_room(app, READ) == 2
    assert get(client, "/auth/status", {**BOUND, "messengerUserId": "u2"})["errorCode"] == "busy"
    repeat = post(client, "/orders/repeat", {**BOUND, "sourceOrderId": "5001"})
    assert repeat["status"] == "created"


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, 16), ({"GUNICORN_THREADS": "8"}, 4), ({"GUNICORN_THREADS": "1"}, 1),
    ({"RETAILCRM_MAX_WAITING": "5"}, 5), ({"RETAILCRM_MAX_WAITING": "0"}, 16)])
def test_max_waiting_defaults_to_half_the_threads(environ, expected):
    from gurugrow.config import Settings
    from tests.conftest import TEST_ENV

    assert Settings.load({**TEST_ENV, **environ}).retailcrm_max_waiting == expected


@pytest.mark.parametrize("env_overrides", [{"RETAILCRM_QUEUE_SECONDS": "10",
                                            "BOT_ANSWER_SECONDS": "3"}])
@pytest.mark.parametrize(("method", "path", "body", "priority"), ALL_CRM_ENDPOINTS)
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_line_longer_than_the_answer_budget_is_busy_at_once(
        app, client, world, method, path, body, priority, kind):
    """A slot 2.8 s away fits RETAILCRM_QUEUE_SECONDS (10) but not the bot's patience
    (3 s less the answer's reserve): busy at once, not an answer after the bot gave up."""
    crm_quota(app).slow_down(2.8)
    calls = len(world.calls)
    answer = call(client, method, path, {**body, "messengerUserId": "uncached"}, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "busy")
    assert 2 <= answer["retryAfterSec"] <= 3
    assert world.calls[calls:] == []


@pytest.mark.parametrize("env_overrides", [{"BOT_ANSWER_SECONDS": "3",
                                            "START_MIN_SECONDS": "0"}])
def test_a_slot_within_the_answer_budget_is_waited_for(app, client, world):
    crm_quota(app).slow_down(1.0)
    started = time.monotonic()
    answer = get(client, "/auth/status", {**BOUND, "messengerUserId": "100500"})
    assert answer["status"] == "authorized"
    assert time.monotonic() - started >= 0.95  # it waited for the slot, then was served


@pytest.mark.parametrize(("environ", "message"), [
    ({"START_MIN_SECONDS": "3", "BOT_ANSWER_SECONDS": "3"}, "START_MIN_SECONDS must be below"),
    ({"BOT_ANSWER_SECONDS": "0.5"}, "BOT_ANSWER_SECONDS must be at least")])
def test_the_start_floor_stays_below_the_answer_budget(environ, message):
    from gurugrow import ConfigError
    from gurugrow.config import Settings
    from tests.conftest import TEST_ENV

    with pytest.raises(ConfigError, match=message):
        Settings.load({**TEST_ENV, **environ})
