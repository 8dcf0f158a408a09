"""Figures from every process: `make serve` and `make deliveries` started as the Makefile
starts them share one metrics directory, so the deliveries worker's counter shows in the
API's /metrics (before, only the systemd units shared PROMETHEUS_MULTIPROC_DIR)."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest
import requests

from tests.conftest import TEST_ENV
from tests.integration.conftest import ROOT, free_port, wait_until
from tests.integration.stack import RedisServer, Standins

pytestmark = pytest.mark.integration

NEVER = "79990000007"  # the stand-in GreenSMS never delivers a messenger code to it
FALLBACK = re.compile(r'^gurugrow_auto_fallbacks_total\{from_route="telegram"\} (\S+)$', re.M)


def make(target: str, env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(["make", target], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_the_make_targets_share_one_metrics_directory_by_default():
    dry = subprocess.run(["make", "-n", "serve", "deliveries", "mirror"], cwd=ROOT,
                         env={k: v for k, v in os.environ.items()
                              if k != "PROMETHEUS_MULTIPROC_DIR"},
                         capture_output=True, text=True, timeout=60, check=True).stdout
    dirs = re.findall(r"PROMETHEUS_MULTIPROC_DIR=(\S+) ", dry)
    assert dirs == [f"{ROOT}/.metrics"] * 3, dry


def test_a_worker_counter_reaches_metrics_under_make_targets(tmp_path):
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    standins = Standins()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(
        ("RETAILCRM_", "GREENSMS_", "DEDUPE_", "OTP_", "REDIS_", "GUNICORN_", "PROMETHEUS_",
         "MAKE", "MFLAGS"))}
    env.update(standins.env(), REDIS_URL=redis_server.url, APP_HOST="127.0.0.1",
               APP_PORT=str(port), OTP_SECRET=TEST_ENV["OTP_SECRET"],
               API_TOKENS=TEST_ENV["API_TOKENS"], START_MIN_SECONDS="0",
               DELIVERY_FALLBACK_AFTER_SECONDS="1", DELIVERY_CHECK_INTERVAL_SECONDS="1",
               DELIVERY_WORKER_POLL_SECONDS="0.05",
               METRICS_DIR=str(tmp_path / "metrics"))  # the Makefile's variable
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "serve.log").open("w") as serve_log, \
            (tmp_path / "worker.log").open("w") as worker_log:
        serve = make("serve", env, serve_log)
        worker = None
        try:
            def serving() -> bool:
                try:
                    return requests.get(f"{base}/health", timeout=1).status_code == 200
                except requests.RequestException:
                    return False

            assert wait_until(serving, timeout=60), (tmp_path / "serve.log").read_text()
            answer = requests.post(f"{base}/auth/start", timeout=30, data={
                "phone": NEVER, "channelType": "telegram", "messengerUserId": "m-1",
                "deliveryRoute": "telegram"}).json()
            assert answer["status"] == "sent", answer
            worker = make("deliveries", env, worker_log)

            def counted() -> bool:
                found = FALLBACK.search(requests.get(f"{base}/metrics", timeout=5).text)
                return bool(found) and float(found.group(1)) >= 1

            assert wait_until(counted, timeout=60), (tmp_path / "worker.log").read_text()
            assert sorted(m["route"] for m in standins.state.outbox if m["to"] == NEVER) == [
                "sms", "telegram"]
            assert list((tmp_path / "metrics").glob("*.db"))
        finally:
            if worker is not None:
                stop(worker)
            stop(serve)
            standins.stop()
            redis_server.stop()
