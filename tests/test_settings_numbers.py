"""A non-finite or negative number in any setting is refused with the one-line settings
error, as any other bad value (it used to end in a traceback at worker boot)."""

from __future__ import annotations

import pytest

from gurugrow.config import ConfigError, Settings, config_error_lines
from tests.conftest import TEST_ENV


@pytest.mark.parametrize(("change", "line"), [
    ({"CODE_PRICES": "sms=inf"}, "CODE_PRICES entries must be route=price"),
    ({"CODE_PRICES": "sms=nan"}, "CODE_PRICES entries must be route=price"),
    ({"OTP_DAILY_COST_BUDGET": "nan"}, "OTP_DAILY_COST_BUDGET must be a finite number"),
    ({"OTP_DAILY_COST_BUDGET": "inf"}, "OTP_DAILY_COST_BUDGET must be a finite number"),
    ({"GREENSMS_TIMEOUT_SECONDS": "-inf"}, "GREENSMS_TIMEOUT_SECONDS must be a finite number"),
    ({"BOT_ANSWER_SECONDS": "NaN"}, "BOT_ANSWER_SECONDS must be a finite number"),
    ({"OTP_DAILY_COST_BUDGET": "-1"}, "OTP_DAILY_COST_BUDGET must be at least 0"),
])
def test_non_finite_and_negative_numbers_are_one_line_settings_errors(change, line):
    with pytest.raises(ConfigError) as refused:
        Settings.load({**TEST_ENV, **change})
    [text] = config_error_lines(refused.value, env_file_exists=True)
    assert text.startswith(f"gurugrow: configuration error: {line}")
