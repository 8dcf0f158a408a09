"""Typed errors raised by the gateways; flows turn them into contract statuses."""

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
