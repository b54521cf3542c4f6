"""What a device event means (pure functions; table-tested in tests/test_alert_rules.py).

* :func:`parse_row` checks one row of a batch (a JSON object or a CSV row: ``elder_id`` or
  ``device_id``, ``device``, ``event``, ``at``, optionally ``value`` and ``vendor``) and says what
  is wrong with it, row by row, in Chinese;
* :func:`classify` applies the rules (``alerts.rules`` of config.yml, overridden per device by
  ``Device.rules``): urgent, concern, or only recorded;
* :func:`is_duplicate` and :func:`is_flapping` decide, from what the same device sent before,
  whether an event is a repeat (ignored) or part of a burst (quietened).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from data.models import DEVICE_KINDS
from data.roster import RowError  # row number, column, reason: the roster import's own

COLUMNS = ("elder_id", "device_id", "device", "event", "at", "value", "vendor")
EVENT_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
REF_MAX = 64
LEVEL_RANK = {"info": 0, "concern": 1, "urgent": 2}
PRIORITY_OF_LEVEL = {"urgent": 1, "concern": 2}


@dataclass(frozen=True)
class EventIn:
    """One checked event: times are naive UTC like every DateTime column."""

    row: int
    elder_id: int | None
    device_ref: str | None
    device_kind: str | None
    vendor: str | None
    event: str
    at: dt.datetime
    value: float | None
    raw: dict


@dataclass(frozen=True)
class Verdict:
    level: str  # urgent | concern | info
    label: str  # what happened, in Chinese ("长时间没有用水（30小时）")


def parse_time(text: str, zone: dt.tzinfo) -> dt.datetime:
    """An ISO time; with an offset (``+08:00``, ``Z``) as given, without one in ``zone`` (the
    configured local zone). Returns naive UTC; ValueError for anything else."""
    value = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    return "" if value is None else str(value).strip()


def parse_row(row: int, raw: Any, zone: dt.tzinfo) -> tuple[EventIn | None, list[RowError]]:
    """One event of a batch, or the reasons it cannot be taken (every field is checked)."""
    if not isinstance(raw, Mapping):
        return None, [RowError(row, "格式", "每条事件应为一个对象 (each event must be an object)")]
    errors: list[RowError] = []
    elder_text, ref, kind = _text(raw, "elder_id"), _text(raw, "device_id"), _text(raw, "device")
    elder_id = None
    if elder_text:
        if elder_text.isdigit():
            elder_id = int(elder_text)
        else:
            errors.append(RowError(row, "elder_id", f"应为老人编号（数字），实为“{elder_text}”"))
    if not elder_text and not ref:
        errors.append(RowError(row, "elder_id/device_id", "至少要有其一 (elder_id or a registered device_id)"))
    if len(ref) > REF_MAX:
        errors.append(RowError(row, "device_id", f"过长（最多{REF_MAX}个字符）"))
    if kind and kind not in DEVICE_KINDS:
        errors.append(RowError(row, "device", f"应为 {'/'.join(DEVICE_KINDS)} 之一，实为“{kind}”"))
    elif not kind and not ref:
        errors.append(RowError(row, "device", "没有 device_id 时必须写明设备类型"))
    event = _text(raw, "event")
    if not EVENT_RE.match(event):
        errors.append(RowError(row, "event", f"应为小写英文事件名（如 pressed、no_flow），实为“{event}”"))
    at = None
    try:
        at = parse_time(_text(raw, "at"), zone)
    except ValueError:
        errors.append(RowError(row, "at", f"应为 ISO 时间（如 2026-11-03T10:05:00+08:00），实为“{_text(raw, 'at')}”"))
    value = None
    if _text(raw, "value"):
        try:
            value = float(_text(raw, "value"))
        except ValueError:
            errors.append(RowError(row, "value", f"应为数字，实为“{_text(raw, 'value')}”"))
    if errors:
        return None, errors
    return EventIn(row, elder_id, ref or None, kind or None, _text(raw, "vendor") or None, event, at, value,
                   {k: raw[k] for k in raw if raw[k] not in (None, "")}), []


def rule_for(rules: Mapping[str, Mapping[str, Any]], kind: str, event: str,
             overrides: Mapping[str, Any] | None = None) -> dict | None:
    """The rule of ``event`` on a ``kind`` device: the configured one, with the device's own
    fields over it (``{"no_flow": {"at_least": 36}}``; a level alone: ``{"night_flow": "info"}``)."""
    base = (rules.get(kind) or {}).get(event)
    rule = dict(base.model_dump() if hasattr(base, "model_dump") else base or {})
    own = (overrides or {}).get(event)
    if isinstance(own, str):
        own = {"level": own}
    rule.update(own or {})
    return rule if rule.get("level") else None


def classify(rules: Mapping[str, Mapping[str, Any]], kind: str, event: str, value: float | None,
             overrides: Mapping[str, Any] | None = None) -> Verdict:
    """What the event means. An event no rule names is recorded (a vendor's heartbeat, a new
    event name); a value that does not cross the rule's threshold is recorded too."""
    rule = rule_for(rules, kind, event, overrides)
    if rule is None:
        return Verdict("info", f"其他事件（{event}）")
    label = rule.get("label") or event
    if value is not None:
        label += f"（{value:g}{rule.get('unit') or ''}）"
    level = rule["level"]
    low, high = rule.get("at_least"), rule.get("at_most")
    if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
        level = "info"
    return Verdict(level, label)


def is_duplicate(event: str, at: dt.datetime, before: Iterable[tuple[str, dt.datetime]],
                 window: dt.timedelta) -> bool:
    """The same event of the same device within ``window`` of one already kept."""
    return any(e == event and abs(at - t) < window for e, t in before)


def is_flapping(at: dt.datetime, alarms_before: Iterable[dt.datetime], count: int, window: dt.timedelta) -> bool:
    """This alarm makes ``count`` or more alarms of one device within ``window`` (ending at ``at``)."""
    recent = sum(1 for t in alarms_before if at - window < t <= at)
    return recent + 1 >= count
