"""The app around the endpoints: health, HTTP errors as JSON, request ids, logs, config."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import fakeredis
import pytest

from gurugrow import ConfigError, Settings, create_app
from gurugrow.config import NO_ENV_FILE_HINT, config_error_lines
from gurugrow.stores.keys import identity_tag
from tests.conftest import TEST_ENV
from tests.helpers import TG, post

ROOT = Path(__file__).resolve().parent.parent


def test_health_ok(client):
    response = client.get("/health")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok", "redis": "ok"})


@pytest.fixture
def dead_redis():
    server = fakeredis.FakeServer()
    server.connected = False
    return fakeredis.FakeRedis(server=server)


def test_health_without_redis_is_503_json(dead_redis):
    client = create_app(TEST_ENV, redis_client=dead_redis).test_client()
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json() == {"status": "error", "redis": "unavailable"}


@pytest.mark.parametrize("kind", ["form", "json"])
def test_endpoints_answer_storage_unavailable_without_redis(dead_redis, upstreams, kind):
    upstreams.add_customer(5, "79991234567")
    client = create_app(TEST_ENV, redis_client=dead_redis).test_client()
    answer = post(client, "/auth/start", {**TG, "phone": "79991234567"}, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "storage_unavailable")
    assert upstreams.sent == []
    # A session id of the caller's own account: one of another account's is not found
    # before Redis is asked.
    own_session_id = f"{identity_tag('telegram', TG['messengerUserId'])}.x"
    answer = post(client, "/auth/check",
                  {**TG, "sessionId": own_session_id, "code": "123456"}, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "storage_unavailable")


@pytest.mark.parametrize(("method", "path", "status", "error_code"), [
    ("get", "/nowhere", 404, "not_found"),
    ("get", "/auth/start", 405, "method_not_allowed"),
    ("delete", "/auth/status", 405, "method_not_allowed"),
])
def test_http_errors_are_json(client, method, path, status, error_code):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.get_json()["errorCode"] == error_code


def test_oversized_body_is_413_json(client):
    response = client.post("/auth/start", data={"phone": "7" * 20000})
    assert response.status_code == 413
    assert response.get_json()["errorCode"] == "body_too_large"


@pytest.mark.parametrize(("body", "content_type"), [
    ("[1, 2]", "application/json"),
    ("{broken", "application/json"),
    ('"text"', "application/json"),
])
def test_json_that_is_not_an_object(client, body, content_type):
    response = client.post("/auth/start", data=body, content_type=content_type)
    assert response.status_code == 200
    assert response.get_json()["errorCode"] == "invalid_request"


def test_numbers_in_json_are_accepted_as_ids(client, upstreams):
    upstreams.add_customer(3, "79991234567", bot_telegram_account_id="123456789")
    answer = post(client, "/auth/unlink", {"channelType": "telegram",
                                           "messengerUserId": 123456789}, "json")
    assert answer["status"] == "unlinked"


@pytest.mark.parametrize("value", [True, 1.5, {"a": 1}, ["x"], None])
def test_wrong_json_types_are_refused(client, upstreams, value):
    answer = post(client, "/auth/start", {**TG, "phone": value}, "json")
    assert (answer["status"], answer["errorCode"]) == ("error", "invalid_phone")


def test_request_id_is_echoed_or_made(client):
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers[
        "X-Request-ID"] == "abc-123"
    unsafe = {"X-Request-ID": "bad id;" + "x" * 80}
    made = client.get("/health", headers=unsafe).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)


def test_logs_hold_no_code_phone_or_secret(client, upstreams, caplog):
    logging.getLogger("gurugrow").propagate = True
    upstreams.add_customer(5, "79991234567")
    with caplog.at_level(logging.DEBUG, logger="gurugrow"):
        session_id = post(client, "/auth/start", {**TG, "phone": "79991234567"})["sessionId"]
        code = upstreams.codes_sent()[0]
        post(client, "/auth/check", {**TG, "sessionId": session_id, "code": code})
    text = caplog.text
    assert "auth_started" in text and "auth_checked" in text and "request_id=" in text
    for secret in (code, "79991234567", "9991234567", TEST_ENV["RETAILCRM_API_KEY"],
                   TEST_ENV["GREENSMS_TOKEN"], TEST_ENV["OTP_SECRET"]):
        assert secret not in text
    assert "+7******4567" in text


# -- configuration --------------------------------------------------------------------
@pytest.mark.parametrize(("change", "named"), [
    ({"RETAILCRM_BASE_URL": ""}, "RETAILCRM_BASE_URL"),
    ({"RETAILCRM_API_KEY": ""}, "RETAILCRM_API_KEY"),
    ({"OTP_SECRET": ""}, "OTP_SECRET"),
    ({"OTP_SECRET": "short"}, "OTP_SECRET"),
    ({"OTP_TTL_SECONDS": "soon"}, "OTP_TTL_SECONDS"),
    ({"OTP_LENGTH": "3"}, "OTP_LENGTH"),
    ({"GURUGROW_SANDBOX": "maybe"}, "GURUGROW_SANDBOX"),
    ({"RETAILCRM_BASE_URL": "crm.example.com"}, "RETAILCRM_BASE_URL"),
    ({"REDIS_SENTINELS": "sentinel-a"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "a:26379", "REDIS_CLUSTER": "1"}, "REDIS_CLUSTER"),
    ({"REDIS_CLUSTER": "perhaps"}, "REDIS_CLUSTER"),
    ({"CONTACT_VERIFIED_CHANNELS": "telegram,vk"}, "CONTACT_VERIFIED_CHANNELS"),
    ({"CODE_PRICES": "sms=cheap"}, "CODE_PRICES"),
    ({"CODE_PRICES": "fax=1.00"}, "CODE_PRICES"),
    ({"CODE_PRICES": "sms=-1"}, "CODE_PRICES"),
    ({"CODE_PRICES": "sms"}, "CODE_PRICES"),
    ({"OTP_DAILY_COST_BUDGET": "-5"}, "OTP_DAILY_COST_BUDGET"),
    ({"CONVERSION_ALERT_RATIO": "most"}, "CONVERSION_ALERT_RATIO"),


    ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must start with redis://"),
])
def test_bad_configuration_names_the_variable(change, named):
    with pytest.raises(ConfigError, match=named):
        Settings.load({**TEST_ENV, **change})


def test_every_bad_setting_is_named_in_one_pass():
    """All the table above at once: one ConfigError, one problem per setting, in the
    order of the checks, and a start's lines say each once."""
    change = {"RETAILCRM_API_KEY": "", "OTP_TTL_SECONDS": "soon", "OTP_LENGTH": "3",
              "RETAILCRM_BASE_URL": "crm.example.com", "REDIS_SENTINELS": "sentinel-a",
              "GREENSMS_TOKEN": "", "DEDUPE_API_KEY": ""}
    with pytest.raises(ConfigError) as refused:
        Settings.load({**TEST_ENV, **change})
    named = [p.env for p in refused.value.problems]
    assert named == ["RETAILCRM_API_KEY", "OTP_LENGTH", "OTP_TTL_SECONDS",
                     "RETAILCRM_BASE_URL", "GREENSMS_TOKEN", "DEDUPE_API_KEY",
                     "REDIS_SENTINELS"]
    assert all(p.text.startswith(p.env) for p in refused.value.problems)
    lines = config_error_lines(refused.value, env_file_exists=True)
    assert lines[0] == "gurugrow: configuration error: 7 settings to fix:"
    assert lines[1:] == [f"gurugrow:   {p.text}" for p in refused.value.problems]
    # No .env: one more line, the hint to copy the example.
    assert config_error_lines(refused.value, env_file_exists=False)[-1] == (
        f"gurugrow: {NO_ENV_FILE_HINT}")
    assert "cp .env.example .env" in NO_ENV_FILE_HINT
    # Lenient loading (the doctor's) gives the same problems and settings anyway, a
    # value that does not parse at its default.
    settings, problems = Settings.load_lenient({**TEST_ENV, **change})
    assert problems == refused.value.problems
    assert (settings.otp_ttl_seconds, settings.otp_length) == (300, 6)


