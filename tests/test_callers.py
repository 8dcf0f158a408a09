"""Caller authentication: only the shop's bot platform (a token, optionally a network)
may call; everyone else gets HTTP 401 before any upstream call or Redis write."""

from __future__ import annotations

import logging
import re
import runpy
from pathlib import Path

import fakeredis
import pytest
import responses

from gurugrow import ConfigError, Settings, create_app, texts
from gurugrow.api.callers import PUBLIC_ENDPOINTS
from gurugrow.config import ENV_EXAMPLE_PLACEHOLDERS
from tests.conftest import API_TOKEN, TEST_ENV, anonymous_client
from tests.helpers import BODY_KINDS, TG
from tests.upstreams import Upstreams

# Every route but these refuses a caller without a valid token. /sandbox/* is mounted
# outside the app and so never in its URL map: its own routes are walked from the
# stand-ins' URL map (sandbox_routes).
OPEN_PATHS = {"/health", "/docs", "/openapi.json", "/metrics", "/"}
# /metrics is open to loopback and the caller networks only, by a policy of its own
# (CallerPolicy.for_scrapers; tests/test_metrics.py); the rest to anyone.
PUBLIC_PATHS = OPEN_PATHS - {"/metrics"}
ROOT = Path(__file__).resolve().parent.parent
UNAUTHORIZED = {"status": "error", "errorCode": "unauthorized",
                "message": texts.ERROR_MESSAGES["unauthorized"]}
OTHER_TOKEN = "second-caller-token-abcdefghijkl"
PHONE = "79991234567"
# A request body fit for every contract endpoint (each takes the fields it knows).
BODY = {**TG, "phone": PHONE, "sessionId": "0123456789abcdef.x", "code": "123456",
        "offerCode": "male_hairloss_basic", "sourceOrderId": "5001"}

# Credentials that must all be refused: (headers, query string).
REFUSED = {
    "none": ({}, {}),
    "empty-bearer": ({"Authorization": "Bearer "}, {}),
    "empty-header": ({"X-API-Token": ""}, {}),
    "wrong-bearer": ({"Authorization": "Bearer wrong-token-0123456789abc"}, {}),
    "wrong-header": ({"X-API-Token": "wrong-token-0123456789abc"}, {}),
    "prefix-of-token": ({"X-API-Token": API_TOKEN[:-1]}, {}),
    "token-plus-more": ({"X-API-Token": API_TOKEN + "x"}, {}),
    "not-bearer-scheme": ({"Authorization": f"Basic {API_TOKEN}"}, {}),
    "bare-authorization": ({"Authorization": API_TOKEN}, {}),
    "query-when-disabled": ({}, {"token": API_TOKEN}),
}


@pytest.fixture
def transport():
    """Every upstream (RetailCRM, GreenSMS, deduper) at the transport: the stand-ins, and
    ``rsps.calls`` lists each request that left the app."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        upstreams = Upstreams(rsps)
        upstreams.add_customer(5, PHONE, bot_telegram_account_id=TG["messengerUserId"])
        yield rsps


def send(client, method: str, path: str, kind: str = "form", headers=None, query=None):
    """One request with ``BODY`` as query (GET) or as a form / JSON body (POST)."""
    if method == "GET":
        return client.get(path, query_string={**BODY, **(query or {})}, headers=headers)
    body = {"json": BODY} if kind == "json" else {"data": BODY}
    return client.post(path, query_string=query, headers=headers, **body)


def routes(app) -> list[tuple[str, str, str]]:
    """(method, path, endpoint) of every route of the app's URL map."""
    urls = app.url_map.bind("localhost")
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            path = urls.build(rule.endpoint, {name: "1" for name in rule.arguments},
                              method=method)
            found.append((method, path, rule.endpoint))
    return found


def sandbox_routes() -> list[tuple[str, str]]:
    """(method, path) of the sandbox's own routes (outbox, stats, reset): every route of
    the stand-ins' URL map outside the stand-in upstreams, as the app mounts it."""
    from gurugrow.sandbox.mount import UPSTREAM_MOUNTS
    from gurugrow.sandbox.standins import create_standins_app

    found = [(method, "/sandbox" + path) for method, path, endpoint
             in routes(create_standins_app())
             if not path.startswith(UPSTREAM_MOUNTS) and endpoint != "static"]
    assert {p for _, p in found} >= {"/sandbox/outbox", "/sandbox/stats", "/sandbox/reset"}
    return found


def assert_refused(response) -> None:
    assert response.status_code == 401, response.data
    assert response.get_json() == UNAUTHORIZED


