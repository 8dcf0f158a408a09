"""The README's "Going live" commands, run as a shop would run them (`make doctor`,
`make create-fields ARGS=--yes`, the doctor again) against the sandbox stand-ins over
real HTTP and a real redis-server: fields missing at first are created once, a second run
changes nothing, and then every doctor line is ok."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import redis

from gurugrow.sandbox.data import demo_data
from tests.conftest import TEST_ENV
from tests.integration.conftest import ROOT
from tests.integration.stack import Standins

pytestmark = pytest.mark.integration

README = (ROOT / "README.md").read_text()
MISSING = ("bot_max_account_id", "bot_last_verified_at")


def going_live_commands() -> list[str]:
    start = README.index("## Going live\n")
    section = README[start:README.index("\n## ", start + 1)]
    return re.findall(r"\*\*`(make [a-z-]+(?: ARGS=--yes)?)`\*\*|`(make [a-z-]+ ARGS=--yes)`",
                      section)


# The shop's own sets: bundles its catalog has, active and priced.
SHOP_SETS = """\
[sets.men]
bundle = "SET-MALE-BASIC"
title = "Набор для мужчин"
components = ["Миноксидил 5%"]

[sets.women]
bundle = "SET-FEMALE-BASIC"
title = "Набор для женщин"
components = ["Миноксидил 2%"]
status = "new"
"""


@pytest.fixture
def standins():
    standins = Standins()
    # A fresh account: two of the fields the settings name do not exist yet.
    standins.state.custom_fields = [f for f in demo_data()["customFields"]
                                    if f["code"] not in MISSING]
    for product in standins.state.products:
        for offer in product["offers"]:
            offer["prices"] = [{"priceType": "base", "price": 2490, "ordering": 1,
                                "currency": "RUB"}]
    yield standins
    standins.stop()


def run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_readme_going_live_commands_against_the_standins(standins, redis_url, tmp_path):
    commands = {c for pair in going_live_commands() for c in pair if c}
    assert {"make doctor", "make create-fields", "make create-fields ARGS=--yes"} <= commands
    env = {k: v for k, v in os.environ.items() if not k.startswith(
        ("RETAILCRM_", "GREENSMS_", "DEDUPE_", "OTP_", "REDIS_", "GURUGROW_SANDBOX"))}
    env = {k: v for k, v in env.items() if not k.startswith(("API_TOKEN", "ALLOW"))}
    env.update(standins.env(), REDIS_URL=redis_url, REDIS_PREFIX="going-live:",
               OTP_SECRET=TEST_ENV["OTP_SECRET"], API_TOKENS=TEST_ENV["API_TOKENS"],
               GREENSMS_SMS_FROM="shop", MAKEFLAGS="--no-print-directory")
    sets_file = tmp_path / "sets.toml"
    sets_file.write_text(SHOP_SETS, encoding="utf-8")
    # A shop's values in the settings .env.example leaves to it.
    env.update(RECOMMENDED_SETS_FILE=str(sets_file), RECOMMENDED_ORDER_STATUS="new")

    # The Redis a live install runs (docs/OPERATIONS.md, Redis): persistent, no eviction.
    # The test server starts without persistence; the doctor says so, then it is set.
    client = redis.Redis.from_url(redis_url)
    client.config_set("appendonly", "no")
    unpersisted = run("make doctor", env)
    assert "FAIL redis" in unpersisted.stdout and "appendonly is no" in unpersisted.stdout
    client.config_set("appendonly", "yes")
    client.config_set("maxmemory-policy", "noeviction")

    before = run("make doctor", env)
    assert before.returncode != 0
    failed = [line for line in before.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == len(MISSING), before.stdout
    assert all(code in line for code, line in zip(MISSING, failed, strict=True))

    created = run("make create-fields ARGS=--yes", env)
    assert created.returncode == 0, created.stdout + created.stderr
    codes = [f["code"] for f in standins.state.custom_fields]
    assert sorted(codes) == sorted(f["code"] for f in demo_data()["customFields"])

    again = run("make create-fields ARGS=--yes", env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [f["code"] for f in standins.state.custom_fields] == codes, "created twice"
    creates = [c for c in standins.state.calls if "custom-fields/customer/create" in c]
    assert len(creates) == len(MISSING)

    after = run("make doctor", env)
    assert after.returncode == 0, after.stdout + after.stderr
    lines = [line for line in after.stdout.splitlines() if line.startswith(
        ("ok", "warn", "FAIL"))]
    assert len(lines) >= 6 and all(line.startswith("ok ") for line in lines), after.stdout
    assert any(line.startswith("ok   recommended sets: 2 of 2 bundles") for line in lines)
