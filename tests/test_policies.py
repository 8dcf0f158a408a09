"""Policies are built from Settings, which hold the only defaults; one clock for all."""

from __future__ import annotations

import dataclasses

import pytest

from gurugrow.config import Settings
from gurugrow.flows.order_view import StatusRules
from gurugrow.stores.limits import LimitPolicy
from gurugrow.stores.otp import OtpPolicy
from tests.conftest import TEST_ENV
from tests.helpers import set_clock


@pytest.mark.parametrize("policy", [OtpPolicy, LimitPolicy, StatusRules])
def test_a_policy_has_no_defaults_of_its_own(policy):
    with_defaults = [f.name for f in dataclasses.fields(policy)
                     if f.default is not dataclasses.MISSING
                     or f.default_factory is not dataclasses.MISSING]
    assert with_defaults == []


def test_policies_take_the_settings_defaults():
    settings = Settings.load({k: v for k, v in TEST_ENV.items()
                              if k != "OTP_HASH_ITERATIONS"})
    otp, limits = OtpPolicy.from_settings(settings), LimitPolicy.from_settings(settings)
    # The two values the policies once defaulted differently from the settings.
    assert (otp.hash_iterations, limits.per_ip_hour) == (1000, 300)
    assert (otp.length, otp.ttl_seconds, otp.max_attempts) == (6, 300, 5)
    assert limits.allowed_regions == frozenset({"RU", "KZ", "BY"})
    assert StatusRules.from_settings(settings).complete_group_codes == frozenset({"complete"})


def test_policies_follow_the_environment():
    settings = Settings.load({**TEST_ENV, "OTP_HASH_ITERATIONS": "5000",
                              "OTP_MAX_SENDS_PER_IP_PER_HOUR": "7",
                              "PHONE_ALLOWED_REGIONS": "ru,kz"})
    assert OtpPolicy.from_settings(settings).hash_iterations == 5000
    limits = LimitPolicy.from_settings(settings)
    assert (limits.per_ip_hour, limits.allowed_regions) == (7, frozenset({"RU", "KZ"}))


def test_the_stores_and_the_flows_read_one_clock(app):
    svc = app.extensions["gurugrow"]
    assert svc.otp.clock is svc.clock and svc.limits.clock is svc.clock
    set_clock(app, 1_780_000_000.0)
    assert (svc.clock(), svc.otp.clock(), svc.limits.clock()) == (1_780_000_000.0,) * 3
