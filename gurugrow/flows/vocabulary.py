"""What every flow shares: the answer type and the caller's identity.

A flow returns an ``Answer`` (the fields of the endpoint's envelope) or raises
``FlowRefusal`` (``gurugrow.basics.errors``); the API layer renders either. Flows import these
from here and from ``gurugrow.basics.errors``, never from one another.
"""

from __future__ import annotations

from typing import Any

from gurugrow.basics.identity import MessengerIdentity, identity_for
from gurugrow.services import Services

Answer = dict[str, Any]


def identity_of(svc: Services, data: dict[str, Any]) -> MessengerIdentity:
    """The messenger identity of a parsed request (its ``channel`` and ``accountId``)."""
    return identity_for(data["channel"], data["accountId"], svc.settings)
