"""/health says when Redis answers but refuses writes (full under noeviction, a read-only
replica): 503 with the reason, not 200."""

from __future__ import annotations

import pytest
import redis


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

    monkeypatch.setattr(svc.redis, "set", refused)
    response = client.get("/health")
    body = response.get_json()
    assert (response.status_code, body["status"], body["redis"]) == (
        503, "error", "refuses_writes")
    assert body["reason"].startswith(named)


def test_health_writes_a_probe_with_a_ttl(app, client):
    assert client.get("/health").get_json() == {"status": "ok", "redis": "ok"}
    svc = app.extensions["gurugrow"]
    assert 0 < svc.redis.ttl("gg:health:probe") <= 10
