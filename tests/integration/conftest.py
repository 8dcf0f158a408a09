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
import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    import random

    while True:
        port = random.randint(20000, 29999)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


@pytest.fixture(scope="session", autouse=True)
def _requests_send_the_caller_token():
    """Every ``requests`` call of these tests carries the test caller token (as the bot
    platform's calls do), so a test written without tokens in mind calls as the bot.
    A test of refused callers removes it: ``headers={TOKEN_HEADER: None}``."""
    from tests.conftest import API_TOKEN, TOKEN_HEADER

    original = requests.Session.__init__

    def init(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        self.headers[TOKEN_HEADER] = API_TOKEN

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(requests.Session, "__init__", init)
        yield


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    binary = _redis_binary()
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


def require_binary(name: str, flag: str, *candidates: str) -> str:
    """The path of ``name`` (PATH first, then ``candidates``), else skip the test with one
    reason line; fail instead when ``flag`` is 1 (.ci/run sets it: CI must run them)."""
    for binary in (shutil.which(name), *candidates):
        if binary and os.access(binary, os.X_OK):
            return binary
    message = f"{name}{_MISSING}{name})"
    if os.environ.get(flag) == "1":
        pytest.fail(f"{message} and {flag}=1", pytrace=False)
    pytest.skip(f"{message}; CI runs these tests ({flag}=1)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Every skip for a missing binary reported at one place, so ``-ra`` folds them into
    one reason line per binary instead of one per test."""
    report = yield
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and _MISSING in longrepr[2]:
        report.longrepr = (__file__, _REQUIRE_LINE, longrepr[2])
    return report


_MISSING = " is not installed (apt-get install "
_REQUIRE_LINE = require_binary.__code__.co_firstlineno


def _redis_binary() -> str:
    return require_binary("redis-server", "GURUGROW_REQUIRE_REDIS")


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory):
    """A three-node Redis Cluster (no replicas) on free ports; the URL of one node."""
    binary = _redis_binary()
    cli = shutil.which("redis-cli") or str(Path(binary).with_name("redis-cli"))
    workdir = tmp_path_factory.mktemp("redis-cluster")
    ports = [free_cluster_port() for _ in range(3)]
    procs = [subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--cluster-enabled", "yes",
         "--cluster-config-file", f"nodes-{port}.conf", "--dir", str(workdir),
         "--logfile", f"redis-{port}.log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in ports]
    try:
        nodes = [redis.Redis(port=port, socket_timeout=2) for port in ports]

        def all_answer() -> bool:
            try:
                return all(node.ping() for node in nodes)
            except redis.RedisError:
                return False

        assert wait_until(all_answer), "cluster nodes did not start: " + " | ".join(
            (workdir / f"redis-{p}.log").read_text()[-300:] for p in ports
            if (workdir / f"redis-{p}.log").exists())
        subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                        "--cluster-replicas", "0", "--cluster-yes"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

        def cluster_ok() -> bool:
            try:
                return all(node.cluster("info").get("cluster_state") == "ok" for node in nodes)
            except redis.RedisError:
                return False

        assert wait_until(cluster_ok, timeout=30), "the cluster did not become ok"
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_sentinel(redis_url, tmp_path_factory):
    """A Sentinel watching the ``redis_url`` server as master ``gg-master``; host:port."""
    binary = _redis_binary()
    workdir = tmp_path_factory.mktemp("sentinel")
    port, master_port = free_port(), redis_url.rsplit(":", 1)[1].split("/")[0]
    config = workdir / "sentinel.conf"
    config.write_text(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                      f"sentinel monitor gg-master 127.0.0.1 {master_port} 1\n")
    proc = subprocess.Popen([binary, str(config), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sentinel = redis.Redis(port=port, socket_timeout=2)

    def knows_master() -> bool:
        try:
            return sentinel.sentinel_get_master_addr_by_name("gg-master") is not None
        except redis.RedisError:
            return False

    try:
        assert wait_until(knows_master), "redis sentinel did not start"
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["single", "cluster", "sentinel"])
def real_redis(request):
    """The Redis-backed tests run on one redis-server, on a Redis Cluster and through a
    Sentinel, each with the client the service builds itself from its settings."""
    from gurugrow import make_redis_client
    from gurugrow.config import Settings
    from tests.conftest import TEST_ENV

    env = {**TEST_ENV, "REDIS_URL": request.getfixturevalue("redis_url")}
    if request.param == "cluster":
        env.update(REDIS_URL=request.getfixturevalue("redis_cluster_url"), REDIS_CLUSTER="1")
    elif request.param == "sentinel":
        env.update(REDIS_SENTINELS=request.getfixturevalue("redis_sentinel"),
                   REDIS_SENTINEL_MASTER="gg-master")
    client = make_redis_client(Settings.load(env))
    if request.param == "cluster":
        assert type(client).__name__ == "RedisCluster"
    if request.param == "sentinel":  # the master is found through the Sentinel
        assert client.connection_pool.service_name == "gg-master"
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    """A key prefix of its own per test, so tests sharing one server never collide."""
    return f"t{uuid.uuid4().hex[:8]}:"
