"""The request-scoped state, in one place: every context variable of the service but the
log lines' request id (``logs.py``). Each is set for one request by the module named
beside it, and read where that module's docstring says; outside a request each holds its
default."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

# True while serving a request whose caller proved one of API_TOKENS (set by
# ``api.callers``): the send limits leave such a caller's address uncapped unless
# OTP_MAX_SENDS_PER_IP_PER_HOUR_TOKEN_CALLERS sets a cap.
CALLER_BY_TOKEN: ContextVar[bool] = ContextVar("caller_by_token", default=False)

# The monotonic time the request must have answered by, less the answer's own reserve
# (``basics.deadline.answer_deadline``).
ANSWER_BY: ContextVar[float | None] = ContextVar("answer_deadline", default=None)

# The code length the fields check while a request is loaded, and the other lengths the
# workflows' routes give codes (``api.fields.request_settings``).
OTP_LENGTH: ContextVar[int | None] = ContextVar("otp_length", default=None)
CODE_LENGTHS: ContextVar[tuple[int, ...]] = ContextVar("code_lengths", default=())

# The RetailCRM calls' priority (``governor.crm_priority``); calls made outside a
# contract request (the doctor, workers) are not a read wave: None reads as journey.
CRM_PRIORITY: ContextVar[str | None] = ContextVar("crm_priority", default=None)
# When the request's first CRM call began to wait, so all of a request's calls together
# wait at most RETAILCRM_QUEUE_SECONDS (outside one: each call on its own).
CRM_REQUEST_DEADLINE: ContextVar[list[float] | None] = ContextVar("crm_deadline",
                                                                  default=None)
# Slots taken ahead (``governor.SlotAhead``) in the round trip of another Redis step
# (``SlotRider``), for the request's next RetailCRM calls; None outside a request.
CRM_SLOTS_AHEAD: ContextVar[list[Any] | None] = ContextVar("crm_ahead", default=None)
# The monotonic time the request's slot waits must end by (its answer budget less
# ``governor.ANSWER_RESERVE_SECONDS``); None: only RETAILCRM_QUEUE_SECONDS bounds them.
CRM_ANSWER_BY: ContextVar[float | None] = ContextVar("crm_answer_by", default=None)
# The waiting-room place the request's CRM calls hold (``governor.WaitingRoom``): how
# many of its calls wait in it now. Its parallel reads (``basics.parallel``) share one
# place, as the request occupies one thread. None outside a request.
CRM_PLACE: ContextVar[list[int] | None] = ContextVar("crm_place", default=None)
