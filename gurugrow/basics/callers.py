"""Who may call: the shared API tokens, the caller networks and the client address
behind trusted proxies (decisions only, no Flask).

A token is compared in constant time against every configured token (SHA-256 digests,
so neither which token matched nor the length of a wrong one shows in the timing).
Neither a token nor a part of one is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Why a caller was refused (logged as ``caller_refused reason=...``).
NO_TOKEN = "no_token"
WRONG_TOKEN = "wrong_token"
OUTSIDE_NETWORKS = "outside_networks"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class CallerPolicy:
    """The configured callers: tokens (any one is enough) and networks (when set, the
    caller must be inside one as well). Neither configured: everyone may call."""

    token_digests: tuple[bytes, ...]
    networks: tuple[Network, ...]
    # Callers here need no token, everyone else does (a scraper policy: loopback and the
    # caller networks may read /metrics; from elsewhere only with METRICS_TOKEN).
    token_free: tuple[Network, ...] = ()
    token_free_loopback: bool = False

    @classmethod
    def build(cls, tokens: Iterable[str], networks: Iterable[Network]) -> CallerPolicy:
        return cls(tuple(_digest(t) for t in tokens), tuple(networks))

    @classmethod
    def for_scrapers(cls, token: str, networks: Iterable[Network]) -> CallerPolicy:
        """Loopback and ``networks`` without a token; anyone else with ``token`` (none
        configured: refused)."""
        return cls(tuple(_digest(t) for t in (token,) if t), (), tuple(networks), True)

    @property
    def is_open(self) -> bool:
        return not (self.token_digests or self.networks or self.token_free
                    or self.token_free_loopback)

    def refusal(self, offered: Sequence[str], address: str | None) -> str | None:
        """None when a caller at ``address`` offering ``offered`` tokens may call, else
        the reason it may not."""
        if (self.token_free_loopback and is_loopback(address)) or in_networks(
                address, self.token_free):
            return None
        if self.networks and not in_networks(address, self.networks):
            return OUTSIDE_NETWORKS
        offered = [token for token in offered if token]
        if not self.token_digests:  # open, or (a scraper policy) no token would do
            return (WRONG_TOKEN if offered else NO_TOKEN) if self.token_free_loopback else None
        if not offered:
            return NO_TOKEN
        return None if any(self.accepts(token) for token in offered) else WRONG_TOKEN

    def accepts(self, token: str) -> bool:
        """True when ``token`` is one of the configured tokens (every one is compared)."""
        digest = _digest(token)
        matched = False
        for expected in self.token_digests:
            matched |= hmac.compare_digest(digest, expected)
        return matched


def in_networks(address: str | None, networks: Iterable[Network]) -> bool:
    """True when ``address`` parses and lies inside one of ``networks``."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (and their IPv4-mapped forms)."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def client_ip(remote_addr: str | None, forwarded_for: str | None,
              trusted: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str | None:
    """The client's address: X-Forwarded-For is believed only when the peer is a trusted
    proxy, and then the nearest untrusted hop counts (a client can prepend anything)."""
    trusted = list(trusted)

    def is_trusted(addr: str) -> bool:
        return in_networks(addr, trusted)

    if not remote_addr or not forwarded_for or not is_trusted(remote_addr):
        return remote_addr
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not is_trusted(hop):
            return hop
    return remote_addr
