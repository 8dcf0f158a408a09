"""A POST body that is not what its Content-Type says answers invalid_request with a
message naming the two accepted types, on every POST endpoint; the log line says which
Content-Type came. A body that is what its type says is read as before."""

from __future__ import annotations

import json
import logging

import pytest

from gurugrow import texts
from tests.helpers import TG
from tests.test_openapi import contract_operations

BODY = {**TG, "phone": "79991234567", "sessionId": "s", "code": "123456"}
FORM = "&".join(f"{k}={v}" for k, v in BODY.items())
# (id, raw body, Content-Type sent, the mimetype the log line names)
UNREADABLE = [
    ("text-plain-form", FORM, "text/plain", "text/plain"),
    ("text-plain-words", "hello", "text/plain; charset=utf-8", "text/plain"),
    ("json-labelled-form", json.dumps(BODY), "application/x-www-form-urlencoded",
     "application/x-www-form-urlencoded"),
    ("json-array-labelled-form", json.dumps([BODY]), "application/x-www-form-urlencoded",
     "application/x-www-form-urlencoded"),
    ("text-labelled-form", "just some words", "application/x-www-form-urlencoded",
     "application/x-www-form-urlencoded"),
    ("form-labelled-json", FORM, "application/json", "application/json"),
    ("broken-json", '{"phone": "7999', "application/json", "application/json"),
    ("xml", "<phone>79991234567</phone>", "application/xml", "application/xml"),
    ("no-content-type", FORM, None, "(none)"),
    ("json-labelled-multipart", json.dumps(BODY), "multipart/form-data; boundary=zz",
     "multipart/form-data"),
]


def post_paths(app) -> list[str]:
    return sorted({path for method, path, _ in contract_operations(app) if method == "POST"})


def test_every_post_endpoint_is_covered(app):
    assert len(post_paths(app)) >= 8, post_paths(app)


@pytest.mark.parametrize(("body", "content_type", "logged"),
                         [pytest.param(*case[1:], id=case[0]) for case in UNREADABLE])
def test_a_body_that_is_not_its_content_type_is_invalid_request(
        app, client, upstreams, caplog, monkeypatch, body, content_type, logged):
    monkeypatch.setattr(logging.getLogger("gurugrow"), "propagate", True)
    for path in post_paths(app):
        caplog.clear()
        headers = {"Content-Type": content_type} if content_type else {}
        with caplog.at_level(logging.INFO, logger="gurugrow"):
            response = client.post(path, data=body.encode(), headers=headers)
        assert response.status_code == 200, path
        answer = response.get_json()
        assert (answer["status"], answer["errorCode"]) == ("error", "invalid_request"), path
        assert answer["message"] == texts.BODY_NOT_READ
        assert "application/x-www-form-urlencoded" in answer["message"]
        assert "application/json" in answer["message"]
        # (a set: caplog may hold a record twice, once per handler it passed)
        lines = sorted({r.getMessage() for r in caplog.records
                        if r.getMessage().startswith("request_invalid ")})
        assert len(lines) == 1, (path, lines)
        assert f"content_type={logged} " in lines[0], lines[0]
        assert f"endpoint={path} " in lines[0]
    assert upstreams.crm_calls() == [] and upstreams.sent == []


@pytest.mark.parametrize(("data", "content_type"), [
    (FORM, "application/x-www-form-urlencoded"),
    (FORM, "application/x-www-form-urlencoded; charset=utf-8"),
    (json.dumps(BODY), "application/json"),
    (json.dumps(BODY), "application/json; charset=utf-8"),
    (json.dumps(BODY), "application/vnd.bot+json"),
], ids=["form", "form-charset", "json", "json-charset", "json-suffix"])
def test_a_body_that_is_its_content_type_is_read(client, upstreams, data, content_type):
    upstreams.add_customer(5, "79991234567")
    response = client.post("/auth/start", data=data.encode(),
                           headers={"Content-Type": content_type})
    assert response.get_json()["status"] == "sent"
    assert len(upstreams.sent) == 1


def test_a_multipart_form_is_read_as_form(client, upstreams):
    upstreams.add_customer(5, "79991234567")
    response = client.post("/auth/start", data={**TG, "phone": "79991234567"},
                           content_type="multipart/form-data")
    assert response.get_json()["status"] == "sent"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json",
                                          "application/x-www-form-urlencoded"])
def test_an_empty_body_is_read_from_the_query(client, upstreams, content_type):
    """A bot that sends every field in the query and no body: any Content-Type will do."""
    upstreams.add_customer(5, "79991234567")
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/auth/start", query_string={**TG, "phone": "79991234567"},
                           headers=headers)
    assert response.get_json()["status"] == "sent"
