"""Replays the /docs examples (gurugrow/api/examples.json) through the test client against
the sandbox stand-ins loaded with the demo data: each example in a fresh world (the
test's own app, fakeredis and stand-ins), its ``setup`` steps first, then its request.

``python -m tests.examples_replay`` rewrites every example's answer from a replay: for
when an answer changes on purpose (a new field, a new text); review the diff.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import fakeredis
import responses
from flask import Flask
from flask.testing import FlaskClient

from gurugrow import create_app
from gurugrow.api.openapi import PATH_PARAMETER
from gurugrow.sandbox.data import demo_data
from tests.conftest import TEST_ENV
from tests.helpers import redis_of, set_clock
from tests.upstreams import Upstreams

# Values that differ from run to run (ids and numbers made up on the spot, times): the
# replay checks that they are there and of the documented kind, not their value.
VOLATILE = ("sessionId", "verifiedUntil", "newOrderId", "newOrderNumber", "orderId",
            "orderNumber", "retryAfterSec")
# The sandbox's site (the demo orders and sets live there) and its trusted contact channels.
EXAMPLE_ENV = {"RETAILCRM_SITE": "1minoxidil-ru", "CONTACT_VERIFIED_CHANNELS": "telegram,max",
               # The incoming-call examples: a workflow that allows it.
               "DELIVERY_ROUTES_TELEGRAM": "telegram,sms,incoming_call"}


class Replay:
    """One example's world: the app of the test and the stand-ins with the demo data."""

    def __init__(self, app: Flask, client: FlaskClient, upstreams: Upstreams) -> None:
        self.app, self.client, self.upstreams = app, client, upstreams
        self.session_id: str | None = None
        self.now: float | None = None

    def call(self, method: str, path: str, data: dict[str, Any], kind: str = "form"
             ) -> tuple[int, dict[str, Any]]:
        if method == "GET":
            response = self.client.get(path, query_string=data)
        elif kind == "json":
            response = self.client.post(path, json=data)
        else:
            response = self.client.post(path, data=data)
        answer = response.get_json()
        if isinstance(answer, dict) and answer.get("sessionId"):
            self.session_id = answer["sessionId"]
        return response.status_code, answer

    def last_code(self) -> str:
        return self.upstreams.state.outbox[0]["code"]

    def step(self, step: list[Any]) -> None:
        """One setup step: ``["post", path, fields]``, ``["bind", customerId, field,
        value]`` (a binding written in RetailCRM directly) or ``["later", seconds]``."""
        kind, *args = step
        if kind == "post":
            path, fields = args
            self.call("POST", path, self.fill(fields))
        elif kind == "bind":
            customer_id, field, value = args
            customer = self.upstreams.state.customers[str(customer_id)]
            custom = customer["customFields"] if isinstance(customer["customFields"], dict) else {}
            customer["customFields"] = {**custom, field: value}
        elif kind == "later":
            self.move_clock(float(args[0]))
        else:
            raise ValueError(f"unknown example step {kind}")

    def move_clock(self, seconds: float) -> None:
        """``seconds`` pass for the app, and Redis keys that would expire meanwhile go."""
        self.now = (self.now or time.time()) + seconds
        set_clock(self.app, self.now)
        store = redis_of(self.app)
        for key in list(store.scan_iter()):
            if 0 < store.pttl(key) <= seconds * 1000:
                store.delete(key)

    def fill(self, fields: dict[str, Any]) -> dict[str, Any]:
        """``{sessionId}`` and ``{code}`` replaced by the last session and code sent."""
        placeholders = {"{sessionId}": lambda: self.session_id, "{code}": self.last_code}
        return {name: placeholders[value]() if value in placeholders else value
                for name, value in fields.items()}

    def run(self, method: str, path: str, example: dict[str, Any], kind: str
            ) -> tuple[int, dict[str, Any]]:
        """The HTTP status and answer the example's request gets after its setup."""
        for step in example.get("setup", []):
            self.step(step)
        fields = self.fill(example["request"])
        # A path parameter (/orders/<int:orderId>) comes from the example's request.
        url = PATH_PARAMETER.sub(lambda m: str(fields.pop(m.group(1))), path)
        return self.call(method, url, fields, kind)


def same_apart_from_volatile(real: dict[str, Any], documented: dict[str, Any]
                             ) -> dict[str, Any]:
    """``real`` with its made-up values (ids, numbers, times) replaced by the documented
    ones, in their own fields and wherever a text repeats them."""
    swaps = {str(real[name]): str(documented[name]) for name in VOLATILE
             if real.get(name) is not None and documented.get(name) is not None}
    result = {}
    for name, value in real.items():
        if name in VOLATILE and value is not None and documented.get(name) is not None:
            assert type(value) is type(documented[name]), name
            result[name] = documented[name]
        elif isinstance(value, str):
            result[name] = value
            for made_up, shown in swaps.items():
                result[name] = result[name].replace(made_up, shown)
        else:
            result[name] = value
    return result


EXAMPLES_FILE = Path(__file__).resolve().parents[1] / "gurugrow" / "api" / "examples.json"


def rewrite_answers(path: Path = EXAMPLES_FILE) -> int:
    """Replay every example (JSON body) in a fresh world and store the answer it gets."""
    data = json.loads(path.read_text("utf-8"))
    count = 0
    for key, cases in data.items():
        method, route = key.split(" ", 1)
        for case in cases:
            with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
                upstreams = Upstreams(rsps, demo_data())
                app = create_app({**TEST_ENV, **EXAMPLE_ENV}, redis_client=fakeredis.FakeRedis())
                _, answer = Replay(app, app.test_client(), upstreams).run(
                    method, route, case, "json")
            # Made-up values keep their documented form, so the diff shows real changes.
            case["answer"] = same_apart_from_volatile(answer, case["answer"])
            count += 1
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", "utf-8")
    return count


if __name__ == "__main__":
    print(f"{rewrite_answers()} example answers rewritten in {EXAMPLES_FILE}")
