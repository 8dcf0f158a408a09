"""The README quickstart, parsed from the README and run against a live sandbox."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.integration.conftest import ROOT, free_port, wait_until

pytestmark = pytest.mark.integration
README = ROOT / "README.md"
GG_LINE = "GG=http://localhost:8000"
# The quickstart's sequel: more routes (a flash call, an incoming call), run after it.
SEQUELS = (ROOT / "docs" / "REFERENCE.md",)


def quickstart_commands() -> list[tuple[str, str | None]]:
    """(command, expected substring or None) in README order, then its sequels',
    continuation lines joined."""
    sections = [part.split("<!-- quickstart:end -->")[0]
                for page in (README, *SEQUELS)
                for part in page.read_text().split("<!-- quickstart:start -->")[1:]]
    steps: list[tuple[str, str | None]] = []
    for block in (b for section in sections
                  for b in re.findall(r"```sh\n(.*?)```", section, re.S)):
        pending: list[str] = []
        for line in block.splitlines():
            if line.startswith("# → "):
                command, _ = steps[-1]
                steps[-1] = (command, line.removeprefix("# → "))
                continue
            pending.append(line)
            if not line.endswith("\\"):
                steps.append(("\n".join(pending), None))
                pending = []
    return steps


def test_readme_quickstart_has_both_body_kinds_and_checks():
    steps = quickstart_commands()
    commands = "\n".join(c for c, _ in steps)
    assert "application/json" in commands and "x-www-form-urlencoded" in commands
    for path in ("/auth/status", "/auth/start", "/auth/check", "/auth/contact", "/auth/unlink",
                 "/orders", "/orders/repeat", "/orders/recommended/preview",
                 "/orders/recommended/create", "/orders/recommended/start",
                 "/orders/recommended/check", "/sandbox/outbox"):
        assert path in commands, path
    assert sum(1 for _, expected in steps if expected) >= 10
    # A flash call, and an incoming call verified once the customer called.
    assert "deliveryRoute=call" in commands and '"deliveryRoute":"incoming_call"' in commands
    assert "/sandbox/incoming-call" in commands
    # An undelivered Telegram code arriving by SMS.
    assert ("/auth/resend" in commands
            and any(expected == '"deliveryRoute":"sms"' for _, expected in steps))


@pytest.fixture
def sandbox_env() -> dict[str, str]:
    """Extra environment of the sandbox (a test overrides it with parametrize)."""
    return {}


@pytest.fixture
def sandbox_server(redis_url, tmp_path, sandbox_env):
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RETAILCRM_", "GREENSMS_", "DEDUPE_", "OTP_", "SANDBOX_"))}
    env.update(APP_PORT=str(port), REDIS_URL=redis_url, REDIS_PREFIX="quickstart:",
               **sandbox_env)
    log = (tmp_path / "sandbox.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "gurugrow.sandbox.run"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://localhost:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{base}/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        assert wait_until(up, timeout=30), "the sandbox did not come up"
        yield base, tmp_path / "sandbox.log"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def run_quickstart(base: str) -> None:
    """Every README quickstart command against ``base``; each expected output appears."""
    steps = quickstart_commands()
    script = ["set -euo pipefail"]
    for index, (command, _) in enumerate(steps):
        # The one line naming where the sandbox runs.
        line = f"GG={base}" if command == GG_LINE else command
        script += [f"echo '@@STEP {index}@@'", line, "echo"]
    result = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    outputs = re.split(r"@@STEP \d+@@\n", result.stdout)[1:]
    assert len(outputs) == len(steps)
    for (command, expected), output in zip(steps, outputs, strict=True):
        if expected:
            assert expected in output, f"{command}\n→ {output}"


def test_readme_quickstart_names_its_base_url_once_then_resets():
    steps = quickstart_commands()
    assert steps[0] == (GG_LINE, None)
    assert steps[1] == ('curl -s -X POST "$GG/sandbox/reset"', '"status":"reset"')
    # Every other command reads the base URL from GG: another port is one edit.
    assert not any("localhost" in command for command, _ in steps[1:])
    assert all("$GG/" in command for command, _ in steps if "curl" in command)


def test_readme_quickstart_runs_twice_in_a_row_against_the_sandbox(sandbox_server):
    base, log_path = sandbox_server
    assert not base.endswith(":8000")  # another port than the README's: GG carries it
    # Twice in a row, as pasted: its first step resets the sandbox (demo data, and the
    # sandbox's Redis keys: cooldowns, counters, sessions, remembered answers).
    run_quickstart(base)
    run_quickstart(base)
    # The sandbox logs each code it "sent"; the real log never holds a full phone.
    log = log_path.read_text()
    assert "sandbox_code" in log
    assert "79990000001" not in log
    assert "Traceback" not in log


@pytest.mark.parametrize("sandbox_env", [{"SANDBOX_RATE_LIMIT": "0"}])
def test_sandbox_serves_32_concurrent_requests(sandbox_server):
    """The stand-ins never share the app's request threads: 32 requests at once, each
    calling RetailCRM, all answer (the in-app stand-ins deadlocked at 16)."""
    base, _ = sandbox_server
    query = {"channelType": "telegram", "messengerUserId": "100500", "limit": "3"}
    requests.get(f"{base}/orders", params=query, timeout=30)  # fills the statuses cache

    def one_request(_: int) -> tuple[int, str | None, float]:
        started = time.monotonic()
        response = requests.get(f"{base}/orders", params=query, timeout=60)
        return response.status_code, response.json().get("status"), \
            time.monotonic() - started

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(one_request, range(32)))
    slowest = max(seconds for _, _, seconds in answers)
    print(f"\nsandbox: 32 concurrent /orders, slowest answer {slowest * 1000:.0f} ms")
    assert [(code, status) for code, status, _ in answers] == [(200, "ok")] * 32
    # Far below the 10 s upstream timeout a deadlocked worker would wait out.
    assert slowest < 8
