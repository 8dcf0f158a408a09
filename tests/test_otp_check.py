"""The one-round-trip check: it finds the caller's own session, salted by its id."""

from __future__ import annotations

import hashlib

import pytest

from gurugrow.stores import keys as redis_keys
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


def test_the_stored_hash_is_salted_by_the_session_id(app, redis_client, started):
    session_id, code = started
    key = redis_keys.otp_session(app.extensions["gurugrow"].settings.redis_prefix, session_id)
    stored = redis_client.hgetall(key)
    assert stored[b"salt"].decode() == session_id
    settings = app.extensions["gurugrow"].settings
    digest = hashlib.pbkdf2_hmac("sha256", code.encode(),
                                 session_id.encode() + settings.otp_secret.encode(),
                                 settings.otp_hash_iterations)
    assert stored[b"hash"].decode() == digest.hex()
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
