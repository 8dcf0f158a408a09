"""``flask gurugrow doctor`` and ``create-fields`` against the sandbox stand-ins: every
check passes on a good configuration, and each broken piece fails its own line, names
the fix and sets exit status 1."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest

from gurugrow import create_app, create_cli_app
from gurugrow.basics.catalog import RECOMMENDED_SETS
from gurugrow.stores import keys as redis_keys
from tests.conftest import TEST_ENV
from tests.upstreams import Upstreams

LINE = re.compile(r"^(?P<mark>ok  |warn|FAIL) (?P<check>[^:]+): (?P<detail>.+?)"
                  r"(?: — fix: (?P<fix>.+))?$")
FIELDS = ["bot_telegram_account_id", "bot_vk_account_id", "bot_whatsapp_account_id",
          "bot_max_account_id", "bot_instagram_account_id", "bot_last_verified_channel",
          "bot_last_verified_at", "bot_last_verification_method", "chatbot_interacted"]
ALL_CHECKS = ["settings", "callers", "redis", "retailcrm key", "retailcrm scopes", "retailcrm site",
              "retailcrm references", *[f"custom field {code}" for code in FIELDS],
              "recommended sets", "greensms", "deduper", "routes"]
CRM_CASCADE = {"retailcrm key", "retailcrm scopes", "retailcrm site", "retailcrm references",
               "custom fields", "recommended sets"}
SET_LOOKUPS = ["GET /api/v5/store/products"] * len(RECOMMENDED_SETS)
SECRET_ENV = ("RETAILCRM_API_KEY", "GREENSMS_TOKEN", "GREENSMS_PASS", "DEDUPE_API_KEY",
              "OTP_SECRET", "API_TOKENS")


@pytest.fixture(autouse=True)
def catalog_has_the_sets(upstreams: Upstreams) -> None:
    """The shop's catalog holds each demo set's bundle, active and priced."""
    for number, bundle in enumerate(RECOMMENDED_SETS.values(), start=1):
        upstreams.add_bundle(900 + number, bundle.bundle_article)
        upstreams.state.products[-1]["offers"][0]["price"] = 1990


def dead_redis() -> fakeredis.FakeRedis:
    server = fakeredis.FakeServer()
    server.connected = False
    return fakeredis.FakeRedis(server=server)


def make_app(env: dict[str, str] | None = None, redis_client: Any = None):
    return create_app({**TEST_ENV, **(env or {})},
                      redis_client=redis_client or fakeredis.FakeRedis())


def run(app, *args: str, input: str | None = None) -> tuple[int, list[dict[str, str]], str]:
    """Exit code, the parsed lines (a line that does not parse fails the test), stdout."""
    result = app.test_cli_runner().invoke(args=["gurugrow", *args], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    lines = []
    for text in result.stdout.splitlines():
        if text.startswith("Create "):  # create-fields' confirmation prompt
            continue
        match = LINE.match(text)
        assert match, f"not a check line: {text!r}"
        lines.append(match.groupdict())
    return result.exit_code, lines, result.stdout


def failing(lines: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {line["check"]: line for line in lines if line["mark"] == "FAIL"}


def assert_no_secrets(env: dict[str, str], stdout: str) -> None:
    for name in SECRET_ENV:
        value = {**TEST_ENV, **env}.get(name)
        if value:
            assert value not in stdout, name
    assert "70000000000" not in stdout


# -- doctor: a good configuration -------------------------------------------------------
@pytest.mark.parametrize("env", [
    {},
    {"GREENSMS_TOKEN": "", "GREENSMS_USER": "sandbox", "GREENSMS_PASS": "sandbox"},
    {"API_TOKENS": "", "ALLOWED_CALLER_NETWORKS": "10.0.0.0/8"},
], ids=["greensms-token", "greensms-user-pass", "caller-networks-only"])
def test_doctor_passes_against_the_sandbox(upstreams: Upstreams, env):
    redis_client = fakeredis.FakeRedis()
    code, lines, stdout = run(make_app(env, redis_client), "doctor")
    assert [line["check"] for line in lines] == ALL_CHECKS
    assert failing(lines) == {} and code == 0, stdout
    assert all(line["fix"] is None for line in lines)
    assert_no_secrets(env, stdout)
    # Reads only: nothing written to RetailCRM, no message sent, no probe key left behind
    # (only the shared RetailCRM bucket, whose slots the doctor takes too, and it expires).
    assert upstreams.crm_calls() == [
        "GET /api/credentials", "GET /api/v5/reference/statuses",
        "GET /api/v5/reference/status-groups", "GET /api/v5/reference/sites",
        "GET /api/v5/custom-fields", *SET_LOOKUPS]
    assert upstreams.sent == []
    assert [c["phone"] for c in upstreams.dedupe_calls] == ["70000000000"]
    assert redis_client.keys("*") == [redis_keys.crm_quota_tail("gg:").encode()]
    assert 0 < redis_client.pttl(redis_keys.crm_quota_tail("gg:"))


@pytest.mark.parametrize(("drop", "note"), [
    ("custom_fields_write", "custom_fields_write not granted, needed only by create-fields"),
    ("custom_fields_read", "custom_fields_read not granted"),
])
def test_setup_scopes_are_notes_not_failures(upstreams: Upstreams, drop, note):
    upstreams.state.scopes.remove(drop)
    code, lines, stdout = run(make_app(), "doctor")
    scopes = next(line for line in lines if line["check"] == "retailcrm scopes")
    assert scopes["mark"] == "ok  " and note in scopes["detail"]
    assert code == 0, stdout


def test_a_sandbox_app_points_the_fix_at_make_run():
    # Nothing listens on the sandbox's port here: the stand-ins are not being served.
    app = create_app({"GURUGROW_SANDBOX": "1", "APP_PORT": "9", "REDIS_URL": "memory://"})
    code, lines, _ = run(app, "doctor")
    assert code == 1
    assert failing(lines).keys() == CRM_CASCADE | {"greensms", "deduper"}
    assert all("make run" in failing(lines)[name]["fix"]
               for name in ("retailcrm key", "greensms", "deduper"))


@pytest.mark.parametrize(("env", "mode"), [
    ({}, "on: answers at https://dedupe.test"),
    ({"DEDUPE_BASE_URL": "", "DEDUPE_API_KEY": ""}, "off (DEDUPE_BASE_URL empty)"),
], ids=["deduper-on", "deduper-off"])
def test_doctor_says_which_deduper_mode_is_on(upstreams: Upstreams, env, mode):
    code, lines, stdout = run(make_app(env), "doctor")
    assert code == 0 and failing(lines) == {}, stdout
    deduper = next(line for line in lines if line["check"] == "deduper")
    assert deduper["detail"].startswith(mode), deduper
    assert len(upstreams.dedupe_calls) == (1 if "on:" in mode else 0)


# -- doctor: settings a start refuses ------------------------------------------------------
REFUSED = [
    # id, env changes, the settings named (in order), checks not run, checks that still run
    ("greensms-no-credentials", {"GREENSMS_TOKEN": ""}, ["GREENSMS_TOKEN"],
     {"greensms"}, {"callers", "redis", "retailcrm key", "deduper"}),
    ("three-at-once", {"GREENSMS_TOKEN": "", "RETAILCRM_API_KEY": "", "DEDUPE_API_KEY": ""},
     ["RETAILCRM_API_KEY", "GREENSMS_TOKEN", "DEDUPE_API_KEY"],
     {"retailcrm key", "greensms", "deduper"}, {"callers", "redis"}),
    ("short-token-and-bad-number", {"API_TOKENS": "short", "OTP_TTL_SECONDS": "soon"},
     ["OTP_TTL_SECONDS", "API_TOKENS"], {"callers"}, {"redis", "retailcrm key", "greensms"}),
    ("redis-url-malformed", {"REDIS_URL": "localhost:6379"}, ["REDIS_URL"], {"redis"},
     {"callers", "retailcrm key", "greensms", "deduper"}),
]


@pytest.mark.parametrize("env_file", [True, False], ids=["with-env-file", "no-env-file"])
@pytest.mark.parametrize(("env", "named", "not_run", "still_run"),
                         [pytest.param(*case[1:], id=case[0]) for case in REFUSED])
def test_doctor_on_a_refused_configuration_prints_every_check(
        upstreams: Upstreams, monkeypatch, tmp_path, env, named, not_run, still_run,
        env_file):
    monkeypatch.chdir(tmp_path)  # the doctor looks for ./.env
    if env_file:
        (tmp_path / ".env").write_text("# the settings come from the environment here\n")
    app = create_cli_app({**TEST_ENV, **env}, redis_client=fakeredis.FakeRedis())
    code, lines, stdout = run(app, "doctor")
    assert code == 1
    settings = [line for line in lines if line["check"] == "settings"]
    if not env_file:  # the last settings line says to copy the example
        hint = settings.pop()
        assert hint["detail"] == "no .env in this directory", stdout
        assert hint["fix"].startswith("cp .env.example .env, then fill it in"), stdout
    assert [line["mark"] for line in settings] == ["FAIL"] * len(named), stdout
    assert [line["detail"].split(" ")[0] for line in settings] == named, stdout
    assert all(named[i] in line["fix"] for i, line in enumerate(settings))
    by_check = {line["check"]: line for line in lines}
    for name in not_run:
        assert by_check[name]["mark"] == "FAIL", stdout
        assert by_check[name]["detail"].startswith("not checked: "), stdout
    assert all(by_check[name]["mark"] == "ok  " for name in still_run), stdout
    assert [line["check"] for line in lines][-3:] == ["greensms", "deduper", "routes"]
    assert_no_secrets(env, stdout)


def test_other_commands_on_a_refused_configuration_list_the_problems(
        upstreams: Upstreams, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("")
    app = create_cli_app({**TEST_ENV, "GREENSMS_TOKEN": "", "RETAILCRM_API_KEY": ""},
                         redis_client=fakeredis.FakeRedis())
    for command in (["create-fields", "--yes"], ["deliveries", "--once"]):
        result = app.test_cli_runner().invoke(args=["gurugrow", *command])
        assert result.exit_code == 1
        assert result.stdout == ""
        assert result.stderr.splitlines()[:3] == [
            "gurugrow: configuration error: 2 settings to fix:",
            "gurugrow:   RETAILCRM_API_KEY is required but not set",
            "gurugrow:   GREENSMS_TOKEN (or GREENSMS_USER and GREENSMS_PASS) must be set for "
            "a live start: without them no code can be sent"]
    assert upstreams.crm_calls() == [] and upstreams.sent == []
    # Nor does such an app serve anything (`flask run` on it).
    response = app.test_client().get("/auth/status", query_string={"channelType": "vk"})
    assert response.status_code == 503 and response.get_json()["errorCode"] == "internal_error"


# -- doctor: one broken piece at a time -------------------------------------------------
Arrange = Callable[[Upstreams], Any]


def _retype(up: Upstreams, code: str, kind: str) -> None:
    for field in up.state.custom_fields:
        if field["code"] == code:
            field["type"] = kind


def _drop_field(up: Upstreams, code: str) -> None:
    up.state.custom_fields[:] = [f for f in up.state.custom_fields if f["code"] != code]


def _drop_bundle(up: Upstreams, article: str) -> None:
    up.state.products[:] = [p for p in up.state.products if p["article"] != article]


NOT_FOUND = (404, {"success": False, "errorMsg": "Method not found"})


def _selective(*sites: str) -> Arrange:
    def arrange(up: Upstreams) -> None:
        up.state.site_access = "access_selective"
        up.state.sites = list(sites)
    return arrange


# An upstream that echoes the key it got: the line must still not show it.
CRM_KEY_REFUSED = {"success": False,
                   "errorMsg": f'Wrong "apiKey" value: {TEST_ENV["RETAILCRM_API_KEY"]}'}

FAILURES = [
    # id, env, arrange, dead redis, failing checks, the check whose fix is read, fix parts
    ("crm-key-401", {}, lambda up: up.fail.update(credentials=(401, CRM_KEY_REFUSED)),
     False, CRM_CASCADE, "retailcrm key", ["set RETAILCRM_API_KEY", "API access keys"]),
    ("crm-key-wrong-403", {"RETAILCRM_API_KEY": "not-the-sandbox-key"}, None,
     False, CRM_CASCADE, "retailcrm key", ["set RETAILCRM_API_KEY"]),
    ("crm-unreachable", {"RETAILCRM_BASE_URL": "https://no-such-account.test"}, None,
     False, CRM_CASCADE, "retailcrm key", ["RETAILCRM_BASE_URL"]),
    ("crm-503", {}, lambda up: up.fail.update(credentials=(503, {"success": False})),
     False, CRM_CASCADE, "retailcrm key", ["RETAILCRM_BASE_URL", "again"]),
    ("crm-html-405", {}, lambda up: up.fail.update(credentials=(405, "<html>405</html>")),
     False, CRM_CASCADE, "retailcrm key", ["RETAILCRM_BASE_URL"]),
    ("missing-scopes", {}, lambda up: [up.state.scopes.remove(s)
                                       for s in ("order_write", "store_read")],
     False, {"retailcrm scopes"}, "retailcrm scopes",
     ["order_write, store_read", "API access keys"]),
    ("site-not-accessible", {}, _selective("other-site"),
     False, {"retailcrm site"}, "retailcrm site", ["RETAILCRM_SITE", "other-site"]),
    ("recommended-site-not-accessible", {}, _selective("test-site"),
     False, {"retailcrm site"}, "retailcrm site", ["RECOMMENDED_ORDER_SITE", "1minoxidil-ru"]),
    ("site-not-set-with-several-sites", {"RETAILCRM_SITE": ""},
     _selective("1minoxidil-ru", "other-site"),
     False, {"retailcrm site"}, "retailcrm site", ["set RETAILCRM_SITE to one of"]),
    ("crm-account-does-not-exist", {}, lambda up: up.fail.update(credentials=(
        400, {"success": False, "errorMsg": "Account does not exist."})),
     False, CRM_CASCADE, "retailcrm key", ["set RETAILCRM_BASE_URL"]),
    ("repeat-status-unknown", {"REPEAT_ORDER_STATUS": "no-such-status"}, None,
     False, {"retailcrm references"}, "retailcrm references",
     ["REPEAT_ORDER_STATUS", "order statuses: assembling"]),
    ("recommended-status-unknown", {"RECOMMENDED_ORDER_STATUS": "gone"}, None,
     False, {"retailcrm references"}, "retailcrm references", ["RECOMMENDED_ORDER_STATUS"]),
    ("group-code-unknown", {"RETAILCRM_ORDER_GROUP_DELIVERY_CODES": "delivery,nope"}, None,
     False, {"retailcrm references"}, "retailcrm references",
     ["RETAILCRM_ORDER_GROUP_DELIVERY_CODES", "status groups:"]),
    ("site-unknown", {"REPEAT_ORDER_SITE": "closed-store"}, None,
     False, {"retailcrm references"}, "retailcrm references",
     ["REPEAT_ORDER_SITE", "sites: 1minoxidil-ru, test-site"]),
    ("references-unreadable", {}, lambda up: up.fail.update(
        statuses=(403, {"success": False, "errorMsg": "Access denied."})),
     False, {"retailcrm references"}, "retailcrm references", ["reference_read"]),
    ("sites-404", {}, lambda up: up.fail.update(sites=NOT_FOUND),
     False, {"retailcrm references"}, "retailcrm references",
     ["GET /api/v5/reference/sites is not available to this key or account"]),
    ("custom-fields-404", {}, lambda up: up.fail.update(custom_fields=NOT_FOUND),
     False, {"custom fields"}, "custom fields",
     ["GET /api/v5/custom-fields is not available to this key or account"]),
    ("bundle-missing", {}, lambda up: _drop_bundle(up, "SET-FEMALE-BASIC"),
     False, {"recommended sets"}, "recommended sets", ["catalog", "bundle"]),
    ("products-403", {}, lambda up: up.fail.update(products=(403, {
        "success": False, "errorMsg": "Access denied"})),
     False, {"recommended sets"}, "recommended sets", ["allow store_read"]),
    ("custom-field-missing", {}, lambda up: _drop_field(up, "bot_vk_account_id"),
     False, {"custom field bot_vk_account_id"}, "custom field bot_vk_account_id",
     ["create-fields", "RETAILCRM_CF_VK_ID"]),
    ("renamed-field-missing", {"RETAILCRM_CF_MAX_ID": "max_messenger_id"}, None,
     False, {"custom field max_messenger_id"}, "custom field max_messenger_id",
     ["RETAILCRM_CF_MAX_ID"]),
    ("messenger-field-integer", {}, lambda up: _retype(up, "bot_telegram_account_id",
                                                       "integer"),
     False, {"custom field bot_telegram_account_id"}, "custom field bot_telegram_account_id",
     ["String", "RETAILCRM_CF_TELEGRAM_ID"]),
    ("custom-fields-unlistable", {}, lambda up: up.fail.update(
        custom_fields=(403, {"success": False, "errorMsg": "Access denied"})),
     False, {"custom fields"}, "custom fields", ["custom_fields_read"]),
    ("greensms-token-rejected", {"GREENSMS_TOKEN": "not-the-sandbox-token"}, None,
     False, {"greensms"}, "greensms", ["set GREENSMS_TOKEN to valid"]),
    ("greensms-pass-rejected",
     {"GREENSMS_TOKEN": "", "GREENSMS_USER": "sandbox", "GREENSMS_PASS": "wrong-pass"}, None,
     False, {"greensms"}, "greensms", ["set GREENSMS_USER / GREENSMS_PASS to valid"]),
    ("greensms-down", {}, lambda up: up.fail.update(balance=(502, "<html>502</html>")),
     False, {"greensms"}, "greensms", ["GREENSMS_BASE_URL"]),
    # Already GreenSMS's own address: the fix is the way there, not the setting.
    ("greensms-unreachable-at-its-address", {"GREENSMS_BASE_URL": "https://api3.greensms.ru"},
     None, False, {"greensms"}, "greensms", ["HTTP_PROXY_FROM_ENV"]),
    ("deduper-down", {}, lambda up: up.fail.update(dedupe=(503, {"detail": "down"})),
     False, {"deduper"}, "deduper", ["DEDUPE_BASE_URL"]),
    ("deduper-unreachable", {"DEDUPE_BASE_URL": "https://no-such-deduper.test"}, None,
     False, {"deduper"}, "deduper", ["DEDUPE_BASE_URL"]),
    ("deduper-key-rejected", {"DEDUPE_API_KEY": "not-the-dedupe-key"}, None,
     False, {"deduper"}, "deduper", ["DEDUPE_API_KEY"]),
    ("redis-down", {}, None, True, {"redis"}, "redis", ["REDIS_URL"]),
    ("two-settings-one-field", {"RETAILCRM_CF_MAX_ID": "bot_vk_account_id"}, None,
     False, {"settings"}, "settings", ["RETAILCRM_CF_VK_ID, RETAILCRM_CF_MAX_ID"]),
    ("anonymous-callers", {"API_TOKENS": "", "ALLOW_ANONYMOUS_CALLERS": "1"}, None,
     False, {"callers"}, "callers", ["set API_TOKENS", "ALLOW_ANONYMOUS_CALLERS=0"]),
]


@pytest.mark.parametrize(("env", "arrange", "redis_down", "failed", "check", "fix_parts"),
                         [pytest.param(*case[1:], id=case[0]) for case in FAILURES])
def test_doctor_fails_the_broken_check_and_names_the_fix(
        upstreams: Upstreams, env, arrange, redis_down, failed, check, fix_parts):
    if arrange:
        arrange(upstreams)
    app = make_app(env, dead_redis() if redis_down else None)
    code, lines, stdout = run(app, "doctor")
    assert code == 1, stdout
    assert failing(lines).keys() == failed, stdout
    assert next(line for line in lines if line["mark"] == "FAIL")["check"] == check
    fix = failing(lines)[check]["fix"]
    assert all(part in fix for part in fix_parts), fix
    # A fix never asks to set a setting to the value it already has.
    for name, value in {**TEST_ENV, **env}.items():
        if not value:
            continue
        assert f"set {name} to {value}" not in fix and f"{name} ({value})" not in fix, fix
    assert_no_secrets(env, stdout)
    # Every check still gets its line: the later ones run after a failure.
    assert [line["check"] for line in lines][-3:] == ["greensms", "deduper", "routes"]


# -- create-fields ------------------------------------------------------------------------
MISSING = ["bot_vk_account_id", "chatbot_interacted"]
ACCESS_DENIED = (403, {"success": False, "errorMsg": "Access denied"})

CREATE_CASES = [
    # id, args, input, arrange, exit code, {code: expected line}, fix part of a FAIL line
    ("yes-flag", ["--yes"], None, None, 0,
     {"bot_vk_account_id": "created", "chatbot_interacted": "created"}, None),
    ("confirmed", [], "y\n", None, 0,
     {"bot_vk_account_id": "created", "chatbot_interacted": "created"}, None),
    ("declined", [], "n\n", None, 1,
     {"bot_vk_account_id": "not created", "chatbot_interacted": "not created"}, "--yes"),
    ("enter-means-no", [], "\n", None, 1,
     {"bot_vk_account_id": "not created", "chatbot_interacted": "not created"}, "--yes"),
    ("create-refused", ["--yes"], None,
     lambda up: up.fail.update(create_custom_field=ACCESS_DENIED), 1,
     {"bot_vk_account_id": "refused", "chatbot_interacted": "refused"}, "custom_fields_write"),
    ("create-invalid", ["--yes"], None, lambda up: up.fail.update(create_custom_field=(
        400, {"success": False, "errorMsg": "Errors in the entity format",
              "errors": {"code": "Invalid"}})), 1,
     {"bot_vk_account_id": "code: Invalid", "chatbot_interacted": "code: Invalid"},
     "type String"),
    ("one-create-fails", ["--yes"], None,
     lambda up: up.fail_once.update(create_custom_field=(503, {"success": False})), 1,
     {"bot_vk_account_id": "no answer", "chatbot_interacted": "created"}, "again"),
]


@pytest.mark.parametrize(("args", "input", "arrange", "exit_code", "expected", "fix_part"),
                         [pytest.param(*case[1:], id=case[0]) for case in CREATE_CASES])
def test_create_fields(upstreams: Upstreams, args, input, arrange, exit_code, expected,
                       fix_part):
    for code in MISSING:
        _drop_field(upstreams, code)
    if arrange:
        arrange(upstreams)
    app = make_app()
    code, lines, stdout = run(app, "create-fields", *args, input=input)
    assert code == exit_code, stdout
    by_field = {line["check"].removeprefix("custom field "): line for line in lines}
    assert sorted(by_field) == sorted(FIELDS)  # one line per field
    for field, line in by_field.items():
        if field not in MISSING:
            assert (line["mark"], line["detail"].split(" (")[0]) == ("ok  ", "already exists")
    for field, text in expected.items():
        assert text in by_field[field]["detail"], by_field[field]
        if text != "created":
            assert by_field[field]["mark"] == "FAIL" and fix_part in by_field[field]["fix"]
    created = [f for f in upstreams.state.custom_fields if f["code"] in MISSING]
    assert [f["code"] for f in created] == [f for f, t in expected.items() if t == "created"]
    for field in created:
        assert (field["type"], field["displayArea"], field["entity"]) == (
            "string", "main_data", "customer")
        assert field["name"].endswith("(bot)")
    # The doctor agrees with what create-fields said.
    assert run(app, "doctor")[0] == exit_code


def test_create_fields_with_nothing_missing_asks_nothing(upstreams: Upstreams):
    # No input: a confirmation prompt would abort with exit 1.
    code, lines, stdout = run(make_app(), "create-fields")
    assert code == 0, stdout
    assert [line["detail"].split(" (")[0] for line in lines] == ["already exists"] * len(FIELDS)
    assert upstreams.crm_calls("POST") == []


@pytest.mark.parametrize("refusal", [ACCESS_DENIED, (404, {"success": False,
                                                       "errorMsg": "Method not found"})],
                         ids=["listing-403", "listing-404"])
def test_create_fields_works_when_the_key_may_write_but_not_list(upstreams: Upstreams,
                                                                  refusal):
    """A key with custom_fields_write but no listing: each field is created, and one
    RetailCRM refuses as existing counts as there."""
    for code in MISSING:
        _drop_field(upstreams, code)
    upstreams.fail["custom_fields"] = refusal
    code, lines, stdout = run(make_app(), "create-fields", "--yes")
    assert code == 0, stdout
    assert (lines[0]["mark"], lines[0]["check"]) == ("warn", "custom fields")
    assert f"GET /api/v5/custom-fields answered HTTP {refusal[0]}" in lines[0]["detail"]
    by_field = {line["check"].removeprefix("custom field "): line for line in lines[1:]}
    assert sorted(by_field) == sorted(FIELDS)
    for field, line in by_field.items():
        assert line["mark"] == "ok  ", line
        assert line["detail"].startswith("created" if field in MISSING else "already exists")
    assert {f["code"] for f in upstreams.state.custom_fields} >= set(FIELDS)


def test_create_fields_stops_when_retailcrm_does_not_answer(upstreams: Upstreams):
    upstreams.fail["custom_fields"] = (503, {"success": False})
    code, lines, _ = run(make_app(), "create-fields", "--yes")
    assert code == 1
    assert [(line["mark"], line["check"]) for line in lines] == [("FAIL", "custom fields")]
    assert upstreams.crm_calls("POST") == []


def test_create_fields_creates_a_shared_code_once(upstreams: Upstreams):
    _drop_field(upstreams, "bot_vk_account_id")
    env = {"RETAILCRM_CF_MAX_ID": "bot_vk_account_id"}
    code, lines, _ = run(make_app(env), "create-fields", "--yes")
    assert code == 0
    assert upstreams.crm_calls("POST") == ["POST /api/v5/custom-fields/customer/create"]


def test_doctor_says_the_quota_is_per_key_and_why_the_vk_route_is_off(upstreams: Upstreams):
    code, lines, stdout = run(make_app({"GREENSMS_VK_FROM": ""}), "doctor")
    settings = next(line for line in lines if line["check"] == "settings")
    assert "per API key" in settings["detail"] and "every other integration" in settings["detail"]
    greensms = next(line for line in lines if line["check"] == "greensms")
    assert greensms["mark"] == "ok  " and "VK route is off, GREENSMS_VK_FROM" in greensms["detail"]
    assert code == 0, stdout
    _, lines, _ = run(make_app(), "doctor")
    assert "VK route" not in next(line for line in lines if line["check"] == "greensms")["detail"]


# -- each failing call is named, with the fix of its cause --------------------------------
FORBIDDEN = (403, {"success": False, "errorMsg": "Forbidden"})


@pytest.mark.parametrize(("kind", "answer", "check", "call", "fix"), [
    ("sites", NOT_FOUND, "retailcrm references", "GET /api/v5/reference/sites answered "
     "HTTP 404", "not available to this key or account"),
    ("statuses", FORBIDDEN, "retailcrm references", "GET /api/v5/reference/statuses "
     "answered HTTP 403", "allow reference_read"),
    ("custom_fields", NOT_FOUND, "custom fields", "GET /api/v5/custom-fields answered "
     "HTTP 404", "not available to this key or account"),
    ("custom_fields", (401, {"success": False}), "custom fields", "GET /api/v5/custom-fields "
     "answered HTTP 401", "allow custom_fields_read"),
], ids=["sites-404", "statuses-403", "custom-fields-404", "custom-fields-401"])
def test_a_failing_call_is_named_with_the_fix_of_its_cause(upstreams: Upstreams, kind,
                                                            answer, check, call, fix):
    upstreams.fail[kind] = answer
    not_in_fix = "RETAILCRM_BASE_URL"  # the address passed /api/credentials
    code, lines, stdout = run(make_app(), "doctor")
    assert code == 1, stdout
    line = failing(lines)[check]
    assert call in line["detail"], line
    assert fix in line["fix"] and not_in_fix not in line["fix"], line
    # The scope line above still says what the key has: the two never contradict.
    assert next(x for x in lines if x["check"] == "retailcrm scopes")["mark"] == "ok  "


def test_a_call_without_an_answer_points_at_the_network():
    import requests

    from gurugrow.basics.errors import UpstreamUnavailable
    from gurugrow.doctor.checks import call_failed

    error = UpstreamUnavailable("retailcrm", "timed out")
    error.__cause__ = requests.ReadTimeout("read timed out")
    check = call_failed("retailcrm references", "GET", "/api/v5/reference/sites", error,
                        scope="reference_read", what="cannot read the sites")
    assert "GET /api/v5/reference/sites got no answer" in check.detail
    assert "network" in check.fix and "reference_read" not in check.fix


def test_the_doctor_names_each_missing_inactive_or_unpriced_bundle(upstreams: Upstreams):
    _drop_bundle(upstreams, "SET-FEMALE-BASIC")
    beard = next(p for p in upstreams.state.products if p["article"] == "SET-BEARD-GROWTH")
    beard["active"] = False
    code, lines, stdout = run(make_app(), "doctor")
    line = failing(lines)["recommended sets"]
    assert code == 1
    assert "not in the catalog: SET-FEMALE-BASIC (female_hairloss_basic)" in line["detail"]
    assert "inactive: SET-BEARD-GROWTH (beard_growth)" in line["detail"]
    assert "SET-MALE-BASIC (male" not in line["detail"]
    # Only a missing price: a warning, and the doctor still exits 0.
    upstreams.add_bundle(990, "SET-FEMALE-BASIC")
    beard["active"] = True
    code, lines, stdout = run(make_app(), "doctor")
    sets = next(x for x in lines if x["check"] == "recommended sets")
    assert sets["mark"] == "warn" and "no price in the catalog: SET-FEMALE-BASIC" in (
        sets["detail"]), stdout
    assert code == 0, stdout


def test_the_readme_and_going_live_list_every_scope_the_doctor_uses():
    from pathlib import Path

    from gurugrow.doctor.checks import REQUIRED_SCOPES, SETUP_SCOPES

    root = Path(__file__).resolve().parent.parent
    for doc in ("README.md", "docs/GOING-LIVE.md"):
        text = (root / doc).read_text(encoding="utf-8")
        missing = [s for s in (*REQUIRED_SCOPES, *SETUP_SCOPES) if f"`{s}`" not in text]
        assert missing == [], f"{doc} lacks {missing}"


def test_a_sets_own_site_and_status_are_checked(upstreams: Upstreams, tmp_path):
    sets = tmp_path / "sets.toml"
    sets.write_text('[sets.men]\nbundle = "SET-MALE-BASIC"\ntitle = "Набор"\n'
                    'components = ["Миноксидил"]\nsite = "closed-store"\nstatus = "gone"\n',
                    encoding="utf-8")
    _selective("test-site", "1minoxidil-ru")(upstreams)
    code, lines, stdout = run(make_app({"RECOMMENDED_SETS_FILE": str(sets)}), "doctor")
    assert code == 1
    site = failing(lines)["retailcrm site"]
    assert "closed-store (RECOMMENDED_SETS_FILE set men)" in site["detail"], site
    references = failing(lines)["retailcrm references"]
    assert "order status gone (RECOMMENDED_SETS_FILE set men) does not exist" in (
        references["detail"]), references
    assert "order statuses: " in references["fix"]  # the account's codes to choose from
    assert next(x for x in lines if x["check"] == "recommended sets")["mark"] == "ok  "


@pytest.mark.parametrize(("env", "arrange", "check", "call"), [
    ({}, lambda up: up.fail.update(credentials=(401, CRM_KEY_REFUSED)), "retailcrm key",
     "GET /api/credentials answered HTTP 401"),
    ({"GREENSMS_TOKEN": "not-the-sandbox-token"}, None, "greensms",
     "GET /account/balance answered HTTP 401"),
    ({"DEDUPE_API_KEY": "not-the-dedupe-key"}, None, "deduper",
     "POST /api/dedupe/auto-resolve answered HTTP 401"),
    ({}, lambda up: up.fail.update(products=(404, {"success": False})), "recommended sets",
     "GET /api/v5/store/products answered HTTP 404"),
], ids=["retailcrm-key", "greensms", "deduper", "products"])
def test_every_upstream_check_names_its_failing_call(upstreams: Upstreams, env, arrange,
                                                     check, call):
    if arrange:
        arrange(upstreams)
    code, lines, stdout = run(make_app(env), "doctor")
    assert code == 1
    assert call in failing(lines)[check]["detail"], stdout
