"""Creating an order once: a repeated identical request within ORDER_IDEMPOTENCY_SECONDS
gets the first answer back, and a crashed attempt's successor resumes from its notes.

Shared by /orders/repeat and the recommended-set endpoints.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import cast

from gurugrow.flows.vocabulary import Answer
from gurugrow.services import Services
from gurugrow.stores.client import PipelineRider, WriteBatch
from gurugrow.stores.once import Lease


def request_token(*parts: str) -> str:
    """A short stable token for the parts that make two requests the same order."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def create_once(svc: Services, kind: str, token: str, create: Callable[[Lease], Answer], *,
                kept_status: str = "created", window: int | None = None,
                batch: WriteBatch | None = None, rider: PipelineRider | None = None
                ) -> Answer:
    """``create(lease)``'s answer, run once per ``kind`` and ``token`` within ``window`` seconds."""
    # ``window``: default ORDER_IDEMPOTENCY_SECONDS. Only an answer with ``kept_status``
    # is kept for repeats (a failure may be tried again). ``rider`` rides the claim's round
    # trip; with ``batch``, the answer is kept (and the lease freed) when it is sent.
    # The store keeps the answer as JSON; a repeat reads back what ``create`` answered.
    return cast(Answer, svc.caches.run_once(
        kind, token, window or svc.settings.order_idempotency_seconds,
        lambda lease: dict(create(lease)), keep=lambda result: result["status"] == kept_status,
        lease_seconds=svc.settings.in_progress_lease_seconds,
        rider=rider, batch=batch))


def forget_once(svc: Services, kind: str, token: str) -> None:
    """Drop the kept answer of ``kind`` and ``token``: the next request runs it again."""
    svc.caches.forget_once(kind, token)
