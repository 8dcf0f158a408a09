"""gunicorn settings, from the environment (and .env) with sane defaults."""

import os
import sys

from dotenv import dotenv_values

_env = {**{k: v for k, v in dotenv_values(".env").items() if v is not None}, **os.environ}


def _int(name: str, default: int) -> int:
    try:
        return int(_env.get(name) or default)
    except ValueError:
        print(f"gurugrow: configuration error: {name} has a malformed value (expected int)",
              file=sys.stderr)
        sys.exit(1)


_host, _port = _env.get("APP_HOST") or "127.0.0.1", _int("APP_PORT", 8000)
bind = f"{_host}:{_port}"
# The sandbox keeps its stand-in data in process memory: one worker sees it all.
_sandbox = (_env.get("GURUGROW_SANDBOX") or "").lower() in ("1", "true", "yes", "on")
workers = _int("GUNICORN_WORKERS", 1 if _sandbox else 2)
# Threads: a worker mostly waits on RetailCRM/GreenSMS (and for a slot of the shared
# RetailCRM bucket), so it serves others meanwhile. Threads alone do not keep /health
# free under a flood: RETAILCRM_MAX_WAITING (default half of these) caps the requests
# parked for a slot, and the rest are answered busy at once.
threads = _int("GUNICORN_THREADS", 32)
worker_class = "gthread"
# Longer than the slowest upstream chain (several calls with 10 s read timeouts).
timeout = _int("GUNICORN_TIMEOUT", 60)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 20)
keepalive = 5
accesslog = None  # gurugrow logs one line per request itself, with the request id
errorlog = "-"
loglevel = (_env.get("LOG_LEVEL") or "info").lower()


def _running(sample_file: str) -> bool:
    """Whether the process that writes ``sample_file`` (``<kind>_<pid>.db``) still runs."""
    pid = os.path.basename(sample_file)[:-3].rpartition("_")[2]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    return True


def _metrics_dir() -> str:
    """Where workers write their metric samples, so /metrics adds all workers up.

    Set before the app is imported (prometheus-client picks its mode at import). Left
    unset, a fresh directory is made per start; a given one (shared with the deliveries
    worker and the mirror poller: make, systemd) is emptied of a previous run's samples
    once per master (not again when a HUP reloads this file): the files of processes no
    longer running, never those of a worker writing to it now.
    """
    import glob
    import tempfile

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
        prefix="gurugrow-metrics-")
    os.makedirs(path, exist_ok=True)
    if os.environ.get("GURUGROW_METRICS_MASTER") != str(os.getpid()):
        for stale in glob.glob(os.path.join(path, "*.db")):
            if not _running(stale):
                os.remove(stale)
        os.environ["GURUGROW_METRICS_MASTER"] = str(os.getpid())
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


_metrics_dir()


def child_exit(server, worker) -> None:
    """A finished worker's live gauges no longer count (counters are kept)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _check_settings() -> None:
    """Refuse to start on a bad configuration, one line per setting to fix."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gurugrow import ConfigError, load_settings
    from gurugrow.config import config_error_lines

    try:
        load_settings()
    except ConfigError as e:
        print("\n".join(config_error_lines(e, env_file_exists=os.path.exists(".env"))),
              file=sys.stderr)
        sys.exit(1)


_check_settings()


def _check_port() -> None:
    """A taken port stops the start with one line (gunicorn would retry five times, one
    error line each). Only at a master's first start: on HUP it holds the port itself,
    and a re-exec (USR2) or systemd inherits the socket."""
    if os.environ.get("GURUGROW_PORT_CHECKED") == str(os.getpid()):
        return
    os.environ["GURUGROW_PORT_CHECKED"] = str(os.getpid())
    if "GUNICORN_FD" in os.environ or "LISTEN_FDS" in os.environ:
        return
    from gurugrow.basics.tcp_ports import port_busy_line, port_in_use

    if port_in_use(_host, _port):
        print(port_busy_line(_host, _port), file=sys.stderr)
        sys.exit(1)


_check_port()
