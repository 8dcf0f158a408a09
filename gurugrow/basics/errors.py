"""Every error type of gurugrow, with who raises it and who catches it.

Imports nothing of ours, so every layer above ``config.py`` may raise these.
``ConfigError`` (with its ``ConfigProblem`` lines) stays in ``config.py``: the
configuration layer depends on nothing of ours, this module included. A flow refuses
with ``FlowRefusal``; any other error passes through the flows untouched, unless
catching it changes the answer or the step is best effort. The contract wrapper
(``api/contract.py`` ``_run``) turns whatever reaches it into the envelope; the workers
and the doctor catch their own.

    Exception
    ├── ConfigError          (in config.py) raised by config (Settings.load; cli builds
    │                        one to print); caught by wsgi.py, gunicorn.conf.py (the
    │                        start refused, one line per ConfigProblem),
    │                        Settings.load_lenient (the default instead)
    ├── UpstreamError        never raised itself; caught by api/contract
    │   │                    (crm_unavailable), flows/codes (dedupe_failed; the next
    │   │                    route), flows/delivery (status unknown), flows/binding
    │   │                    (best-effort mark), flows/recommended (lookup of a lost
    │   │                    create), mirror_worker (crm_failed), doctor
    │   ├── UpstreamUnavailable        raised by gateways/http, retailcrm, greensms,
    │   │   │                          deduper; caught by flows/orders and
    │   │   │                          flows/recommended (a create that may have landed)
    │   │   ├── UpstreamConnectionDropped  raised by gateways/http; caught there (a
    │   │   │                          call safe to repeat is sent again)
    │   │   ├── DeadlineExceeded       raised by gateways/http (the request's answer
    │   │   │                          deadline); caught by api/contract (a write:
    │   │   │                          in_progress)
    │   │   └── SendOutcomeUnknown     raised by gateways/greensms (a send that may
    │   │                              have left); caught by flows/codes (counted as sent)
    │   └── UpstreamRejected           raised by gateways/retailcrm, greensms, deduper;
    │       │                          caught by flows/orders, flows/recommended, doctor
    │       └── NotFound               raised by gateways/retailcrm (HTTP 404); caught
    │                                  there (an order: None), flows/orders, doctor
    ├── CrmBusy              raised by governor (no slot in time); caught by
    │                        api/contract (busy + retryAfterSec), flows/binding
    │                        (best-effort mark), mirror_worker (crm_failed)
    ├── StorageUnavailable   raised by storage (redis_guard, so every store; a
    │                        WriteBatch hands it to on_failure); caught by api/contract
    │                        (storage_unavailable), flows/codes, flows/delivery,
    │                        flows/mirror, governor (best effort), api/ops,
    │                        deliveries_worker, mirror_worker, doctor
    ├── InProgress           raised by stores.once.run_once (the same operation still runs
    │                        elsewhere); caught by api/contract (in_progress)
    ├── LimitExceeded        raised by limits (region, admission); caught by
    │                        flows/codes.refused_by_limits (its FlowRefusal)
    ├── FlowRefusal          raised by flows; caught by api/contract (status +
    │   │                    errorCode), flows/codes.check_code (burn or release, then
    │   │                    re-raised), flows/auto_fallback (the fallback closed)
    │   └── DeliveryMaybeMade  raised by flows/codes (no route took the code, one may
    │                        have); caught as FlowRefusal, but keeps the admission
    ├── LeaseLost            raised by flows/mirror_sync (another poller holds the
    │                        lease); caught by mirror_worker (lease_lost)
    └── ValueError
        ├── BodyNotAnObject  raised by api/bodies.json_object; caught by
        │                    api/bodies.body_values (its UnreadableBody)
        └── UnreadableBody   raised by api/bodies.body_values; caught by api/contract
                             (invalid_request)
"""

from __future__ import annotations


class UpstreamError(Exception):
    """Base class: an upstream call did not give a usable answer; ``status_code`` is the
    HTTP status when there was one."""

    def __init__(self, gateway: str, message: str, status_code: int | None = None) -> None:
        super().__init__(f"{gateway}: {message}")
        self.gateway = gateway
        self.message = message
        self.status_code = status_code


class UpstreamUnavailable(UpstreamError):
    """Timeout, connection error, 5xx/429, or a body that is not the expected JSON.

    Transient: the same request may succeed later.
    """


class UpstreamConnectionDropped(UpstreamUnavailable):
    """The connection was closed under the call, without an answer (a reset, or a pooled
    keep-alive connection the server had just closed; not a refused or unresolvable
    one): a call safe to repeat is sent again."""


class DeadlineExceeded(UpstreamUnavailable):
    """The request's answer deadline (BOT_ANSWER_SECONDS) cut the call short, or left no
    time to make it (then nothing was sent: no ``__cause__``). A write answers
    ``in_progress``: the bot repeats it, and the repeat answers from what was made."""


class SendOutcomeUnknown(UpstreamUnavailable):
    """A paid send that may have reached the upstream (a read timeout, a connection
    dropped after the request was written, a 5xx, an unreadable answer): it may still be
    delivered, so it counts as sent. Only a send that certainly never left is a failure."""


class UpstreamRejected(UpstreamError):
    """The upstream understood the request and refused it (4xx, success=false, error)."""

    def __init__(self, gateway: str, message: str, status_code: int | None = None,
                 errors: object = None) -> None:
        super().__init__(gateway, message, status_code)
        self.errors = errors


class NotFound(UpstreamRejected):
    """The requested entity does not exist (HTTP 404)."""


class CrmBusy(Exception):
    """No RetailCRM slot within ``RETAILCRM_QUEUE_SECONDS``: nothing was sent. Answered as
    ``errorCode=busy`` with ``retryAfterSec`` (deliberately no UpstreamError, so flows do
    not turn it into ``crm_unavailable``)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retailcrm: no slot, retry after {retry_after} s")
        self.retry_after = retry_after


class StorageUnavailable(Exception):
    """Redis cannot be reached or answered with an error."""


class InProgress(Exception):
    """The same operation is still running in another request."""


class LimitExceeded(Exception):
    """A limit refuses the request; ``kind`` names it, ``retry_after`` when known."""

    def __init__(self, kind: str, error_code: str, retry_after: int | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.error_code = error_code
        self.retry_after = retry_after


class FlowRefusal(Exception):
    """A contract outcome other than success: answered as ``status`` + ``errorCode``."""

    def __init__(self, error_code: str, status: str = "error", **fields: object) -> None:
        super().__init__(error_code)
        self.error_code = error_code
        self.status = status
        self.fields = fields


class DeliveryMaybeMade(FlowRefusal):
    """``delivery_failed`` after a send that may have reached GreenSMS (its outcome is
    unknown, but its code was in the answer that did not come): the admission is kept."""

    def __init__(self) -> None:
        super().__init__("delivery_failed")


class LeaseLost(Exception):
    """Another poller holds the mirror's lease now (or Redis lost it): stop writing."""


class BodyNotAnObject(ValueError):
    """The JSON body is malformed, nested too deeply, or not an object."""


class UnreadableBody(ValueError):
    """A body that is neither valid form nor valid JSON for its Content-Type."""
