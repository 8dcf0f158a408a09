"""Real processes for fault and load tests: redis-server, gunicorn serving wsgi:app, and
the sandbox stand-ins on a threaded HTTP server in the test process (so a test can make
them slow or failing)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
import requests
from werkzeug.serving import make_server

from gurugrow.sandbox import SANDBOX_DEDUPE_KEY, SANDBOX_GREENSMS_TOKEN, SANDBOX_RETAILCRM_KEY
from gurugrow.sandbox.standins import SandboxState, create_standins_app
from tests.conftest import TEST_ENV
from tests.integration.conftest import ROOT, free_port, require_binary, wait_until

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


class RedisServer:
    """A redis-server on a fixed port that can be stopped and started again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [require_binary("redis-server", "GURUGROW_REQUIRE_REDIS"), "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        assert wait_until(answers), "redis-server did not start"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Standins:
    """The stand-ins over real HTTP, with their state at hand."""

    def __init__(self) -> None:
        app = create_standins_app(rate_limit_per_second=0)
        self.state: SandboxState = app.extensions["sandbox_state"]
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def env(self) -> dict[str, str]:
        return {"RETAILCRM_BASE_URL": f"{self.base}/retailcrm",
                "RETAILCRM_API_KEY": SANDBOX_RETAILCRM_KEY, "RETAILCRM_SITE": "1minoxidil-ru",
                "GREENSMS_BASE_URL": f"{self.base}/greensms",
                "GREENSMS_TOKEN": SANDBOX_GREENSMS_TOKEN, "GREENSMS_VK_FROM": "shop",
                "DEDUPE_BASE_URL": f"{self.base}/deduper", "DEDUPE_API_KEY": SANDBOX_DEDUPE_KEY}

    def stop(self) -> None:
        self.server.shutdown()


class Gunicorn:
    """gunicorn -c gunicorn.conf.py wsgi:app with the given settings."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(
            ("RETAILCRM_", "GREENSMS_", "DEDUPE_", "OTP_", "REDIS_", "GUNICORN_"))}
        self.env = {**base_env, "APP_HOST": "127.0.0.1", "APP_PORT": str(self.port),
                    "OTP_SECRET": TEST_ENV["OTP_SECRET"], "OTP_HASH_ITERATIONS": "1000",
                    "API_TOKENS": TEST_ENV["API_TOKENS"],
                    # The start answer-time floor only where a test asks for it.
                    "START_MIN_SECONDS": "0", **env}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = self.log_path.open("a")
        self.proc = subprocess.Popen([GUNICORN, "-c", str(ROOT / "gunicorn.conf.py"),
                                      "--pythonpath", str(ROOT), "wsgi:app"],
                                     cwd=self.log_path.parent, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        assert wait_until(self.serving, timeout=30), self.log_path.read_text()[-2000:]

    def serving(self) -> bool:
        try:
            return requests.get(f"{self.base}/health", timeout=1).status_code in (200, 503)
        except requests.RequestException:
            return False

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def kill_workers(self) -> None:
        for pid in self.worker_pids():
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text()


@contextmanager
def running_stack(workdir: Path, settings: dict[str, str]
                  ) -> Iterator[tuple[Gunicorn, Standins, RedisServer]]:
    """redis-server, the stand-ins and gunicorn with ``settings``, stopped afterwards."""
    redis_server = RedisServer(workdir)
    redis_server.start()
    standins = Standins()
    app = Gunicorn({**standins.env(), **settings, "REDIS_URL": redis_server.url},
                   workdir / "gunicorn.log")
    try:
        app.start()
        yield app, standins, redis_server
    finally:
        if app.proc:
            app.stop()
        standins.stop()
        redis_server.stop()


def fresh_stack(stack: tuple[Gunicorn, Standins, RedisServer]
                ) -> tuple[Gunicorn, Standins, RedisServer]:
    """``stack`` between two tests: the stand-ins back to their data and no rate limit,
    Redis empty."""
    _, standins, redis_server = stack
    standins.state.reset()
    standins.state.rate_limit = 0
    redis.Redis.from_url(redis_server.url).flushdb()
    return stack


def kill_during(app: Gunicorn, standins: Standins, send: Callable[[], object],
                crm_call: str) -> None:
    """Run ``send`` (a request) in a thread, SIGKILL the workers once RetailCRM has got
    ``crm_call`` (``"POST /api/v5/orders/create"``), and wait for the new workers."""

    def doomed() -> None:
        try:
            send()
        except requests.RequestException:
            pass  # the worker dies under it

    threading.Thread(target=doomed, daemon=True).start()
    assert wait_until(lambda: crm_call in standins.state.calls)
    app.kill_workers()
    assert wait_until(app.serving, timeout=30), app.log()[-2000:]
