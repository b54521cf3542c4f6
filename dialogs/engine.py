"""``RasaDialogEngine``: the app's :class:`core.ports.DialogEngine` over Rasa's HTTP API.

- ``parse(text)``: ``POST /model/parse``.
- ``send(id, text, metadata)``: ``POST /webhooks/rest/webhook`` (sender = conversation id), then
  ``GET /conversations/{id}/tracker`` for what the NLU understood (latest_message), the slots and
  the form's requested slot.
- ``start(id, metadata)``: metadata keys that are slots of the domain are set on the tracker
  (``elder_name``, ``visit_id``...), then ``/greet`` is sent with the metadata.

The end of a conversation: the bot sends a custom payload ``{"ended": true, "outcome": "..."}``
(``json_message``, also accepted nested as ``{"custom": {...}}``), or the slot
``checkin_outcome`` (or ``outcome``) is set. The question kind the next answer should
fit (``DialogReply.expects``): a custom payload ``{"expects": "..."}``, else the form's
``requested_slot``. The engine does not grade: the check-in service grades each answer once,
against the question it asked (``core.checkin.CheckInService``); ``grade`` is kept for
``tanfang rasa assess``.

A network failure or a server error raises :class:`DialogUnavailable`; the caller keeps the
elder's words and retries later.

With a ``token`` (``dialogs.auth.shared_token``) every request carries it (Rasa's ``--auth-token``),
and every message's metadata carries the conversation's proof, without which the actions write
nothing.
"""

from __future__ import annotations

from typing import Any

import httpx

from core.ports import DialogReply, Grade, ParseResult
from dialogs.auth import PROOF_KEY, conversation_proof, shared_token


class DialogUnavailable(Exception):
    """The dialog server did not answer (down, timeout, HTTP error). Safe to retry the turn."""


def _parse_result(text: str, message: dict[str, Any] | None) -> ParseResult:
    message = message or {}
    intent = message.get("intent") or {}
    entities = [
        {k: e.get(k) for k in ("entity", "value", "start", "end", "confidence_entity", "extractor") if k in e}
        for e in (message.get("entities") or [])
    ]
    return ParseResult(
        text=message.get("text", text) if message.get("text") is not None else text,
        intent=intent.get("name"),
        confidence=float(intent.get("confidence") or 0.0),
        entities=entities,
    )


def grade(text: str, parse: ParseResult | None, expects: str | None = None) -> Grade:
    """``core.grading.grade_turn`` (imported lazily: the grading rules live with the dialogs)."""
    from core.grading import grade_turn

    return grade_turn(text, parse, expects)


