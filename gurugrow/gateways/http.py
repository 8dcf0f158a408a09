"""The one way gateways talk HTTP: a Session, a timeout on every call, typed errors."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from urllib.parse import urlencode

import requests
from urllib3.exceptions import ProtocolError

from gurugrow import metrics
from gurugrow.basics.deadline import time_left
from gurugrow.basics.errors import (
    DeadlineExceeded,
    UpstreamConnectionDropped,
    UpstreamUnavailable,
)
from gurugrow.basics.json_types import JsonValue
from gurugrow.gateways.breaker import OPEN, CircuitBreaker
from gurugrow.governor import CrmQuota
from gurugrow.logs import current_request_id

USER_AGENT = "gurugrow/1.0"
RETRYABLE_STATUSES = frozenset({429, 503})
# Without a shared bucket (a standalone gateway): the backoffs of all retries together
# must outlast one second even at the lowest jitter, or a retry lands in the same window.
BACKOFF_BASE_SECONDS = 0.3
# A call with less than this left of the request's answer deadline is not made.
MIN_CALL_SECONDS = 0.05
# A Retry-After beyond this is not believed (a misconfigured proxy must not stop us long).
MAX_RETRY_AFTER_SECONDS = 60.0


def retry_after_seconds(response: requests.Response) -> float | None:
    """The answer's Retry-After in seconds (the delta form), or None."""
    raw = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS) if seconds > 0 else None


