"""Every name a messenger allows: emoji sequences with joiners, flags, no-break spaces,
tabs, direction marks. Normalised, sent to RetailCRM as a person reads them; refused
only when nothing readable is left or too long, with an errorCode naming the field."""

from __future__ import annotations

import pytest

from tests.helpers import BODY_KINDS, TG, post

TG_FIELD = "bot_telegram_account_id"
NAMES = [
    # sent → as RetailCRM gets it
    ("👩\u200d👩\u200d👧 Мама", "👩\u200d👩\u200d👧 Мама"),
    ("🏳️\u200d🌈Alex", "🏳️\u200d🌈Alex"),
    ("Anna\u00a0Maria", "Anna Maria"),
    ("Иван\tПетров", "Иван Петров"),
    ("\u200fשרה\u200e  Cohen\n", "שרה Cohen"),
    ("🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f Scot", None),
    ("Zoe\u0301", "Zoé"),
]


@pytest.fixture
def catalog(upstreams):
    upstreams.add_bundle(31, "SET-MALE-BASIC")
    return upstreams


def call(client, action, kind="form", **fields):
    return post(client, f"/orders/recommended/{action}", {**TG, **fields}, kind)


@pytest.mark.parametrize(("sent", "read"), NAMES, ids=[f"name{i}" for i in range(len(NAMES))])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_messenger_name_creates_the_order_as_a_person_reads_it(client, catalog, kind, sent,
                                                                  read):
    read = read or sent  # a subdivision flag keeps its tags
    answer = call(client, "start", kind, offerCode="male_hairloss_basic", phone="79991234567",
                  firstName=sent, lastName=sent)
    assert answer["status"] == "sent", answer
    done = call(client, "check", kind, sessionId=answer["sessionId"],
                code=catalog.codes_sent()[0])
    assert done["status"] == "created", done
    [customer] = [c for c in catalog.customers.values() if c["customFields"].get(TG_FIELD)]
    [order] = catalog.created
    assert (customer["firstName"], customer["lastName"]) == (read, read)
    assert (order["firstName"], order["lastName"]) == (read, read)


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_the_authorized_create_takes_the_same_names(client, catalog, kind):
    catalog.add_customer(626518, "+79991234567", **{TG_FIELD: "123456789"})
    answer = call(client, "create", kind, offerCode="male_hairloss_basic",
                  firstName="👩\u200d👩\u200d👧 Мама", lastName="Anna\u00a0Maria")
    assert answer["status"] == "created", answer
    [order] = catalog.created
    assert (order["firstName"], order["lastName"]) == ("👩\u200d👩\u200d👧 Мама", "Anna Maria")


@pytest.mark.parametrize(("fields", "error_code"), [
    ({"firstName": "\u200b\u200f\u202e"}, "invalid_first_name"),
    ({"lastName": "\x00\x01"}, "invalid_last_name"),
    ({"firstName": "Я" * 101}, "invalid_first_name"),
    ({"lastName": "x " * 60}, "invalid_last_name"),
    ({"email": "\u200b"}, "invalid_email"),
], ids=["format-only", "controls-only", "first-too-long", "last-too-long", "email-empty"])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_only_an_empty_or_too_long_name_is_refused_naming_the_field(client, catalog, kind,
                                                                    fields, error_code):
    answer = call(client, "start", kind, offerCode="male_hairloss_basic", phone="79991234567",
                  **fields)
    assert (answer["status"], answer["errorCode"]) == ("error", error_code), answer
    assert answer["message"]
    assert catalog.sent == []


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_blank_names_are_absent_as_before(client, catalog, kind):
    answer = call(client, "start", kind, offerCode="male_hairloss_basic", phone="79991234567",
                  firstName="  ", lastName="")
    assert answer["status"] == "sent", answer


def test_no_name_can_forge_a_log_line(client, catalog, caplog):
    forged = "Eve\r\nINFO request method=POST path=/admin\u2028x\u0085y"
    answer = call(client, "start", "json", offerCode="male_hairloss_basic",
                  phone="79991234567", firstName=forged)
    assert answer["status"] == "sent", answer
    call(client, "check", "json", sessionId=answer["sessionId"], code=catalog.codes_sent()[0])
    [customer] = [c for c in catalog.customers.values() if c["customFields"].get(TG_FIELD)]
    assert customer["firstName"] == "Eve INFO request method=POST path=/admin x y"
    for record in caplog.records:
        assert not any(ch in record.getMessage() for ch in "\r\n\u2028\u0085")