class RasaDialogEngine:
    """DialogEngine over a running Rasa server (``EmbeddedRasa(settings).url`` or ``rasa.url``)."""

    def __init__(self, url: str, timeout: float = 10.0, client: httpx.AsyncClient | None = None,
                 token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.token = token  # the shared token (dialogs.auth): Rasa's --auth-token, and the conversation proofs
        self._client = client
        self._own_client = client is None
        self._slot_names: set[str] | None = None
        # conversation id -> what the bot's last question expects (grades the next answer)
        self._expects: dict[str, str | None] = {}

    @classmethod
    def from_settings(cls, settings, url: str | None = None) -> "RasaDialogEngine":
        base = url or settings.rasa.url or f"http://{settings.rasa.host}:{settings.rasa.port}"
        return cls(base, timeout=settings.rasa.parse_timeout, token=shared_token(settings))

    # -- HTTP --

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(base_url=self.url, timeout=self.timeout)
            self._own_client = True
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._own_client:
            await self._client.aclose()
        self._client = None

    async def __aenter__(self) -> "RasaDialogEngine":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, **kwargs) -> Any:
        if self.token:  # Rasa's HTTP API takes its auth token as the `token` query parameter
            kwargs["params"] = {**(kwargs.get("params") or {}), "token": self.token}
        try:
            resp = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DialogUnavailable(f"对话服务无响应 Rasa at {self.url} unreachable: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 400:
            raise DialogUnavailable(
                f"对话服务出错 Rasa {method} {path} -> HTTP {resp.status_code}: {resp.text[:200]}"
            )
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise DialogUnavailable(f"Rasa {method} {path} answered non-JSON: {resp.text[:200]}") from exc

    # -- DialogEngine --

    async def parse(self, text: str) -> ParseResult:
        data = await self._request("POST", "/model/parse", json={"text": text})
        return _parse_result(text, data)

    async def slot_names(self) -> set[str]:
        if self._slot_names is None:
            domain = await self._request("GET", "/domain", headers={"Accept": "application/json"})
            self._slot_names = set((domain or {}).get("slots", {}).keys())
        return self._slot_names

    def expecting(self, conversation_id: str) -> str | None:
        """What the bot's last question in this conversation expects (a form slot), if known."""
        return self._expects.get(conversation_id)

    async def start(self, conversation_id: str, metadata: dict[str, Any]) -> DialogReply:
        metadata = dict(metadata or {})
        slots = await self.slot_names()
        events = [
            {"event": "slot", "name": k, "value": v}
            for k, v in metadata.items() if k in slots and v is not None
        ]
        if events:
            await self._request("POST", f"/conversations/{conversation_id}/tracker/events",
                                params={"include_events": "NONE"}, json=events)
        return await self._turn(conversation_id, "/greet", metadata, user_turn=False)

    async def send(self, conversation_id: str, text: str, metadata: dict[str, Any] | None = None) -> DialogReply:
        return await self._turn(conversation_id, text, metadata or {}, user_turn=True)

    async def _turn(self, conversation_id: str, text: str, metadata: dict[str, Any], user_turn: bool) -> DialogReply:
        if self.token:  # the REST channel takes no token: the actions check this proof before writing
            metadata = {**metadata, PROOF_KEY: conversation_proof(self.token, conversation_id)}
        messages = await self._request(
            "POST", "/webhooks/rest/webhook",
            json={"sender": conversation_id, "message": text, "metadata": metadata},
        ) or []
        # The user event's own parse: the tracker's ``latest_message`` stays at the message that
        # activated a form while the form runs (every answer came back as that one's intent).
        tracker = await self._request(
            "GET", f"/conversations/{conversation_id}/tracker", params={"include_events": "AFTER_RESTART"}
        ) or {}
        if user_turn:
            last_user = next((e for e in reversed(tracker.get("events") or []) if e.get("event") == "user"), None)
            if last_user and last_user.get("parse_data"):
                tracker["latest_message"] = {**last_user["parse_data"], "text": last_user.get("text")}
        reply = self._reply(text, messages, tracker, user_turn)
        self._expects[conversation_id] = None if reply.ended else reply.expects
        return reply

    def _reply(self, text: str, messages: list[dict[str, Any]], tracker: dict[str, Any], user_turn: bool) -> DialogReply:
        texts: list[str] = []
        ended = False
        outcome: str | None = None
        expects: str | None = None
        for msg in messages:
            if msg.get("text"):
                texts.append(msg["text"])
            custom = msg.get("custom")
            if isinstance(custom, dict) and isinstance(custom.get("custom"), dict):
                custom = custom["custom"]  # json_message={"custom": {...}} arrives nested once more
            if isinstance(custom, dict):
                if custom.get("text"):
                    texts.append(str(custom["text"]))
                if custom.get("ended"):
                    ended = True
                    outcome = custom.get("outcome") or outcome
                if custom.get("expects"):
                    expects = str(custom["expects"])
        slots = dict(tracker.get("slots") or {})
        for key in ("checkin_outcome", "outcome"):
            if slots.get(key):
                ended = True
                outcome = outcome or str(slots[key])
        if expects is None and not ended:
            active = (tracker.get("active_loop") or {}).get("name")
            if active and slots.get("requested_slot"):
                expects = str(slots["requested_slot"])
        parse = _parse_result(text, tracker.get("latest_message")) if user_turn else None
        return DialogReply(messages=texts, parse=parse, grade=Grade(), expects=expects,
                           ended=ended, outcome=outcome, slots=slots)
