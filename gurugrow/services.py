"""The process-wide collaborators a flow needs, built once by ``create_app``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gurugrow.config import Settings
from gurugrow.gateways.deduper import DeduperGateway
from gurugrow.gateways.greensms import GreenSmsGateway
from gurugrow.gateways.retailcrm import RetailCrmGateway
from gurugrow.otp import OtpStore


@dataclass
class Services:
    """Settings, gateways and the OTP store, shared by all requests of a process."""

    settings: Settings
    redis: Any
    otp: OtpStore
    crm: RetailCrmGateway
    sms: GreenSmsGateway
    deduper: DeduperGateway
    clock: Callable[[], float] = field(default=time.time)
