"""Creating an order once: a repeated identical request within ORDER_IDEMPOTENCY_SECONDS
gets the first answer back, and a crashed attempt's successor resumes from its notes.

Shared by /orders/repeat and the recommended-set endpoints.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from gurugrow import redis_keys
from gurugrow.flows.vocabulary import Answer
from gurugrow.services import Services
from gurugrow.storage import Lease, run_once


def request_token(*parts: str) -> str:
    """A short stable token for the parts that make two requests the same order."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def create_once(svc: Services, kind: str, token: str, create: Callable[[Lease], Answer]
                ) -> Answer:
    """``create(lease)``'s answer, run once per ``kind`` and ``token``; only an answer
    with ``status=created`` is kept for repeats (a failure may be tried again)."""
    prefix = svc.settings.redis_prefix
    return run_once(svc.redis, redis_keys.operation_once(prefix, kind, token),
                    redis_keys.operation_lease(prefix, kind, token),
                    svc.settings.order_idempotency_seconds, create,
                    keep=lambda result: result["status"] == "created",
                    lease_seconds=svc.settings.in_progress_lease_seconds)