# -- the URL map: every route but the open ones is closed ---------------------------------
@pytest.mark.parametrize("sandbox", [False, True], ids=["live", "sandbox-with-tokens"])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_every_route_refuses_callers_without_a_valid_token(transport, sandbox, kind):
    redis_client = fakeredis.FakeRedis()
    env = {**TEST_ENV, "GURUGROW_SANDBOX": str(int(sandbox))}
    app = create_app(env, redis_client=redis_client)
    client = anonymous_client(app)
    protected = [(m, p) for m, p, _ in routes(app) if p not in OPEN_PATHS]
    assert {p for _, p, _ in routes(app)} >= OPEN_PATHS
    assert len(protected) >= 11  # the eleven contract endpoints at least
    if sandbox:
        protected += sandbox_routes()
    for method, path in protected:
        for name, (headers, query) in REFUSED.items():
            response = send(client, method, path, kind, headers, query)
            assert response.status_code == 401, (method, path, name)
            assert response.get_json() == UNAUTHORIZED, (method, path, name)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert [c.request.url for c in transport.calls] == []
    assert redis_client.dbsize() == 0
    # The same requests with the token reach the flows (so the refusals above are real);
    # the sandbox's "manager" and incoming-call routes answer this body's unknown ids with
    # their JSON 404.
    for method, path in protected:
        response = send(client, method, path, kind, {"X-API-Token": API_TOKEN})
        assert response.status_code == (404 if _finds_ids(path) else 200), (method, path)
        assert response.get_json().get("errorCode") != "unauthorized"
    assert len(transport.calls) > 0


def test_only_the_open_routes_are_public(app):
    """The exemption list holds exactly the open routes: a new route is protected."""
    public = {path for _, path, endpoint in routes(app) if endpoint in PUBLIC_ENDPOINTS}
    assert public == PUBLIC_PATHS
    client = anonymous_client(app)
    for path in OPEN_PATHS:  # /metrics: from loopback; / redirects to /docs
        assert client.get(path).status_code == (302 if path == "/" else 200), path


def test_unknown_paths_and_methods_answer_their_own_errors(app):
    client = anonymous_client(app)
    assert client.get("/nowhere").status_code == 404
    assert client.get("/auth/start").status_code == 405


# -- accepted forms -----------------------------------------------------------------------
ACCEPTED = {
    "bearer": ({"Authorization": f"Bearer {API_TOKEN}"}, {}),
    "bearer-lowercase": ({"Authorization": f"bearer {API_TOKEN}"}, {}),
    "header": ({"X-API-Token": API_TOKEN}, {}),
}


@pytest.mark.parametrize("form", sorted(ACCEPTED))
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_each_header_form_is_accepted(app, transport, form, kind):
    headers, query = ACCEPTED[form]
    client = anonymous_client(app)
    status = send(client, "GET", "/auth/status", headers=headers, query=query)
    assert (status.status_code, status.get_json()["status"]) == (200, "authorized")
    unlinked = send(client, "POST", "/auth/unlink", kind, headers=headers, query=query)
    assert (unlinked.status_code, unlinked.get_json()["status"]) == (200, "unlinked")


