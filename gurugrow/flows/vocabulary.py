"""What every flow shares: the answer type and the caller's identity.

A flow returns an ``Answer`` (the fields of the endpoint's envelope) or raises
``FlowRefusal`` (``gurugrow.basics.errors``); the API layer renders either. Flows import these
from here and from ``gurugrow.basics.errors``, never from one another.
"""

from __future__ import annotations

from gurugrow.basics.identity import MessengerIdentity, identity_for
from gurugrow.basics.json_types import JsonObject
from gurugrow.flows.requests import IdentityRequest
from gurugrow.services import Services

Answer = JsonObject


def identity_of(svc: Services, request: IdentityRequest) -> MessengerIdentity:
    """The messenger identity of a request (its ``channel`` and ``account_id``)."""
    return identity_for(request.channel, request.account_id, svc.settings)
