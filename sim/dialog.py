"""``ScriptedDialog``: our own ``DialogEngine`` port, scripted — the one stand-in for Rasa used by
the month simulation, the phone and check-in tests.

Each conversation gets its own copy of the script: an opening, then one reply per elder turn,
then a goodbye that ends the check-in. It records what it was sent, and can be told to fail on a
text (a dialog outage).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from core.ports import DialogReply, ParseResult

OPENING = "王大爷您好，我是社区探访员。最近身体好吗？"
GOODBYE = "好的，谢谢您。再见。"


class ScriptedDialog:
    def __init__(self, replies: Sequence[DialogReply] = (), *,
                 opening: str | Callable[[dict[str, Any]], DialogReply] = OPENING,
                 opening_expects: str | None = "yesno", fail_on: str | None = None, goodbye: str = GOODBYE):
        self.replies = list(replies)
        self.opening = opening
        self.opening_expects = opening_expects
        self.fail_on = fail_on
        self.goodbye = goodbye
        self.seen: list[str] = []
        self.started: list[dict[str, Any]] = []
        self._scripts: dict[str, list[DialogReply]] = {}

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata of the latest conversation started."""
        return self.started[-1]

    async def start(self, conversation_id: str, metadata: dict[str, Any]) -> DialogReply:
        self.started.append(metadata)
        self._scripts[conversation_id] = list(self.replies)
        if callable(self.opening):
            return self.opening(metadata)
        return DialogReply(messages=[self.opening], expects=self.opening_expects)

    async def send(self, conversation_id: str, text: str, metadata: dict[str, Any] | None = None) -> DialogReply:
        self.seen.append(text)
        if self.fail_on and self.fail_on in text:
            raise ConnectionError("dialog down")
        script = self._scripts.setdefault(conversation_id, list(self.replies))
        if not script:
            self._scripts.pop(conversation_id, None)
            return DialogReply(messages=[self.goodbye], ended=True, outcome="complete",
                               parse=ParseResult(text=text, intent="inform", confidence=0.9))
        return script.pop(0)

    async def parse(self, text: str) -> ParseResult:
        return ParseResult(text=text, intent=None, confidence=0.0)
