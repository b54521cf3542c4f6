"""``POST /alerts/{source}``: events from a device vendor, signed with that source's own secret.

The contract given to each vendor (docs/plan-features.md), built like Stripe's webhook signatures
(https://docs.stripe.com/webhooks#verify-manually: a timestamp inside the signed text, HMAC-SHA256,
a tolerance window):

    POST <twilio.public_base_url><alerts.path>/<source>
    Content-Type: application/json
    X-Tanfang-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>
    {"events": [{"device_id": "HX-0001", "event": "pressed", "at": "2026-11-03T10:05:00+08:00"}]}

The secret of source ``huaxin`` is ``TANFANG_ALERT_SECRET_HUAXIN`` (read by core/settings.py only).
Checked in this order, before the body is used for anything: the source has a secret (else 403:
fail closed), the header is well formed, its time is within ``alerts.signature_max_age_seconds``
of now (else 403: an old request is a replay), the body is no longer than ``alerts.max_body_bytes``
(else 413; it is read in chunks and dropped at the limit), the HMAC matches (constant time; else
403), and that signature was not accepted before (a ``CallbackReceipt``; else 409). Only then is
the JSON read (400 when it is not), every event checked (422 with every reason; nothing written;
events older than ``alerts.max_event_age_minutes`` are refused) and the batch ingested.
Mount: ``routes.extend(tanfang.web.alerts.routes(app))`` in the web app's route list.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import time
from typing import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core import alerts
from core.app import App
from data.models import CallbackReceipt

log = logging.getLogger("tanfang.alerts")

HEADER = "X-Tanfang-Signature"
SOURCE_RE = re.compile(r"^[a-z0-9_]{1,64}$")
RECEIPT_CHANNEL = "alerts"


class Replay(Exception):
    pass


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body``."""
    return hmac.new(secret.encode(), f"{int(timestamp)}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value a vendor sends (used by tests, the sample sender and vendors' docs)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={ts},v1={signature(secret, ts, body)}"


def parse_header(value: str | None) -> tuple[int | None, list[str], str | None]:
    """``t=..,v1=..[,v1=..]`` -> (timestamp, signatures, None) or (None, [], why)."""
    if not value:
        return None, [], f"no {HEADER} header"
    ts, sigs = None, []
    for part in value.split(","):
        key, _, val = part.strip().partition("=")
        if key == "t" and val.isdigit():
            ts = int(val)
        elif key == "v1" and re.fullmatch(r"[0-9a-f]{64}", val):
            sigs.append(val)
    if ts is None or not sigs:
        return None, [], f"malformed {HEADER} header"
    return ts, sigs, None


def check_header(secret: str | None, header: str | None, now: float, max_age: int) -> str | None:
    """Why a request is refused before its body is read: no secret, no or a bad header, stale."""
    if not secret:
        return "no secret configured for this source"
    ts, _sigs, why = parse_header(header)
    if why:
        return why
    if abs(now - ts) > max_age:
        return f"signature time {ts} is more than {max_age}s from now"
    return None


def check(secret: str | None, header: str | None, body: bytes, now: float, max_age: int) -> str | None:
    """Why a signed request is refused, or None when it is good (pure; table-tested)."""
    why = check_header(secret, header, now, max_age)
    if why:
        return why
    ts, sigs, _ = parse_header(header)
    expected = signature(secret, ts, body)
    if not any(hmac.compare_digest(expected, s) for s in sigs):
        return "signature does not match"
    return None


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it grows past ``limit`` bytes (the rest is not kept)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _store(app: App, source: str, sig: str, rows: list, now: dt.datetime) -> dict:
    """One unit of work: the receipt (replays refused) and the whole batch, or nothing."""
    settings = app.settings
    with app.db.session() as s:
        key = f"{source}:{sig}"
        if s.scalar(select(CallbackReceipt.id).where(CallbackReceipt.channel == RECEIPT_CHANNEL,
                                                     CallbackReceipt.key == key)):
            raise Replay(key)
        s.add(CallbackReceipt(channel=RECEIPT_CHANNEL, key=key, received_at=now))
        result = alerts.ingest(s, settings, rows, source=source, vendor=source, registered_only=True, now=now,
                               max_age=dt.timedelta(minutes=settings.alerts.max_event_age_minutes))
        return result.as_dict()


def _events_of(payload) -> list | None:
    if isinstance(payload, dict):
        payload = payload.get("events")
    return payload if isinstance(payload, list) else None


def routes(app: App, *, clock: Callable[[], float] = time.time) -> list[Route]:
    """The signed alert route of the web app (``clock``: unix seconds, for tests)."""
    cfg = app.settings.alerts

    def refuse(request: Request, status: int, why: str) -> JSONResponse:
        client = request.client.host if request.client else "?"
        log.warning("refused alert %s from %s: %s", request.url.path, client, why)
        return JSONResponse({"ok": False, "error": why}, status_code=status)

    async def receive(request: Request):
        source = request.path_params["source"].lower()
        stored = app.settings.secrets.alert_secrets.get(source) if SOURCE_RE.match(source) else None
        secret = stored.get_secret_value() if stored else None
        header = request.headers.get(HEADER)
        why = check_header(secret, header, clock(), cfg.signature_max_age_seconds)
        if why:
            return refuse(request, 403, why)  # no secret, no header, stale: the body is never read
        body = await read_limited(request, cfg.max_body_bytes)
        if body is None:
            return refuse(request, 413, f"body larger than {cfg.max_body_bytes} bytes")
        why = check(secret, header, body, clock(), cfg.signature_max_age_seconds)
        if why:
            return refuse(request, 403, why)
        try:
            rows = _events_of(json.loads(body))
        except ValueError:
            rows = None
        if rows is None:
            return refuse(request, 400, "body must be JSON: a list of events or {\"events\": [...]}")
        sig = parse_header(header)[1][0]
        now = dt.datetime.fromtimestamp(clock(), dt.timezone.utc).replace(tzinfo=None)
        try:
            result = await asyncio.to_thread(_store, app, source, sig, rows, now)
        except (Replay, IntegrityError):
            return refuse(request, 409, "this signed request was already accepted (replay)")
        except alerts.BatchError as exc:
            log.warning("alert batch from %s refused: %s", source, exc)
            return JSONResponse({"ok": False, "error": str(exc), "errors": [str(e) for e in exc.errors]},
                                status_code=422)
        return JSONResponse({"ok": True, **result})

    return [Route(f"{cfg.path.rstrip('/')}/{{source}}", receive, methods=["POST"])]
