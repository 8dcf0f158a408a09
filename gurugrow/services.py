"""The process-wide collaborators a flow needs, built once by ``create_app``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gurugrow.config import Settings
from gurugrow.delivery import DeliveryTracker
from gurugrow.gateways.deduper import DeduperGateway
from gurugrow.gateways.greensms import GreenSmsGateway
from gurugrow.gateways.retailcrm import RetailCrmGateway
from gurugrow.limits import Limits
from gurugrow.otp import OtpStore


class SendTimer:
    """How long a real code send takes (moving average), so a decoy can take as long."""

    def __init__(self, initial_seconds: float = 0.05) -> None:
        self.average = initial_seconds

    def observe(self, seconds: float) -> None:
        self.average = 0.8 * self.average + 0.2 * min(seconds, 5.0)


@dataclass
class Services:
    """Settings, gateways and the OTP store, shared by all requests of a process."""

    settings: Settings
    redis: Any
    otp: OtpStore
    limits: Limits
    crm: RetailCrmGateway
    sms: GreenSmsGateway
    deduper: DeduperGateway
    deliveries: DeliveryTracker
    clock: Callable[[], float] = field(default=time.time)
    send_timer: SendTimer = field(default_factory=SendTimer)
    # How long a GreenSMS status read takes, so a decoy's resend can take as long.
    status_timer: SendTimer = field(default_factory=SendTimer)
