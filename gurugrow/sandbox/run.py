"""``make run``: serve the API in sandbox mode on :8000 with no .env and no accounts.

Redis: ``REDIS_URL`` when set; else a ``redis-server`` binary on the PATH, started here on
a free port; else (sandbox only) an in-process store, announced in one log line.
The stand-ins run here, on their own threaded server; gunicorn serves the app.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from gurugrow.basics.tcp_ports import port_busy_line, port_in_use

ROOT = Path(__file__).resolve().parents[2]


def _say(message: str) -> None:
    print(f"gurugrow sandbox: {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_redis(binary: str) -> str | None:
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="gurugrow-redis-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(proc.terminate)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    return None


def choose_redis_url(env: dict[str, str]) -> str:
    """The Redis the sandbox uses (see the module docstring)."""
    if env.get("REDIS_URL"):
        return env["REDIS_URL"]
    binary = shutil.which("redis-server")
    if binary and (url := _start_redis(binary)):
        _say(f"started redis-server for this run at {url}")
        return url
    _say("no Redis reachable: using the embedded in-process store (sandbox only, "
         "data is lost on restart)")
    return "memory://"


class _QuietHandler(WSGIRequestHandler):
    """No access-log line per request: its URL can hold a full phone number."""

    def log_request(self, *args: object, **kwargs: object) -> None:
        return None


def start_standins(env: dict[str, str]) -> BaseWSGIServer:
    """The stand-ins on their own threaded server on a free loopback port, in this
    process: the app reaches them by URL, so its request threads never serve its own
    upstream calls (which deadlocked a busy worker). SANDBOX_RATE_LIMIT (default 10 per
    second, 0: off) imitates RetailCRM's key limit."""
    from gurugrow.logs import configure_logging
    from gurugrow.sandbox.mount import log_message
    from gurugrow.sandbox.standins import create_standins_app

    configure_logging((env.get("LOG_LEVEL") or "INFO").upper())
    rate_limit = int(env.get("SANDBOX_RATE_LIMIT") or 10)
    app = create_standins_app(rate_limit_per_second=rate_limit, on_message=log_message)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="standins", daemon=True).start()
    return server


def start_mirror(env: dict[str, str]) -> subprocess.Popen | None:
    """The RetailCRM mirror poller beside the app (CRM_MIRROR, on in the sandbox unless
    set to 0); not with the in-process store, which another process cannot see."""
    if (env.get("CRM_MIRROR") or "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if env["REDIS_URL"] == "memory://":
        _say("the RetailCRM mirror needs a real Redis: reads go to the stand-in directly")
        return None
    flask = str(Path(sys.executable).with_name("flask"))
    _say("the RetailCRM mirror runs beside the app (/metrics: gurugrow_mirror_*)")
    return subprocess.Popen([flask, "--app", "wsgi", "gurugrow", "mirror"], cwd=ROOT, env=env)


def main() -> None:
    env = dict(os.environ)
    env.setdefault("APP_HOST", "127.0.0.1")
    env.setdefault("APP_PORT", "8000")
    env["GURUGROW_SANDBOX"] = "1"
    port = env["APP_PORT"]  # a malformed one is reported by gunicorn.conf.py
    if port.isdigit() and port_in_use(env["APP_HOST"], int(port)):
        print(port_busy_line(env["APP_HOST"], int(port)), file=sys.stderr)
        sys.exit(1)
    # One worker: the in-process store (memory://) must be one process; with Redis more
    # workers would do, but one keeps the sandbox simple to watch.
    env["GUNICORN_WORKERS"] = "1"
    env.setdefault("GUNICORN_THREADS", "16")
    env["REDIS_URL"] = choose_redis_url(env)
    standins = start_standins(env)
    env["SANDBOX_STANDINS_URL"] = f"http://127.0.0.1:{standins.server_port}"
    _say(f"serving on http://localhost:{env['APP_PORT']} (codes appear in this log and "
         f"at /sandbox/outbox)")
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    sys.stdout.flush()
    proc = subprocess.Popen([gunicorn, "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
                            cwd=ROOT, env=env)
    mirror = start_mirror(env)
    # SIGTERM/SIGINT end gunicorn and the redis-server this run started, too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        for child in (proc, mirror):
            if child is not None and child.poll() is None:
                child.terminate()
                child.wait(timeout=30)
        standins.shutdown()
    sys.exit(code)


if __name__ == "__main__":
    main()
