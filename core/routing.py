"""Which channel reaches a person, and where to fall back (pure; table-tested).

Visitors, family members and emergency contacts each choose a channel (``telegram``, ``wecom`` or
``sms``, ``data.models.PERSON_CHANNELS``). A chat channel needs its address: a linked Telegram chat
or a WeCom UserID; SMS needs a mobile number (a landline cannot receive one). The rule:

* the chosen channel first, when it has an address and is running (``available``);
* then SMS, for an urgent message (its chat channel may fail: the alert must still arrive), and
  for any message whose chosen channel cannot be used at all (unknown, unlinked, not running).

The outbox sends to the first route; when it fails for good (``PermanentDeliveryError``, or the
attempts are used up) ``next_route`` names the fallback, and the record shows which one delivered.

Which channels a deployment runs (``available``) follows from its settings, never from a global:
:func:`running_channels` — ``outbox.channels`` when set, else every channel whose settings are
complete (:func:`channel_missing`, the same test ``tanfang serve --check`` and the wiring use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from data import phone as phones

CHAT_CHANNELS = ("telegram", "wecom")
CHANNELS = ("telegram", "wecom", "sms")


@dataclass(frozen=True)
class Route:
    channel: str  # telegram | wecom | sms
    address: str  # Telegram chat id | WeCom UserID | mobile number


def address_of(person: Any, channel: str) -> str | None:
    """Where ``person`` (a Visitor, FamilyMember or EmergencyContact) is reached on ``channel``."""
    if channel == "telegram":
        chat = getattr(person, "telegram_chat_id", None)
        return str(chat) if chat else None
    if channel == "wecom":
        return getattr(person, "wecom_user_id", None) or None
    if channel == "sms":
        return phones.sms_address(getattr(person, "phone", None))
    return None


def routes(person: Any, *, urgent: bool = False, available: Iterable[str] | None = None) -> list[Route]:
    """The routes to try in order (empty: the person cannot be reached by any running channel)."""
    running = set(available) if available is not None else {"telegram", "wecom", "sms"}
    chosen = getattr(person, "channel", None)
    out: list[Route] = []
    if chosen in running:
        where = address_of(person, chosen)
        if where:
            out.append(Route(chosen, where))
    if "sms" in running and (urgent or not out) and not any(r.channel == "sms" for r in out):
        phone = address_of(person, "sms")
        if phone:
            out.append(Route("sms", phone))
    return out


def next_route(person: Any, failed: str, *, urgent: bool = False,
               available: Iterable[str] | None = None) -> Route | None:
    """The route after the one on channel ``failed`` (None: nothing left to try)."""
    found = routes(person, urgent=urgent, available=available)
    channels = [r.channel for r in found]
    if failed not in channels:
        return found[0] if found else None
    after = channels.index(failed) + 1
    return found[after] if after < len(found) else None


# ---- which channels this deployment runs ------------------------------------------------------------
def twilio_missing(settings) -> list[str]:
    secrets = settings.secrets
    return [name for name, value in (("TANFANG_TWILIO_ACCOUNT_SID", secrets.twilio_account_sid),
                                     ("TANFANG_TWILIO_AUTH_TOKEN", secrets.twilio_auth_token),
                                     ("twilio.from_number", settings.twilio.from_number)) if not value]


def aliyun_sms_missing(settings) -> list[str]:
    s, secrets = settings.sms, settings.secrets
    return [name for name, ok in (("TANFANG_ALIYUN_ACCESS_KEY_ID", secrets.aliyun_access_key_id),
                                  ("TANFANG_ALIYUN_ACCESS_KEY_SECRET", secrets.aliyun_access_key_secret),
                                  ("sms.sign_name", s.sign_name), ("sms.templates", s.templates)) if not ok]


def wecom_missing(settings) -> list[str]:
    s, secrets = settings.wecom, settings.secrets
    return [name for name, ok in (("wecom.corp_id", s.corp_id), ("wecom.agent_id", s.agent_id),
                                  ("TANFANG_WECOM_SECRET", secrets.wecom_secret)) if not ok]


def sms_provider(settings) -> str | None:
    """The SMS provider that runs: ``aliyun`` when chosen and complete, else ``twilio`` when
    complete (free text), else None."""
    if settings.sms.provider == "aliyun" and not aliyun_sms_missing(settings):
        return "aliyun"
    return "twilio" if not twilio_missing(settings) else None


def channel_missing(settings, channel: str) -> list[str]:
    """The settings and secrets ``channel`` still needs (empty: it can run)."""
    if channel == "telegram":
        return [] if settings.secrets.telegram_bot_token else ["TANFANG_TELEGRAM_BOT_TOKEN"]
    if channel == "wecom":
        return wecom_missing(settings)
    if channel == "sms":
        if sms_provider(settings):
            return []
        return aliyun_sms_missing(settings) if settings.sms.provider == "aliyun" else twilio_missing(settings)
    return [f"unknown channel {channel!r}"]


def running_channels(settings) -> frozenset[str]:
    """The channels messages are routed over: ``outbox.channels`` when given, else every channel
    whose settings are complete."""
    chosen = settings.outbox.channels
    if chosen:
        return frozenset(chosen)
    return frozenset(c for c in CHANNELS if not channel_missing(settings, c))


# ---- phone lines -------------------------------------------------------------------------------
def line_for(settings, *, county: str | None, township: str | None, village: str | None) -> str:
    """The phone line (``twilio`` | ``sip``) that reaches an elder of this area: the most specific
    key of ``phone.line_by_area`` that matches (县, 县/乡镇 or 县/乡镇/村), else ``phone.line``."""
    parts = [p for p in (county, township, village) if p]
    for depth in range(len(parts), 0, -1):
        line = settings.phone.line_by_area.get("/".join(parts[:depth]))
        if line:
            return line
    return settings.phone.line
