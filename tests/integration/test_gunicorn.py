"""gunicorn serving wsgi:app with the production config, against a real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from gurugrow.config import NO_ENV_FILE_HINT
from tests.conftest import TEST_ENV
from tests.integration.conftest import ROOT, free_port, wait_until

pytestmark = pytest.mark.integration

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


class _CrmStub(BaseHTTPRequestHandler):
    """RetailCRM answering every customer search with one customer bound to Telegram 42."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = json.dumps({"success": True, "pagination": {"limit": 20, "totalCount": 1,
                                                            "currentPage": 1, "totalPageCount": 1},
                           "customers": [{"id": 626518, "phones": [{"number": "+79991234567"}],
                                          "customFields": {"bot_telegram_account_id": "42"}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def crm_stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CrmStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def gunicorn_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RETAILCRM_", "OTP_", "API_TOKEN", "ALLOW"))}
    return {**env, **TEST_ENV, "APP_HOST": "127.0.0.1", "GUNICORN_WORKERS": "2", **extra}


def test_gunicorn_serves_the_endpoints(redis_url, crm_stub, tmp_path):
    port = free_port()
    env = gunicorn_env(APP_PORT=str(port), REDIS_URL=redis_url, RETAILCRM_BASE_URL=crm_stub)
    proc = subprocess.Popen([GUNICORN, "-c", str(ROOT / "gunicorn.conf.py"),
                             "--pythonpath", str(ROOT), "wsgi:app"],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return requests.get(f"{base}/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        assert wait_until(up, timeout=20), "gunicorn did not come up"
        status = requests.get(f"{base}/auth/status", params={
            "channelType": "telegram", "messengerUserId": "42"}, timeout=5)
        assert status.json()["status"] == "authorized"
        assert status.json()["customerId"] == "626518"
        assert status.headers["X-Request-ID"]
        missing = requests.get(f"{base}/nope", timeout=5)
        assert (missing.status_code, missing.json()["errorCode"]) == (404, "not_found")
        for _ in range(20):
            requests.get(f"{base}/auth/status", params={
                "channelType": "telegram", "messengerUserId": "42"}, timeout=5)
        # Whichever worker answers the scrape, it reports every worker's requests.
        for _ in range(4):
            assert authorized_status_requests(requests.get(f"{base}/metrics", timeout=5)) == 21
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert "Traceback" not in stderr
    assert "79991234567" not in stderr


def authorized_status_requests(response: requests.Response) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    assert response.status_code == 200
    return sum(sample.value for family in text_string_to_metric_families(response.text)
               for sample in family.samples
               if sample.name == "gurugrow_requests_total"
               and sample.labels["endpoint"] == "/auth/status"
               and sample.labels["status"] == "authorized")


def test_gunicorn_refuses_to_start_without_retailcrm_url(tmp_path):
    env = gunicorn_env(APP_PORT=str(free_port()))
    env.pop("RETAILCRM_BASE_URL")
    result = subprocess.run([GUNICORN, "-c", str(ROOT / "gunicorn.conf.py"),
                             "--pythonpath", str(ROOT), "wsgi:app"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    # tmp_path has no .env: the second line says to copy the example.
    assert lines == ["gurugrow: configuration error: RETAILCRM_BASE_URL is required but not set",
                     f"gurugrow: {NO_ENV_FILE_HINT}"]


def test_gunicorn_refuses_an_open_live_start(tmp_path):
    """Neither API_TOKENS nor ALLOWED_CALLER_NETWORKS: one line naming both, no start."""
    env = gunicorn_env(APP_PORT=str(free_port()))
    env.pop("API_TOKENS")
    env.pop("ALLOWED_CALLER_NETWORKS", None)
    (tmp_path / ".env").write_text("# settings from the environment\n")
    result = subprocess.run([GUNICORN, "-c", str(ROOT / "gunicorn.conf.py"),
                             "--pythonpath", str(ROOT), "wsgi:app"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("gurugrow: configuration error: API_TOKENS or "
                               "ALLOWED_CALLER_NETWORKS must be set")
