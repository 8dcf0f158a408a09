"""The newcomer's setup: `make help`, the Python check, a busy port, the lock files and
the integration tests' skip line when a binary is missing."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, free_port

pytestmark = pytest.mark.integration

PY = Path(sys.executable)


def make(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env}, check=False)


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", text, re.M))


def test_make_alone_lists_every_target():
    result = make()
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^  make (\S+)", result.stdout, re.M))
    targets = makefile_targets()
    assert {"help", "install", "run", "test", "doctor", "create-fields", "lock"} <= targets
    assert targets - listed == set(), "targets without a ## line in the Makefile"
    assert make("help").stdout == result.stdout
    # `install` names the lock file it installs from (the Makefile's LOCK).
    lock = re.search(r"^LOCK := (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    install = re.search(r"^  make install +(.+)$", result.stdout, re.M).group(1)
    assert re.findall(r"requirements[a-z-]*\.lock", install) == [lock], install


def test_a_wrong_python_is_one_line(tmp_path):
    old = tmp_path / "python3"
    old.write_text("#!/bin/sh\n[ \"$1\" = -V ] && echo 'Python 3.9.18' && exit 0\nexit 1\n")
    old.chmod(0o755)
    result = make("python-check", f"PYTHON={old}", f"VENV={tmp_path / 'novenv'}")
    assert result.returncode != 0
    assert result.stdout.strip().splitlines() == [
        f"gurugrow needs Python >= 3.11, but {old} is Python 3.9.18; fix: make clean && "
        "make install PYTHON=python3.11"]
    assert make("python-check", f"PYTHON={PY}").returncode == 0


@pytest.fixture
def taken_port():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield port


@pytest.mark.parametrize("command", ["sandbox", "gunicorn"])
def test_a_busy_port_is_one_line(taken_port, command, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GURUGROW_", "APP_"))}
    env.update(APP_HOST="127.0.0.1", APP_PORT=str(taken_port))
    if command == "sandbox":
        argv = [str(PY), "-m", "gurugrow.sandbox.run"]
    else:
        env.update(GURUGROW_SANDBOX="1", REDIS_URL="memory://")
        argv = [str(PY.with_name("gunicorn")), "-c", str(ROOT / "gunicorn.conf.py"),
                "--pythonpath", str(ROOT), "wsgi:app"]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"gurugrow: port {taken_port} is already in use on 127.0.0.1 (another server is "
        f"running there); stop it, or pick another port: APP_PORT={taken_port + 1} make run"]


def pins(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([a-z0-9._-]+)==(\S+) \\$", path.read_text(), re.M))


def test_installs_come_from_hashed_locks():
    service, dev = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-dev.lock")
    assert {"flask", "redis", "gunicorn", "marshmallow"} <= set(service)
    assert {"pytest", "fakeredis", "responses"} <= set(dev) - set(service)
    # The service's pins are the same in both: tests run what production runs.
    assert {name: dev.get(name) for name in service} == service
    for path in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / path).read_text()
        assert all("--hash=sha256:" in entry for entry in re.split(r"\n(?=[a-z])", text)[1:])
        assert "file://" not in text and "--find-links" not in text
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r $(LOCK)" in makefile and "--no-deps -e ." in makefile
    assert "requirements.lock" in (ROOT / "deploy" / "README.md").read_text()


def test_missing_binaries_skip_with_one_line_and_fail_in_ci():
    """Without redis-server on the PATH: one reason line for all the skipped tests; with
    GURUGROW_REQUIRE_REDIS=1 (CI) the same tests fail."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GURUGROW_REQUIRE")}
    env["PATH"] = str(PY.parent)
    tests = ["tests/integration/test_gunicorn.py", "tests/integration/test_load.py"]
    result = subprocess.run([str(PY), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert result.returncode == 0, result.stdout
    assert len(skipped) == 1, result.stdout
    assert "redis-server is not installed" in skipped[0]
    assert "GURUGROW_REQUIRE_REDIS=1" in skipped[0]
    env["GURUGROW_REQUIRE_REDIS"] = "1"
    required = subprocess.run([str(PY), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               *tests], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
    assert required.returncode == 1
    assert "FileNotFoundError" not in required.stdout
