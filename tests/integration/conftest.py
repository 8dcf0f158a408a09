"""Real processes: a redis-server on a free port (and gunicorn, started by the tests).

Without a redis-server binary these tests skip, unless GURUGROW_REQUIRE_REDIS=1 (set by
.ci/run), where a missing binary fails the run instead of passing it silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed"
        if os.environ.get("GURUGROW_REQUIRE_REDIS") == "1":
            pytest.fail(message + " (GURUGROW_REQUIRE_REDIS=1)")
        pytest.skip(message)
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    if not wait_until(answers):
        proc.kill()
        pytest.fail("redis-server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def real_redis(redis_url):
    return redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)


@pytest.fixture
def prefix() -> str:
    """A key prefix of its own per test, so tests sharing one server never collide."""
    return f"t{uuid.uuid4().hex[:8]}:"
