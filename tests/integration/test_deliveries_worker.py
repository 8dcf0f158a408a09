"""Two `deliveries` worker processes against one redis-server, the API under gunicorn and
the GreenSMS stand-in over HTTP: every messenger code not delivered in time gets exactly
one SMS, delivered ones none, and the SMS code authorizes with method sms_otp."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import ROOT, wait_until
from tests.integration.stack import running_stack

pytestmark = pytest.mark.integration

FLASK = str(Path(sys.executable).with_name("flask"))
SETTINGS = {"DELIVERY_FALLBACK_AFTER_SECONDS": "2", "DELIVERY_CHECK_INTERVAL_SECONDS": "1",
            "DELIVERY_WORKER_POLL_SECONDS": "0.05", "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "0",
            "OTP_MAX_SENDS_PER_PHONE_PER_DAY": "1000", "GUNICORN_WORKERS": "2"}
NEVER, LATE, NORMAL = "79990000007", "79990000008", "79990000001"


def start(base: str, phone: str, user: str) -> str:
    answer = requests.post(f"{base}/auth/start", timeout=30, data={
        "phone": phone, "channelType": "telegram", "messengerUserId": user,
        "deliveryRoute": "telegram"}).json()
    assert (answer["status"], answer["deliveryRoute"]) == ("sent", "telegram"), answer
    return answer["sessionId"]


def test_two_workers_send_one_sms_per_undelivered_code(tmp_path):
    with running_stack(tmp_path, SETTINGS) as (app, standins, _redis):
        sessions = {f"never-{i}": start(app.base, NEVER, f"never-{i}") for i in range(3)}
        sessions |= {f"late-{i}": start(app.base, LATE, f"late-{i}") for i in range(2)}
        sessions["normal"] = start(app.base, NORMAL, "normal")
        logs = [(tmp_path / f"worker{i}.log").open("w") for i in range(2)]
        workers = [subprocess.Popen([FLASK, "--app", "wsgi", "gurugrow", "deliveries",
                                     "--max-seconds", "8"], cwd=ROOT, env=app.env,
                                    stdout=log, stderr=subprocess.STDOUT) for log in logs]
        for proc in workers:
            assert proc.wait(timeout=60) == 0
        for log in logs:
            log.close()
        outputs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
        sms = [m for m in standins.state.outbox if m["route"] == "sms"]
        assert Counter(m["to"] for m in sms) == {NEVER: 3, LATE: 2}, outputs
        assert "Traceback" not in "".join(outputs)
        # Both ran the whole time, over the same due checks.
        assert all("deliveries_worker_stopped" in out for out in outputs)

        # The customer types the SMS code of one session (the newest SMS is that session's
        # only live code): authorized, and the CRM records the SMS route.
        newest_never = next(m for m in standins.state.outbox if m["to"] == NEVER)
        for name in ("never-0", "never-1", "never-2"):
            answer = requests.post(f"{app.base}/auth/check", timeout=30, data={
                "sessionId": sessions[name], "code": newest_never["code"],
                "channelType": "telegram", "messengerUserId": name}).json()
            if answer["status"] == "authorized":
                break
        assert answer["status"] == "authorized"
        fields = standins.state.customers["1008"]["customFields"]
        assert fields["bot_last_verification_method"] == "sms_otp"

        # Unbounded, as systemd runs it: SIGTERM ends it cleanly.
        with (tmp_path / "worker-term.log").open("w") as log:
            proc = subprocess.Popen([FLASK, "--app", "wsgi", "gurugrow", "deliveries"],
                                    cwd=ROOT, env=app.env, stdout=log,
                                    stderr=subprocess.STDOUT)
            assert wait_until(lambda: "deliveries_worker_started" in
                              (tmp_path / "worker-term.log").read_text(), timeout=30)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        assert "deliveries_worker_stopped" in (tmp_path / "worker-term.log").read_text()
