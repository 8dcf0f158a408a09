"""The routes a code goes by, each declared once: the one list every part reads.

Settings validation (CODE_PRICES, DELIVERY_ROUTES_<CHANNEL>, senders), the request field
``deliveryRoute`` and its OpenAPI enum, the GreenSMS gateway, delivery tracking and its
fallback, costs, metrics labels, the sandbox stand-in and the doctor all read ``ROUTES``;
adding a route is one ``Route(...)`` here (and its text in texts.py, named by ``text``).

Facts per module (GreenSMS's official SDKs, docs/INTEGRATIONS.md "GreenSMS routes"):
greensms-php ``src/Api/Schema.php`` gives each module's fields and limits, its
``Modules.php`` the paths; greensms-node's e2e tests the answers (``call/send`` answers
``request_id`` and ``code``; ``call/receive`` answers ``request_id`` and ``number``).

This module is at the configuration's layer: it imports nothing of ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# What a route delivers.
OUR_CODE = "our_code"  # a code we chose goes out (in a text, or as the code alone)
THEIR_CODE = "their_code"  # GreenSMS chooses the code and answers it (flash call)
NUMBER_TO_CALL = "number_to_call"  # GreenSMS answers a number the customer calls

# Status vocabularies (gateways/greensms.py maps each): the message words and codes of
# the sms/vk/viber/whatsapp modules with Telegram Gateway's words, the calls', and the
# received call's (documented nowhere: read defensively, see gateways/greensms.py).
MESSAGE_STATUSES = "message"
CALL_STATUSES = "call"
INCOMING_CALL_STATUSES = "incoming_call"


@dataclass(frozen=True)
class Route:
    """One way a code (or a number to call) reaches the customer."""

    name: str  # deliveryRoute, the metrics' ``route`` label, the CODE_PRICES key
    module: str  # GreenSMS module: POST /<module>/<action>, GET /<module>/status
    sends: str  # OUR_CODE | THEIR_CODE | NUMBER_TO_CALL
    # bot_last_verification_method once it verified someone: always ``<name>_otp``, which
    # the conversion alert and dashboard map back to the route.
    method: str
    action: str = "send"  # POST /<module>/<action>
    # The setting naming the sender (``from``); with ``sender_required`` the route is off
    # while it is empty (GreenSMS refuses the send without it).
    sender_setting: str | None = None
    sender_required: bool = False
    max_from: int = 11  # the longest ``from`` the module takes (0: no limit said)
    # What ``txt`` carries: "code" (the code alone), "text" (texts.<text> with the code),
    # "" (no txt: GreenSMS makes the call).
    txt: str = "text"
    text: str = "SMS_CODE"  # texts.py constant of the ``txt`` with the code ("": none)
    # texts.py constant of the bot's message in the ``sent`` answer ("": none, as for the
    # messages, whose text says it all); formatted with {digits}, the code's length, and
    # {callNumber}, the number to call.
    bot_text: str = ""
    max_txt: int = 918  # the module's ``txt`` limit
    statuses: str = MESSAGE_STATUSES
    # The digits of its code: GreenSMS's (THEIR_CODE), or ours when the module limits them
    # (None: OTP_LENGTH).
    code_length: int | None = None
    # Watched by the deliveries worker (a later route replaces it when undelivered).
    watched: bool = True
    # The messenger whose users get this route first by default (own messenger).
    own_channel: str | None = None
    in_defaults: bool = True  # may be in a channel's default workflow
    price_key: str = ""
    label: str = ""  # how people name it (the doctor, the dashboard); default: the name

    @property
    def title(self) -> str:
        """The route as people name it."""
        return self.label or self.name

    @property
    def price(self) -> str:
        """The CODE_PRICES key of this route."""
        return self.price_key or self.name

    @property
    def setting_attr(self) -> str | None:
        """The Settings attribute of ``sender_setting``."""
        return self.sender_setting.lower() if self.sender_setting else None


ROUTES: dict[str, Route] = {r.name: r for r in (
    # Telegram Gateway through GreenSMS: the code alone, the gateway renders the message.
    Route("telegram", "telegram", OUR_CODE, "telegram_otp", txt="code", max_txt=8,
          own_channel="telegram", label="Telegram"),
    Route("vk", "vk", OUR_CODE, "vk_otp", sender_setting="GREENSMS_VK_FROM",
          sender_required=True, max_txt=2048, own_channel="vk", label="VK"),
    # WhatsApp's ``from`` has no length in the schema (a registered sender name).
    Route("whatsapp", "whatsapp", OUR_CODE, "whatsapp_otp",
          sender_setting="GREENSMS_WHATSAPP_FROM", sender_required=True, max_txt=1000,
          max_from=0, own_channel="whatsapp", label="WhatsApp"),
    Route("viber", "viber", OUR_CODE, "viber_otp", sender_setting="GREENSMS_VIBER_FROM",
          sender_required=True, max_txt=1000, label="Viber"),
    Route("sms", "sms", OUR_CODE, "sms_otp", sender_setting="GREENSMS_SMS_FROM",
          watched=False, label="SMS"),
    # Flash call: the last digits of the calling number are the code GreenSMS answers.
    Route("call", "call", THEIR_CODE, "call_otp", txt="", text="", bot_text="CALL_CODE_SENT",
          max_txt=0, statuses=CALL_STATUSES, code_length=4, label="flash call"),
    # The code read aloud: ``txt`` is the digits alone, 1-5 of them, so its code is ours
    # of 5 digits whatever OTP_LENGTH says.
    Route("voice", "voice", OUR_CODE, "voice_otp", txt="code", text="",
          bot_text="VOICE_CODE_SENT", max_txt=5, statuses=CALL_STATUSES, code_length=5,
          label="voice call"),
    # The customer calls the number GreenSMS answers (``call/receive``); the call proves
    # the phone, no code is typed. Never in a default workflow: its status words are
    # documented nowhere.
    Route("incoming_call", "call", NUMBER_TO_CALL, "incoming_call_otp", action="receive",
          txt="", text="", bot_text="CALL_NUMBER_SENT", max_txt=0,
          statuses=INCOMING_CALL_STATUSES, watched=False, in_defaults=False,
          label="incoming call"),
)}
# The last resort of every default workflow.
LAST_RESORT = "sms"


def route_names() -> tuple[str, ...]:
    """Every route's name, in declaration order."""
    return tuple(ROUTES)


def route_of_method(method: str | None) -> str | None:
    """The route a bot_last_verification_method value names (None: none)."""
    return next((r.name for r in ROUTES.values() if r.method == method), None)


def default_workflow(channel: str) -> tuple[str, ...]:
    """The routes a channel's codes try by default: its own messenger's route where there
    is one, then SMS."""
    own = [r.name for r in ROUTES.values() if r.own_channel == channel and r.in_defaults]
    return (*own, LAST_RESORT) if LAST_RESORT not in own else tuple(own)


def workflow_setting(channel: str) -> str:
    """The variable naming a channel's workflow: DELIVERY_ROUTES_<CHANNEL>."""
    return f"DELIVERY_ROUTES_{channel.upper()}"


def code_lengths(otp_length: int, routes: Iterable[str]) -> tuple[int, ...]:
    """Every length a code of ``routes`` may have: OTP_LENGTH and each route's own."""
    own = (ROUTES[r].code_length for r in routes if r in ROUTES)
    return tuple(sorted({otp_length, *(length for length in own if length)}))
