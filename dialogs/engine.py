"""``RasaDialogEngine``: the app's :class:`core.ports.DialogEngine` over Rasa's HTTP API.

- ``parse(text)``: ``POST /model/parse``.
- ``send(id, text, metadata)``: ``POST /webhooks/rest/webhook`` (sender = conversation id), then
  ``GET /conversations/{id}/tracker`` for what the NLU understood (latest_message), the slots and
  the form's requested slot.
- ``start(id, metadata)``: metadata keys that are slots of the domain are set on the tracker
  (``elder_name``, ``visit_id``, ``call_reason``, ``followups``...), then ``/greet`` is sent with the
  metadata — or, for a device-alert call or a call-in, that reason's start intent
  (``core.conversation.START_INTENTS``: ``/start_alert``, ``/start_inbound``).

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

Scaled out (``rasa.urls``): the engine spreads turns over several Rasa servers (round robin, one
server for the whole of a turn). They share the tracker store (SQL on PostgreSQL) and the lock
store (Redis), so any server can take any turn and the lock store keeps one conversation's turns
in order. A server that refuses the connection (down, restarting) is skipped for
``DOWN_SECONDS`` and the turn goes to the next one; a turn that may have reached a server
(a timeout after sending) is not sent again. What the engine remembers per conversation is kept
for the newest ``REMEMBER`` conversations only, so memory stays bounded.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from typing import Any, Sequence

import httpx

from core.conversation import start_intent
from core.ports import DialogReply, Grade, ParseResult
from dialogs.auth import PROOF_KEY, conversation_proof, shared_token


class DialogUnavailable(Exception):
    """The dialog server did not answer (down, timeout, HTTP error). Safe to retry the turn."""


DOWN_SECONDS = 10.0
REMEMBER = 10_000
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


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

    def __init__(self, url: str | Sequence[str], timeout: float = 10.0, client: httpx.AsyncClient | None = None,
                 token: str | None = None) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("RasaDialogEngine needs at least one Rasa URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.url = self.urls[0]
        self.timeout = timeout
        self.token = token  # the shared token (dialogs.auth): Rasa's --auth-token, and the conversation proofs
        self._clients: dict[str, httpx.AsyncClient] = {}
        if client is not None:
            self._clients[self.url] = client
        self._own_client = client is None
        self._next = itertools.cycle(range(len(self.urls)))
        self._down_until: dict[str, float] = {}
        self._slot_names: set[str] | None = None
        # conversation id -> what the bot's last question expects (grades the next answer)
        self._expects: OrderedDict[str, str | None] = OrderedDict()

    @classmethod
    def from_settings(cls, settings, url: str | None = None) -> "RasaDialogEngine":
        base = url or settings.rasa.url or f"http://{settings.rasa.host}:{settings.rasa.port}"
        return cls(settings.rasa.urls or base, timeout=settings.rasa.parse_timeout, token=shared_token(settings))

    # -- HTTP --

    def _client_for(self, url: str) -> httpx.AsyncClient:
        client = self._clients.get(url)
        if client is None or client.is_closed:
            client = self._clients[url] = httpx.AsyncClient(base_url=url, timeout=self.timeout)
        return client

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client_for(self.url)

    def _servers(self) -> list[str]:
        """The servers in the order to try for the next turn: round robin, known-down ones last."""
        first = next(self._next)
        order = [self.urls[(first + i) % len(self.urls)] for i in range(len(self.urls))]
        now = time.monotonic()
        return sorted(order, key=lambda u: self._down_until.get(u, 0) > now)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        if self._own_client:
            for client in clients.values():
                await client.aclose()

    async def __aenter__(self) -> "RasaDialogEngine":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, *, server: str | None = None, **kwargs) -> Any:
        """``server`` first when given (a read of the turn just taken), then any other."""
        servers = self._servers()
        if server:
            servers = [server] + [u for u in servers if u != server]
        data, _ = await self._request_on(servers, method, path, **kwargs)
        return data

    async def _request_on(self, servers: list[str], method: str, path: str, **kwargs) -> tuple[Any, str]:
        """Send to the first server that takes the connection; (JSON, that server)."""
        if self.token:  # Rasa's HTTP API takes its auth token as the `token` query parameter
            kwargs["params"] = {**(kwargs.get("params") or {}), "token": self.token}
        for i, url in enumerate(servers):
            try:
                resp = await self._client_for(url).request(method, path, **kwargs)
            except _NOT_SENT as exc:
                self._down_until[url] = time.monotonic() + DOWN_SECONDS
                if i + 1 < len(servers):
                    continue
                raise DialogUnavailable(f"对话服务无响应 Rasa at {url} unreachable: {type(exc).__name__}: {exc}") from exc
            except httpx.HTTPError as exc:
                raise DialogUnavailable(f"对话服务无响应 Rasa at {url} unreachable: {type(exc).__name__}: {exc}") from exc
            self._down_until.pop(url, None)
            return self._decode(method, path, resp), url
        raise DialogUnavailable("no Rasa server configured")

    @staticmethod
    def _decode(method: str, path: str, resp: httpx.Response) -> Any:
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
        return await self._turn(conversation_id, f"/{start_intent(metadata.get('call_reason'))}", metadata,
                                user_turn=False)

    async def send(self, conversation_id: str, text: str, metadata: dict[str, Any] | None = None) -> DialogReply:
        return await self._turn(conversation_id, text, metadata or {}, user_turn=True)

    async def _turn(self, conversation_id: str, text: str, metadata: dict[str, Any], user_turn: bool) -> DialogReply:
        if self.token:  # the REST channel takes no token: the actions check this proof before writing
            metadata = {**metadata, PROOF_KEY: conversation_proof(self.token, conversation_id)}
        messages, server = await self._request_on(
            self._servers(), "POST", "/webhooks/rest/webhook",
            json={"sender": conversation_id, "message": text, "metadata": metadata},
        )
        messages = messages or []
        # The user event's own parse: the tracker's ``latest_message`` stays at the message that
        # activated a form while the form runs (every answer came back as that one's intent).
        tracker = await self._request(
            "GET", f"/conversations/{conversation_id}/tracker", server=server,
            params={"include_events": "AFTER_RESTART"},
        ) or {}
        if user_turn:
            last_user = next((e for e in reversed(tracker.get("events") or []) if e.get("event") == "user"), None)
            if last_user and last_user.get("parse_data"):
                tracker["latest_message"] = {**last_user["parse_data"], "text": last_user.get("text")}
        reply = self._reply(text, messages, tracker, user_turn)
        self._remember(conversation_id, None if reply.ended else reply.expects)
        return reply

    def _remember(self, conversation_id: str, expects: str | None) -> None:
        self._expects[conversation_id] = expects
        self._expects.move_to_end(conversation_id)
        while len(self._expects) > REMEMBER:
            self._expects.popitem(last=False)

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
