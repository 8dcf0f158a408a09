"""Fixtures: ``app`` and ``client`` on fakeredis, upstreams mocked at the transport."""

from __future__ import annotations

import weakref

import fakeredis
import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from gurugrow import create_app
from gurugrow.api.contract import UNDOCUMENTED_ANSWERS
from gurugrow.sandbox import SANDBOX_DEDUPE_KEY, SANDBOX_GREENSMS_TOKEN, SANDBOX_RETAILCRM_KEY
from tests.upstreams import CRM, DEDUPE, SMS, Upstreams

# The caller token every test sends by default (see CallerClient below).
API_TOKEN = "test-caller-token-0123456789abcdef"
TOKEN_HEADER = "X-API-Token"

TEST_ENV = {
    "RETAILCRM_BASE_URL": CRM,
    "RETAILCRM_API_KEY": SANDBOX_RETAILCRM_KEY,
    "RETAILCRM_SITE": "test-site",
    "GREENSMS_BASE_URL": SMS,
    "GREENSMS_TOKEN": SANDBOX_GREENSMS_TOKEN,
    "GREENSMS_VK_FROM": "shop",  # GreenSMS requires a VK sender
    "DEDUPE_BASE_URL": DEDUPE,
    "DEDUPE_API_KEY": SANDBOX_DEDUPE_KEY,
    "OTP_SECRET": "test-pepper-0123456789-0123456789",
    "OTP_HASH_ITERATIONS": "1000",
    "RETAILCRM_MAX_RETRIES": "0",
    # The shared RetailCRM bucket stays in the path, paced too fast to slow the tests.
    "RETAILCRM_RATE_LIMIT": "10000",
    "GURUGROW_SANDBOX": "0",
    "API_TOKENS": API_TOKEN,
    "START_MIN_SECONDS": "0",  # the answer-time floor has tests of its own
    # A shop's own store and status for recommended-set orders (the defaults are
    # RETAILCRM_SITE and "new").
    "RECOMMENDED_ORDER_SITE": "1minoxidil-ru",
    "RECOMMENDED_ORDER_STATUS": "ruchnaia-obrabotka",
}


class CallerClient(FlaskClient):
    """A test client that sends the test caller token, as the bot platform would.

    Installed as every Flask app's test client, so a test that builds its own app with
    ``create_app(TEST_ENV)`` calls as the bot does without knowing about tokens. A test
    of refused callers uses ``anonymous_client(app)`` (or drops the header).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_X_API_TOKEN"] = API_TOKEN
        _strict_contract(self.application)


Flask.test_client_class = CallerClient


def anonymous_client(app) -> FlaskClient:
    """A test client sending no token at all."""
    _strict_contract(app)
    return FlaskClient(app, app.response_class, use_cookies=True)


# Every answer a test provokes must be one its endpoint declares (and so documents): each
# app a test calls collects the others (contract.UNDOCUMENTED_ANSWERS), checked after it.
_APPS_CALLED: weakref.WeakSet[Flask] = weakref.WeakSet()


def _strict_contract(app: Flask) -> None:
    app.extensions.setdefault(UNDOCUMENTED_ANSWERS, [])
    _APPS_CALLED.add(app)


@pytest.fixture(autouse=True)
def _answers_are_documented():
    for app in list(_APPS_CALLED):
        app.extensions[UNDOCUMENTED_ANSWERS].clear()
    yield
    undocumented = [a for app in list(_APPS_CALLED) for a in app.extensions[UNDOCUMENTED_ANSWERS]]
    assert undocumented == [], "answers missing from the endpoint's contract"


@pytest.fixture
def redis_client():
    return fakeredis.FakeRedis()


@pytest.fixture
def env_overrides() -> dict[str, str]:
    """Override in a test module to change settings."""
    return {}


@pytest.fixture
def app(redis_client, env_overrides):
    return create_app({**TEST_ENV, **env_overrides}, redis_client=redis_client)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def upstreams():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield Upstreams(rsps)


@pytest.fixture
def rsps():
    """Raw upstream answers mocked at the transport (every one registered must be called)."""
    with responses.RequestsMock() as mock:
        yield mock

