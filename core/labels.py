"""A key from what a person typed: the key itself, its Chinese label, or an alias (one rule for the
enumerations people type: device kinds, handling actions, referral types and statuses)."""

from __future__ import annotations

from typing import Mapping


def key_for(labels: Mapping[str, str], value: str | None, aliases: Mapping[str, str] | None = None) -> str | None:
    """``labels`` is key -> label; None when ``value`` is neither a key, a label nor an alias."""
    text = (value or "").strip()
    if text in labels:
        return text
    by_label = {**(aliases or {}), **{label: key for key, label in labels.items()}}
    return by_label.get(text)


def choices(labels: Mapping[str, str]) -> str:
    """``key(label)/key(label)`` for error messages and help."""
    return "/".join(f"{k}({v})" for k, v in labels.items())
