"""Messenger identity: which stable account id binds a chat user to a CRM customer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gurugrow.config import CHANNELS, Settings

# The contract's order of preference. chatExternalId, usernames and display names are
# deliberately absent: they are not stable or not unique, so they never bind.
IDENTITY_FIELDS = (
    "messengerUserId",
    "customerExternalId",
    "messengerAccountId",
    "messengerAccountIdFallback",
)


@dataclass(frozen=True)
class MessengerIdentity:
    """A messenger account: (channel, account id) and the CRM field that stores it."""

    channel: str
    account_id: str
    field_code: str


def normalize_channel(raw: str | None) -> str | None:
    """Lower-cased channel if supported, else None."""
    channel = (raw or "").strip().lower()
    return channel if channel in CHANNELS else None


def pick_account_id(data: Mapping[str, str | None]) -> str | None:
    """The first non-empty identity field, in the contract's order of preference."""
    for name in IDENTITY_FIELDS:
        # Kept as a string even when it looks like a number or a phone (WhatsApp).
        value = (data.get(name) or "").strip()
        if value:
            return value
    return None


def sent_account_ids(data: Mapping[str, str | None]) -> tuple[str, ...]:
    """Every non-empty identity field the caller sent: all name the same sender, so a
    value to match (a session's account, a shared contact's user id) may be any one."""
    return tuple(value for name in IDENTITY_FIELDS if (value := (data.get(name) or "").strip()))


def identity_for(channel: str, account_id: str, settings: Settings) -> MessengerIdentity:
    """The identity with the CRM field its channel maps to."""
    return MessengerIdentity(channel, account_id, settings.channel_field(channel))