def make_session(trust_env: bool = False) -> requests.Session:
    """A Session with the project's User-Agent (connection pooling per gateway)."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    # ``trust_env`` off by default: requests would otherwise scan the environment for
    # proxies and read ~/.netrc on every call, the costliest step of a local request.
    session.trust_env = trust_env
    return session


class HttpClient:
    """Sends requests for one gateway and translates failures into typed errors."""

    def __init__(self, gateway: str, base_url: str, *, timeout: float, connect_timeout: float,
                 session: requests.Session | None = None, max_retries: int = 0,
                 sleep: Callable[[float], None] = time.sleep, quota: CrmQuota | None = None,
                 breaker: CircuitBreaker | None = None,
                 throttle_pause_seconds: float = 1.0) -> None:
        self.gateway = gateway
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, timeout)
        self.session = session or make_session()
        self.max_retries = max_retries
        self._sleep = sleep
        # With a ``quota`` every attempt first takes a slot from the shared bucket, and a
        # 429/503 slows the bucket for everybody instead of this worker retrying on its own.
        self.quota = quota
        self.breaker = breaker  # with a ``breaker`` a dead upstream fails fast
        self.throttle_pause_seconds = throttle_pause_seconds

    def request(self, method: str, path: str, *, retry: bool = False,
                retry_throttled: bool = False, route: str | None = None,
                priority: str | None = None, **kwargs: JsonValue) -> tuple[int, JsonValue]:
        """Send, return (HTTP status, parsed JSON)."""
        # ``route`` is the path's template (``/api/v5/orders/{id}``), the metrics' label;
        # a path built from any value must pass one (without, the path is the label).
        # ``priority``: the slot's, when not the request's (``governor.current_priority``).
        # ``retry`` only for calls safe to repeat: after a 429/503 or a dropped connection
        # they are sent again, up to ``max_retries`` times, each time through the bucket
        # (and the breaker) and within the first attempt's queue deadline. A timeout is not
        # repeated: the upstream is slow, and a repeat would only hold the caller longer.
        # ``retry_throttled`` (a write the quota refused, so not applied): sent again once
        # after a 429/503 only, the same way; never after a dropped connection, a timeout
        # or any other 5xx.
        attempts = 1 + (self.max_retries if retry else 1 if retry_throttled else 0)
        deadline = self.quota.deadline() if self.quota else None
        for attempt in range(attempts):
            try:
                response = self._governed_send(method, path, route or path, deadline,
                                               priority, **kwargs)
            except UpstreamConnectionDropped:
                if retry and attempt + 1 < attempts:
                    continue
                raise
            if response.status_code in RETRYABLE_STATUSES:
                self._throttled(response, attempt)
                if attempt + 1 < attempts:
                    continue
            return response.status_code, self._json(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _throttled(self, response: requests.Response, attempt: int) -> None:
        """The upstream is over its quota: everybody waits (Retry-After when given)."""
        pause = retry_after_seconds(response) or self.throttle_pause_seconds
        if self.quota is not None:
            metrics.CRM_THROTTLED.labels(str(response.status_code)).inc()
            self.quota.slow_down(pause)
        else:  # no shared bucket (a standalone gateway): back off here
            self._sleep(min(BACKOFF_BASE_SECONDS * 2 ** attempt, 2.0)
                        * (0.5 + random.random()))

    def _governed_send(self, method: str, path: str, route: str, deadline: float | None,
                       priority: str | None = None, **kwargs: JsonValue) -> requests.Response:
        breaker = self.breaker
        if breaker is not None and breaker.state == OPEN:  # before waiting for a slot
            raise UpstreamUnavailable(self.gateway, f"{method} {route}: circuit breaker open")
        if self.quota is not None:
            self.quota.acquire(deadline, priority)
        if breaker is None:
            return self._send(method, path, route, **kwargs)
        if not breaker.allow():
            raise UpstreamUnavailable(self.gateway, f"{method} {route}: circuit breaker open")
        try:
            response = self._send(method, path, route, **kwargs)
        except DeadlineExceeded as e:
            # Not made for want of time (no cause) says nothing of the upstream.
            breaker.failed() if e.__cause__ is not None else breaker.abandoned()
            raise
        except UpstreamUnavailable:
            breaker.failed()
            raise
        except BaseException:
            breaker.abandoned()
            raise
        if response.status_code == 503:
            # The quota's answer, not a broken CRM: it neither counts as a failure nor
            # clears the failures before it (timeouts mixed with 503s still open it).
            breaker.abandoned()
        elif response.status_code >= 500:
            breaker.failed()
        else:
            breaker.succeeded()
        return response

    def _send(self, method: str, path: str, route: str, **kwargs: JsonValue) -> requests.Response:
        # The caller's request id travels upstream, so one journey can be traced across logs.
        headers = {"X-Request-ID": current_request_id(), **kwargs.pop("headers", {})}
        # Encoded here: given a dict or a list, requests runs typing-Protocol isinstance
        # checks that cost more CPU than the rest of a request's preparation.
        if kwargs.get("params"):
            kwargs["params"] = urlencode(kwargs["params"], doseq=True)
        if isinstance(kwargs.get("data"), dict | list):
            kwargs["data"] = urlencode(kwargs["data"], doseq=True)
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        call = metrics.upstream_call_name(method, route)
        timeout, cut = self._timeout_now(method, route)
        started = time.perf_counter()
        outcome = "unreachable"
        try:
            response = self._transmit(method, self.base_url + path, headers, timeout,
                                      **kwargs)
            outcome = metrics.upstream_outcome(response.status_code)
            return response
        except requests.Timeout as e:
            outcome = "timeout"
            error = DeadlineExceeded if cut else UpstreamUnavailable
            raise error(self.gateway, f"{method} {path}: timeout") from e
        except requests.ConnectionError as e:
            # Raised with urllib3's ProtocolError when an open connection was closed
            # under the call; a refused or unresolvable one comes as MaxRetryError.
            dropped = bool(e.args) and isinstance(e.args[0], ProtocolError)
            error = UpstreamConnectionDropped if dropped else UpstreamUnavailable
            raise error(self.gateway, f"{method} {path}: {type(e).__name__}") from e
        except requests.RequestException as e:
            raise UpstreamUnavailable(self.gateway,
                                      f"{method} {path}: {type(e).__name__}") from e
        finally:
            metrics.UPSTREAM_CALLS.labels(self.gateway, call, outcome).inc()
            metrics.UPSTREAM_SECONDS.labels(self.gateway, call).observe(
                time.perf_counter() - started)

    def _timeout_now(self, method: str, route: str) -> tuple[tuple[float, float], bool]:
        """(connect, read) timeouts of a call starting now: the settings, cut to what is
        left of the request's answer deadline; and whether it was cut. With no time left
        the call is not made (``DeadlineExceeded``, nothing sent)."""
        left = time_left()
        connect, read = self.timeout
        if left is None or left >= max(connect, read):
            return self.timeout, False
        if left < MIN_CALL_SECONDS:
            raise DeadlineExceeded(self.gateway, f"{method} {route}: no time left to call")
        return (min(connect, left), min(read, left)), True

    def _transmit(self, method: str, url: str, headers: dict[str, str],
                  timeout: tuple[float, float] | None = None, *,
                  params: str | None = None, data: JsonValue = None,
                  json: JsonValue = None) -> requests.Response:
        """One exchange through the Session's connection pool, body read.

        The Session's per-call machinery (merging settings, cookies, hooks, redirects)
        costs as much CPU as the rest of a call's preparation, and none of it applies
        to these JSON APIs: no cookies, and a redirect is not followed (a POST turned
        into a GET would be a wrong call; its HTML body answers "not JSON"). With
        ``trust_env`` (proxies from the environment) the Session's full path is kept.
        """
        session = self.session
        if session.trust_env:
            return session.request(method, url, params=params, data=data, json=json,
                                   headers=headers, timeout=timeout or self.timeout,
                                   allow_redirects=False)
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method)
        prepared.prepare_url(url, params)
        prepared.prepare_headers({**session.headers, **headers})
        prepared.prepare_body(data, None, json)
        response = session.get_adapter(url).send(
            prepared, stream=False, timeout=timeout or self.timeout,
            verify=True if session.verify is None else session.verify,
            cert=session.cert, proxies=session.proxies)
        response.content  # noqa: B018 -- read now: a body that stalls is this call's timeout
        return response

    def _json(self, response: requests.Response) -> JsonValue:
        try:
            return response.json()
        except ValueError as e:
            # HTML error pages (proxies, a wrong account URL) and truncated bodies.
            raise UpstreamUnavailable(
                self.gateway, f"HTTP {response.status_code}: body is not JSON",
                response.status_code) from e
