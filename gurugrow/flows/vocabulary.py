"""What every flow shares: the answer type, the refusal, and the caller's identity.

A flow returns an ``Answer`` (the fields of the endpoint's envelope) or raises
``FlowRefusal``; the API layer renders either. Flows import these from here, never from
one another.
"""

from __future__ import annotations

from typing import Any

from gurugrow.identity import MessengerIdentity, identity_for
from gurugrow.services import Services

Answer = dict[str, Any]


class FlowRefusal(Exception):
    """A contract outcome other than success: answered as ``status`` + ``errorCode``."""

    def __init__(self, error_code: str, status: str = "error", **fields: object) -> None:
        super().__init__(error_code)
        self.error_code = error_code
        self.status = status
        self.fields = fields


def identity_of(svc: Services, data: dict[str, Any]) -> MessengerIdentity:
    """The messenger identity of a parsed request (its ``channel`` and ``accountId``)."""
    return identity_for(data["channel"], data["accountId"], svc.settings)
