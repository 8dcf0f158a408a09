"""/health says when Redis answers but refuses writes (full under noeviction, a read-only
replica): 503 with the reason, not 200."""

from __future__ import annotations

import pytest
import redis

from gurugrow.doctor.checks import redis_persistence_problem
from tests.helpers import redis_of


@pytest.mark.parametrize(("error", "named"), [
    (redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
     "OutOfMemoryError"),
    (redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
     "ReadOnlyError"),
])
def test_health_is_503_when_redis_refuses_writes(app, client, monkeypatch, error, named):
    svc = app.extensions["gurugrow"]

    def refused(*args, **kwargs):
        raise error

    monkeypatch.setattr(redis_of(svc), "set", refused)
    response = client.get("/health")
    body = response.get_json()
    assert (response.status_code, body["status"], body["redis"]) == (
        503, "error", "refuses_writes")
    assert body["reason"].startswith(named)


def test_health_writes_a_probe_with_a_ttl(app, client):
    assert client.get("/health").get_json() == {"status": "ok", "redis": "ok"}
    svc = app.extensions["gurugrow"]
    assert 0 < redis_of(svc).ttl("gg:health:probe") <= 10


class _Config:
    """A Redis client's CONFIG GET, as a server with ``values`` answers it."""

    def __init__(self, values: dict[str, str] | None) -> None:
        self.values = values

    def config_get(self, name: str) -> dict[str, str]:
        if self.values is None:
            raise redis.ResponseError("unknown command 'CONFIG'")
        return {name: self.values[name]}


@pytest.mark.parametrize(("values", "expected"), [
    ({"appendonly": "yes", "maxmemory-policy": "noeviction"}, None),
    ({"appendonly": "no", "maxmemory-policy": "allkeys-lru"},
     "appendonly is no (a restart loses every key); maxmemory-policy is allkeys-lru "
     "(a full Redis evicts keys)"),
])
def test_the_doctor_names_what_is_wrong_with_the_redis(values, expected):
    found = redis_persistence_problem(_Config(values))
    assert (found[0] if found else None) == expected


def test_the_doctor_says_when_it_could_not_check():
    what, why = redis_persistence_problem(_Config(None)) or ("?", "")
    assert what == "" and why.startswith("persistence and eviction not checked")