def test_one_problem_is_one_line():
    with pytest.raises(ConfigError) as refused:
        Settings.load({**TEST_ENV, "RETAILCRM_API_KEY": ""})
    assert config_error_lines(refused.value, env_file_exists=True) == [
        "gurugrow: configuration error: RETAILCRM_API_KEY is required but not set"]


@pytest.mark.parametrize(("change", "expected"), [
    ({"REDIS_URL": "rediss://:pw@redis.example:6380/2"}, ("SSLConnection", 2, None)),
    ({"REDIS_URL": "redis://:pw@ignored:1/3", "REDIS_SENTINELS": "s1:26379,s2:26379",
      "REDIS_SENTINEL_MASTER": "shop"}, ("SentinelManagedConnection", 3, "shop")),
])
def test_redis_client_kinds(change, expected):
    """TLS and Sentinel clients are built from settings alone (no connection is made)."""
    from gurugrow import make_redis_client

    client = make_redis_client(Settings.load({**TEST_ENV, **change}))
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    assert (pool.connection_class.__name__, kwargs["db"],
            getattr(pool, "service_name", None)) == expected
    assert kwargs["password"] == "pw" and kwargs["socket_timeout"] == 2.0


def test_defaults_match_the_contract():
    s = Settings.load({k: v for k, v in TEST_ENV.items() if k != "GREENSMS_BASE_URL"})
    assert [s.channel_field(c) for c in ("telegram", "vk", "whatsapp", "max", "instagram")] == [
        "bot_telegram_account_id", "bot_vk_account_id", "bot_whatsapp_account_id",
        "bot_max_account_id", "bot_instagram_account_id"]
    assert (s.otp_length, s.otp_ttl_seconds, s.otp_max_attempts, s.otp_resend_cooldown_seconds,
            s.otp_max_sends, s.otp_max_sends_per_phone_per_day, s.auth_verified_days) == (
        6, 300, 5, 60, 5, 10, 180)
    assert (s.redis_prefix, s.greensms_base_url) == ("gg:", "https://api3.greensms.ru")


def test_env_example_lists_every_variable_the_code_reads():
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, re.M))
    read = {f.metadata["env"] for f in Settings.__dataclass_fields__.values()}
    read |= set(re.findall(r"_int\(\"([A-Z_]+)\"", (ROOT / "gunicorn.conf.py").read_text()))
    assert read <= listed, read - listed
    assert listed <= read, listed - read


def test_undocumented_answers_are_collected_only_where_an_app_asks(redis_client):
    """The strict-contract check is app-scoped: an app holding the list collects answers
    outside the endpoint's contract; an app without it (production) only logs them."""
    from gurugrow.api.contract import UNDOCUMENTED_ANSWERS, _undocumented

    strict = create_app(TEST_ENV, redis_client=redis_client)
    strict.extensions[UNDOCUMENTED_ANSWERS] = []
    plain = create_app(TEST_ENV, redis_client=fakeredis.FakeRedis())
    for app in (strict, plain):
        with app.test_request_context("/auth/status"):
            _undocumented({"status": "weird", "errorCode": "odd"})
    assert strict.extensions[UNDOCUMENTED_ANSWERS] == [("/auth/status", "weird", "odd")]
    assert UNDOCUMENTED_ANSWERS not in plain.extensions
