"""The process-wide collaborators a flow needs, built once by ``create_app``."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from gurugrow.basics.catalog import RecommendedSet
from gurugrow.basics.clock import Clock
from gurugrow.config import Settings
from gurugrow.gateways.deduper import DeduperGateway
from gurugrow.gateways.greensms import GreenSmsGateway
from gurugrow.gateways.retailcrm import RetailCrmGateway
from gurugrow.stores.caches import FlowCaches
from gurugrow.stores.client import WriteBatch
from gurugrow.stores.deliveries import DeliveryTracker
from gurugrow.stores.limits import Limits
from gurugrow.stores.mirror import MirrorStore
from gurugrow.stores.otp import OtpStore
from gurugrow.stores.server import RedisServer


class SendTimer:
    """How long real code sends take, so a decoy can take as long: its wait is drawn
    from the last real sends' durations (their distribution, not an average with a
    jitter of its own that would tell decoys apart by their spread)."""

    def __init__(self, initial_seconds: float = 0.05, keep: int = 64) -> None:
        self._initial = initial_seconds
        self._recent: deque[float] = deque(maxlen=keep)

    def observe(self, seconds: float) -> None:
        self._recent.append(min(seconds, 5.0))

    def draw(self) -> float:
        """A wait like a real send's: one of the recent sends' durations at random
        (a first guess until a send was seen)."""
        return random.choice(self._recent) if self._recent else self._initial


@dataclass
class Services:
    """Settings, gateways and the OTP store, shared by all requests of a process."""

    settings: Settings
    # The Redis server itself (the doctor's probe, the sandbox's reset), for the app only: a
    # flow reaches Redis through the other stores (tests/test_layers.py refuses one reading it).
    storage: RedisServer
    otp: OtpStore
    limits: Limits
    crm: RetailCrmGateway
    sms: GreenSmsGateway
    deduper: DeduperGateway
    deliveries: DeliveryTracker
    # The one wall clock; tests stop it with ``clock.set``.
    clock: Clock
    # Cached RetailCRM answers, a contact binding's token, the run-once records.
    caches: FlowCaches
    # The RetailCRM mirror (CRM_MIRROR=1), else None: every read takes the live path.
    mirror: MirrorStore | None = None
    send_timer: SendTimer = field(default_factory=SendTimer)
    # How long a GreenSMS status read takes, so a decoy's resend can take as long.
    status_timer: SendTimer = field(default_factory=SendTimer)
    # The recommended sets by offerCode (RECOMMENDED_SETS_FILE, checked at start).
    sets: dict[str, RecommendedSet] = field(default_factory=dict)

    def batch(self) -> WriteBatch:
        """A new write batch: writes whose answers nobody reads, in one round trip."""
        return self.caches.batch()
