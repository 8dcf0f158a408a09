"""A fresh `cp .env.example .env`, started as a shop would start it: one refused start
lists every setting the file leaves to fill in, one line each, and so does one doctor
run, which still prints every check. With no .env at all both say to copy the example."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gurugrow.config import ENV_EXAMPLE_PLACEHOLDERS, NO_ENV_FILE_HINT
from tests.integration.conftest import ROOT, free_port
from tests.test_doctor import LINE

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
GOING_LIVE = (ROOT / "docs" / "GOING-LIVE.md").read_text()
# What .env.example leaves to fill in: its placeholder values (tests/test_callers.py keeps
# this list equal to the file's), no caller check, and no GreenSMS credentials.
TO_FILL_IN = {*ENV_EXAMPLE_PLACEHOLDERS, "API_TOKENS", "GREENSMS_TOKEN"}
# Nothing here may reach a real account: the variables a start reads come only from .env.
ENV_PREFIXES = ("RETAILCRM_", "GREENSMS_", "DEDUPE_", "OTP_", "REDIS_", "GURUGROW_", "API_",
                "ALLOW", "APP_", "FLASK_")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def in_fresh_dir(tmp_path: Path, *, copy_example: bool) -> Path:
    if copy_example:
        shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    return tmp_path


def start(cwd: Path) -> subprocess.CompletedProcess:
    """`make serve`'s command, run where the .env is."""
    return subprocess.run([str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
                           "wsgi:app"], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env=clean_env(APP_PORT=str(free_port())), check=False)


def doctor(cwd: Path) -> subprocess.CompletedProcess:
    """`make doctor`'s command; Redis at a port nothing listens on (no server needed)."""
    return subprocess.run([str(BIN / "flask"), "--app", "wsgi", "gurugrow", "doctor"],
                          cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
                          env=clean_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))


def named(line: str) -> str:
    """The variable a problem line names first."""
    return line.split(maxsplit=1)[0]


def test_one_start_lists_every_problem_of_env_example(tmp_path):
    result = start(in_fresh_dir(tmp_path, copy_example=True))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0] == f"gurugrow: configuration error: {len(TO_FILL_IN)} settings to fix:"
    problems = [line.removeprefix("gurugrow:   ") for line in lines[1:]]
    assert all(line.startswith("gurugrow:   ") for line in lines[1:]), lines
    assert sorted(map(named, problems)) == sorted(TO_FILL_IN), lines
    assert NO_ENV_FILE_HINT not in result.stderr  # there is a .env
    assert "Traceback" not in result.stderr
    # docs/GOING-LIVE.md shows this very output.
    shown = re.search(r"```\n((?: *gurugrow: .*\n)+) *```", GOING_LIVE)
    assert shown and [line.strip() for line in shown.group(1).splitlines()] == [
        line.strip() for line in lines]


def test_one_doctor_run_lists_every_problem_and_every_check(tmp_path):
    result = doctor(in_fresh_dir(tmp_path, copy_example=True))
    assert result.returncode == 1
    lines = [LINE.match(text) for text in result.stdout.splitlines()]
    assert all(lines), result.stdout
    settings = [m["detail"] for m in lines if m["check"] == "settings"]
    assert sorted(map(named, settings)) == sorted(TO_FILL_IN), result.stdout
    # Every other check has its line: run, or saying why it could not run.
    # (one "custom fields" line stands for the fields when the key cannot be checked)
    checks = [m["check"] for m in lines if m["check"] != "settings"]
    assert checks == ["callers", "redis", "retailcrm key", "retailcrm scopes",
                      "retailcrm site", "retailcrm references", "custom fields",
                      "recommended sets", "greensms", "deduper", "routes"], result.stdout
    for m in lines:
        if m["check"] in ("callers", "retailcrm key", "greensms", "deduper"):
            assert m["detail"].startswith("not checked: "), m.string
    redis_line = next(m for m in lines if m["check"] == "redis")
    assert "cannot reach" in redis_line["detail"]  # it ran


@pytest.mark.parametrize("command", [start, doctor], ids=["start", "doctor"])
def test_without_a_env_file_both_say_copy_the_example(tmp_path, command):
    result = command(in_fresh_dir(tmp_path, copy_example=False))
    assert result.returncode != 0
    assert "cp .env.example .env" in result.stdout + result.stderr


@pytest.mark.parametrize("args", [["--help"], ["doctor", "--help"],
                                  ["create-fields", "--help"], ["deliveries", "--help"]])
def test_cli_help_needs_no_env_file(tmp_path, args):
    result = subprocess.run([str(BIN / "flask"), "--app", "wsgi", "gurugrow", *args],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env=clean_env(), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: flask gurugrow")
    if args == ["--help"]:
        assert all(name in result.stdout for name in ("create-fields", "deliveries", "doctor"))
    assert "Traceback" not in result.stderr and "configuration error" not in result.stderr
