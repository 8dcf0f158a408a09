"""The one-round-trip check: it finds the caller's own session, salted by its id, and a
session stored before that (its own random salt) still checks."""

from __future__ import annotations

import hashlib
import secrets

import pytest

from gurugrow import redis_keys
from tests.helpers import BODY_KINDS, TG, post

PHONE = "79991234567"
OTHER = {**TG, "messengerUserId": "987654321"}


def start(client, identity=TG):
    return post(client, "/auth/start", {**identity, "phone": PHONE})["sessionId"]


def check(client, session_id, code, identity=TG, kind="form"):
    return post(client, "/auth/check", {**identity, "sessionId": session_id, "code": code},
                kind)


@pytest.fixture
def started(client, upstreams):
    """A known customer's session (its id) and the code sent for it."""
    upstreams.add_customer(7, PHONE)
    return start(client), upstreams.codes_sent()[-1]


def store_with_old_salt(app, redis_client, session_id: str, code: str) -> None:
    """Rewrite a session as sessions were stored before: a random salt of its own."""
    salt = secrets.token_hex(16)
    pepper = app.extensions["gurugrow"].settings.otp_secret.encode()
    digest = hashlib.pbkdf2_hmac("sha256", code.encode(), salt.encode() + pepper,
                                 app.extensions["gurugrow"].settings.otp_hash_iterations)
    key = redis_keys.otp_session(app.extensions["gurugrow"].settings.redis_prefix, session_id)
    redis_client.hset(key, mapping={"salt": salt, "hash": digest.hex()})


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_session_stored_with_its_own_salt_still_checks(app, client, redis_client,
                                                        started, kind):
    session_id, code = started
    store_with_old_salt(app, redis_client, session_id, code)
    wrong = f"{(int(code) + 1) % 10**len(code):0{len(code)}d}"
    assert check(client, session_id, wrong, kind=kind)["status"] == "invalid_code"
    assert check(client, session_id, code, kind=kind)["status"] == "authorized"


def test_the_stored_hash_is_salted_by_the_session_id(app, redis_client, started):
    session_id, code = started
    key = redis_keys.otp_session(app.extensions["gurugrow"].settings.redis_prefix, session_id)
    stored = redis_client.hgetall(key)
    assert stored[b"salt"].decode() == session_id
    assert code.encode() not in b"".join(stored.values())


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_another_accounts_session_is_not_found_and_costs_no_guess(app, client, redis_client,
                                                                 started, kind):
    session_id, code = started
    for _ in range(8):  # more than OTP_MAX_ATTEMPTS and the identity's failure cap
        answer = check(client, session_id, "000000", identity=OTHER, kind=kind)
        assert (answer["status"], answer["errorCode"]) == ("error", "session_not_found")
    prefix = app.extensions["gurugrow"].settings.redis_prefix
    assert not redis_client.exists(redis_keys.identity_failures(
        prefix, "telegram", OTHER["messengerUserId"]))
    assert check(client, session_id, code, kind=kind)["status"] == "authorized"


def test_a_recommended_session_is_not_found_by_the_auth_check(client, upstreams):
    upstreams.add_bundle(31, "SET-MALE-BASIC")
    session_id = post(client, "/orders/recommended/start", {
        **TG, "offerCode": "male_hairloss_basic", "firstName": "Мария",
        "lastName": "Петрова", "phone": PHONE})["sessionId"]
    answer = check(client, session_id, upstreams.codes_sent()[-1])
    assert (answer["status"], answer["errorCode"]) == ("error", "session_not_found")
