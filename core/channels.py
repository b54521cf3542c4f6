"""Message channels that need no network: a console printer and a recorder.

``ConsoleChannel`` is what the demo uses where no Telegram emulator can run (no Node.js):
notifications are printed, never dropped. ``RecordingChannel`` keeps them for tests and
simulations.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class SentMessage:
    channel: str
    recipient: str
    text: str
    payload: dict[str, Any] | None
    at: dt.datetime
    message_id: str


@dataclass
class RecordingChannel:
    """Keeps every message; can be told to fail the next N sends (an outage)."""

    name: str = "record"
    fail_next: int = 0
    sent: list[SentMessage] = field(default_factory=list)
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    async def send(self, recipient: str, text: str, payload: dict[str, Any] | None = None) -> str:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ConnectionError(f"{self.name}: simulated outage")
        message_id = f"{self.name}-{next(self._ids)}"
        self.sent.append(SentMessage(self.name, str(recipient), text, payload, self.clock(), message_id))
        return message_id

    def to(self, recipient: str) -> list[SentMessage]:
        return [m for m in self.sent if m.recipient == str(recipient)]


class ConsoleChannel(RecordingChannel):
    """Prints each message (and records it) — the demo's stand-in for Telegram/SMS."""

    def __init__(self, name: str = "console", printer: Callable[[str], None] = print):
        super().__init__(name=name)
        self.printer = printer

    async def send(self, recipient: str, text: str, payload: dict[str, Any] | None = None) -> str:
        message_id = await super().send(recipient, text, payload)
        self.printer(f"[{self.name} → {recipient}] {text}")
        return message_id
