"""Replays the /docs examples (gurugrow/api/examples.json) through the test client against
the sandbox stand-ins loaded with the demo data: each example in a fresh world (the
test's own app, fakeredis and stand-ins), its ``setup`` steps first, then its request."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import set_clock
from tests.upstreams import Upstreams

# Values that differ from run to run (ids and numbers made up on the spot, times): the
# replay checks that they are there and of the documented kind, not their value.
VOLATILE = ("sessionId", "verifiedUntil", "newOrderId", "newOrderNumber", "orderId",
            "orderNumber", "retryAfterSec")
# The sandbox's site (the demo orders and sets live there).
EXAMPLE_ENV = {"RETAILCRM_SITE": "1minoxidil-ru"}


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
        store = self.app.extensions["gurugrow"].redis
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
        return self.call(method, path, self.fill(example["request"]), kind)