@pytest.mark.parametrize("env_overrides", [{"API_TOKEN_IN_QUERY": "1"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_query_token_is_accepted_when_enabled(app, transport, kind):
    client = anonymous_client(app)
    status = send(client, "GET", "/auth/status", query={"token": API_TOKEN})
    assert (status.status_code, status.get_json()["status"]) == (200, "authorized")
    unlinked = send(client, "POST", "/auth/unlink", kind, query={"token": API_TOKEN})
    assert (unlinked.status_code, unlinked.get_json()["status"]) == (200, "unlinked")
    assert_refused(send(client, "GET", "/auth/status", query={"token": "wrong-token-000000"}))
    # Only in the query: a `token` field in the body is not a credential.
    assert_refused(client.post("/auth/unlink", data={**BODY, "token": API_TOKEN}))


@pytest.mark.parametrize("env_overrides", [{"API_TOKENS": f"{API_TOKEN},{OTHER_TOKEN}"}])
def test_two_tokens_allow_rotation(app, transport):
    client = anonymous_client(app)
    for token in (API_TOKEN, OTHER_TOKEN):
        response = send(client, "GET", "/auth/status", headers={"X-API-Token": token})
        assert response.get_json()["status"] == "authorized"
    assert_refused(send(client, "GET", "/auth/status",
                        headers={"X-API-Token": "third-token-0123456789abc"}))
    # After the rotation only the new token is configured: the old one is refused.
    rotated = create_app({**TEST_ENV, "API_TOKENS": OTHER_TOKEN},
                         redis_client=fakeredis.FakeRedis())
    client = anonymous_client(rotated)
    assert_refused(send(client, "GET", "/auth/status", headers={"X-API-Token": API_TOKEN}))
    assert send(client, "GET", "/auth/status", headers={"X-API-Token": OTHER_TOKEN}
                ).get_json()["status"] == "authorized"


# -- networks -------------------------------------------------------------------------------
def call_from(client, address: str, headers=None):
    return client.get("/auth/status", query_string=TG, headers=headers,
                      environ_base={"REMOTE_ADDR": address})


@pytest.mark.parametrize("env_overrides", [{"API_TOKENS": "",
                                            "ALLOWED_CALLER_NETWORKS": "10.0.0.0/8,2001:db8::/32",
                                            "TRUSTED_PROXIES": "127.0.0.1",
                                            # each admitted call reaches RetailCRM
                                            "BINDING_CACHE_SECONDS": "0"}])
def test_networks_alone_admit_callers_inside(app, transport):
    client = anonymous_client(app)
    assert call_from(client, "10.1.2.3").get_json()["status"] == "authorized"
    assert call_from(client, "2001:db8::5").get_json()["status"] == "authorized"
    assert_refused(call_from(client, "192.0.2.1"))
    # Through a trusted proxy the forwarded address counts...
    assert call_from(client, "127.0.0.1", {"X-Forwarded-For": "10.9.9.9"}).status_code == 200
    assert_refused(call_from(client, "127.0.0.1", {"X-Forwarded-For": "192.0.2.1"}))
    # ...and from anyone else a forwarded header is not believed.
    assert_refused(call_from(client, "192.0.2.1", {"X-Forwarded-For": "10.9.9.9"}))
    assert len(transport.calls) == 3


@pytest.mark.parametrize("env_overrides", [{"ALLOWED_CALLER_NETWORKS": "10.0.0.0/8"}])
def test_with_tokens_and_networks_a_caller_needs_both(app, transport):
    client = anonymous_client(app)
    token = {"X-API-Token": API_TOKEN}
    assert call_from(client, "10.1.2.3", token).get_json()["status"] == "authorized"
    assert_refused(call_from(client, "10.1.2.3"))
    assert_refused(call_from(client, "192.0.2.1", token))


# -- what is logged --------------------------------------------------------------------------
@pytest.mark.parametrize("env_overrides", [{"API_TOKEN_IN_QUERY": "1"}])
def test_tokens_are_never_logged(app, transport, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("gurugrow"), "propagate", True)
    wrong = "wrong-token-should-not-be-logged"
    client = anonymous_client(app)
    with caplog.at_level(logging.DEBUG, logger="gurugrow"):
        for token in (API_TOKEN, wrong):
            send(client, "GET", "/auth/status", headers={"Authorization": f"Bearer {token}"})
            send(client, "POST", "/auth/unlink", "json", headers={"X-API-Token": token})
            send(client, "GET", "/orders", query={"token": token})
        send(client, "GET", "/auth/status")
    text = caplog.text
    assert "caller_refused reason=wrong_token endpoint=/auth/status" in text
    assert "caller_refused reason=no_token" in text
    refusals = {r.getMessage() for r in caplog.records if "caller_refused" in r.getMessage()}
    assert len(refusals) == 4  # one line per refused request
    # ... and only that one: every request, accepted or refused, logs one line of the two.
    lines = {r.getMessage() for r in caplog.records
             if r.getMessage().startswith(("request ", "caller_refused "))}
    request_ids = [line.rsplit("request_id=", 1)[1] for line in lines]
    assert len(request_ids) == len(set(request_ids)) == 7  # the seven requests above
    assert API_TOKEN not in text and wrong not in text
    assert API_TOKEN[:8] not in text and wrong[:8] not in text


# -- open on purpose, sandbox ------------------------------------------------------------------
def test_anonymous_callers_allowed_on_purpose_warn_at_start(transport, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("gurugrow"), "propagate", True)
    env = {**TEST_ENV, "API_TOKENS": "", "ALLOW_ANONYMOUS_CALLERS": "1"}
    with caplog.at_level(logging.WARNING, logger="gurugrow"):
        app = create_app(env, redis_client=fakeredis.FakeRedis())
    assert "anonymous_callers_allowed" in caplog.text
    response = send(anonymous_client(app), "GET", "/auth/status")
    assert response.get_json()["status"] == "authorized"


def _finds_ids(path: str) -> bool:
    """A sandbox route that answers 404 for ids it does not know."""
    return "/manager/" in path or path.endswith("/incoming-call")


def test_sandbox_without_tokens_needs_none(transport):
    app = create_app({"GURUGROW_SANDBOX": "1", "APP_PORT": "8123"},
                     redis_client=fakeredis.FakeRedis())
    client = anonymous_client(app)
    for method, path in sandbox_routes():
        response = send(client, method, path)
        assert response.status_code == (404 if _finds_ids(path) else 200), path
        assert response.get_json().get("errorCode") != "unauthorized"
    response = send(client, "GET", "/auth/status")
    # The stand-ins are not served in this test: the flow ran and found RetailCRM gone.
    assert (response.status_code, response.get_json()["errorCode"]) == (200, "crm_unavailable")
    assert [c.request.url.split("?")[0] for c in transport.calls] == [
        "http://127.0.0.1:8123/sandbox/retailcrm/api/v5/customers"]


# -- live-start refusals ----------------------------------------------------------------------
def env_example() -> dict[str, str]:
    text = (ROOT / ".env.example").read_text()
    return dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, re.M))


def test_a_live_start_with_no_caller_check_stops_naming_both():
    env = {k: v for k, v in TEST_ENV.items() if k != "API_TOKENS"}
    with pytest.raises(ConfigError) as refused:
        Settings.load(env)
    message = str(refused.value)
    assert "API_TOKENS" in message and "ALLOWED_CALLER_NETWORKS" in message
    assert "\n" not in message
    # Either setting, or running open on purpose, lets it start.
    Settings.load({**env, "ALLOWED_CALLER_NETWORKS": "10.0.0.0/8"})
    Settings.load({**env, "ALLOW_ANONYMOUS_CALLERS": "1"})
    Settings.load({**env, "API_TOKENS": API_TOKEN})


@pytest.mark.parametrize("name", sorted(ENV_EXAMPLE_PLACEHOLDERS))
def test_a_live_start_refuses_each_env_example_placeholder(name):
    value = env_example()[name]
    assert value == ENV_EXAMPLE_PLACEHOLDERS[name]  # the list follows the file
    with pytest.raises(ConfigError, match=f"^{name} is still the .env.example placeholder"):
        Settings.load({**TEST_ENV, name: value})


def test_every_placeholder_of_env_example_is_refused():
    """A value in .env.example that reads as an example is on the refused list."""
    looks_made_up = re.compile(r"example\.|replace-with|your-", re.I)
    made_up = {k for k, v in env_example().items() if looks_made_up.search(v)}
    assert made_up == set(ENV_EXAMPLE_PLACEHOLDERS)
    # .env.example copied as it is, with a token added, still does not start live.
    with pytest.raises(ConfigError, match="placeholder"):
        Settings.load({**env_example(), "API_TOKENS": API_TOKEN})


def test_a_live_start_needs_a_32_character_otp_secret():
    with pytest.raises(ConfigError, match="OTP_SECRET must be at least 32"):
        Settings.load({**TEST_ENV, "OTP_SECRET": "x" * 31})
    assert Settings.load({**TEST_ENV, "OTP_SECRET": "x" * 32}).otp_secret == "x" * 32
    # The sandbox keeps the general minimum of 16.
    assert Settings.load({"GURUGROW_SANDBOX": "1", "OTP_SECRET": "y" * 16}).sandbox


@pytest.mark.parametrize(("change", "named"), [
    ({"API_TOKENS": "short-token"}, "API_TOKENS"),
    ({"API_TOKENS": f"{API_TOKEN},short"}, "API_TOKENS"),
    ({"ALLOWED_CALLER_NETWORKS": "10.0.0.0/33"}, "ALLOWED_CALLER_NETWORKS"),
    ({"ALLOWED_CALLER_NETWORKS": "bot-platform"}, "ALLOWED_CALLER_NETWORKS"),
    ({"API_TOKEN_IN_QUERY": "sometimes"}, "API_TOKEN_IN_QUERY"),
    ({"ALLOW_ANONYMOUS_CALLERS": "maybe"}, "ALLOW_ANONYMOUS_CALLERS"),
])
def test_bad_caller_settings_name_the_variable(change, named):
    with pytest.raises(ConfigError, match=named):
        Settings.load({**TEST_ENV, **change})


def test_app_host_defaults_to_loopback(monkeypatch, tmp_path):
    assert Settings.load(TEST_ENV).app_host == "127.0.0.1"
    # gunicorn's bind too (gunicorn.conf.py reads the environment and ./.env).
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("APP_HOST", raising=False)
    monkeypatch.delenv("APP_PORT", raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("GURUGROW_METRICS_MASTER", "")
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"] == "127.0.0.1:8000"


# -- a sandbox never leaves the machine --------------------------------------------------------
REAL_LOOKING = {
    "RETAILCRM_BASE_URL": "https://shop.retailcrm.ru", "RETAILCRM_API_KEY": "real-crm-key-123",
    "GREENSMS_BASE_URL": "https://api3.greensms.ru", "GREENSMS_TOKEN": "real-sms-token-123",
    "GREENSMS_USER": "shop", "GREENSMS_PASS": "real-sms-pass-123",
    "DEDUPE_BASE_URL": "https://dedupe.shop.ru", "DEDUPE_API_KEY": "real-dedupe-key-123",
}


def test_a_sandbox_ignores_upstream_settings_and_says_so(transport, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("gurugrow"), "propagate", True)
    env = {"GURUGROW_SANDBOX": "1", "APP_PORT": "8123", **REAL_LOOKING}
    with caplog.at_level(logging.INFO, logger="gurugrow"):
        app = create_app(env, redis_client=fakeredis.FakeRedis())
    s = app.extensions["gurugrow"].settings
    base = "http://127.0.0.1:8123/sandbox"
    assert (s.retailcrm_base_url, s.greensms_base_url, s.dedupe_base_url) == (
        f"{base}/retailcrm", f"{base}/greensms", f"{base}/deduper")
    assert (s.greensms_user, s.greensms_pass) == ("", "")
    lines = {r.getMessage() for r in caplog.records
             if r.getMessage().startswith("sandbox_ignores_upstream_settings")}
    assert len(lines) == 1
    (line,) = lines
    for name in ("RETAILCRM_BASE_URL", "RETAILCRM_API_KEY", "GREENSMS_TOKEN", "GREENSMS_USER",
                 "GREENSMS_PASS", "DEDUPE_BASE_URL", "DEDUPE_API_KEY"):
        assert name in line
    for value in REAL_LOOKING.values():
        assert value not in caplog.text
    # A whole journey's calls go to the stand-ins' address only.
    client = app.test_client()
    client.get("/auth/status", query_string=TG)
    client.post("/auth/start", data={**TG, "phone": PHONE})
    assert transport.calls and all(c.request.url.startswith(base) for c in transport.calls)


def test_a_sandbox_without_upstream_settings_says_nothing_of_them(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("gurugrow"), "propagate", True)
    with caplog.at_level(logging.INFO, logger="gurugrow"):
        create_app({"GURUGROW_SANDBOX": "1"}, redis_client=fakeredis.FakeRedis())
    assert "sandbox_enabled" in caplog.text
    assert "sandbox_ignores_upstream_settings" not in caplog.text


# -- the API document ------------------------------------------------------------------------
@pytest.mark.parametrize("env_overrides", [{}, {"API_TOKEN_IN_QUERY": "1"}],
                         ids=["headers", "query-too"])
def test_document_declares_the_token_on_every_protected_operation(app, env_overrides):
    from openapi_schema_validator import OAS30Validator
    from openapi_spec_validator import validate

    spec = anonymous_client(app).get("/openapi.json").get_json()
    validate(spec)
    schemes = spec["components"]["securitySchemes"]
    expected = {"bearerToken", "headerToken"} | (
        {"queryToken"} if env_overrides else set())
    assert set(schemes) == expected
    assert schemes["headerToken"] == {**schemes["headerToken"], "in": "header",
                                      "name": "X-API-Token"}
    client = anonymous_client(app)
    protected = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path in OPEN_PATHS:
                assert "security" not in operation, path
                continue
            protected += 1
            assert operation["security"] == [{name: []} for name in schemes], path
            refused = send(client, method.upper(), path)
            OAS30Validator(operation["responses"]["401"]["content"]["application/json"][
                "schema"]).validate(refused.get_json())
    assert protected == 13


def test_env_example_copied_to_env_then_make_run_stays_on_the_machine(transport):
    """`cp .env.example .env && make run`: the sandbox starts, needs no token, and calls
    only its stand-ins, not the example RetailCRM host with the placeholder key."""
    env = {**env_example(), "GURUGROW_SANDBOX": "1", "APP_PORT": "8124"}
    app = create_app(env, redis_client=fakeredis.FakeRedis())
    response = send(anonymous_client(app), "GET", "/auth/status")
    assert response.status_code == 200
    urls = [c.request.url for c in transport.calls]
    assert urls and all(u.startswith("http://127.0.0.1:8124/sandbox/") for u in urls)
    placeholder = ENV_EXAMPLE_PLACEHOLDERS["RETAILCRM_API_KEY"]
    assert all(c.request.headers.get("X-API-KEY") != placeholder for c in transport.calls)
