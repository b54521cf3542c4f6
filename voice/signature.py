"""``X-Twilio-Signature`` checks for every Twilio webhook and the media-stream upgrade.

Twilio signs each request with the account's auth token over the URL *it* called (the public
URL, not the one the proxy forwards to us) plus, for form POSTs, the sorted form parameters.
The official ``twilio.request_validator.RequestValidator`` does the arithmetic; this module
rebuilds the public URL from ``twilio.public_base_url`` and refuses (403, logged) anything
unsigned, forged, or arriving while no auth token is configured.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import urlsplit, urlunsplit

from starlette.requests import HTTPConnection, Request
from twilio.request_validator import RequestValidator

from core.settings import Settings

log = logging.getLogger("tanfang.voice.signature")

HEADER = "X-Twilio-Signature"


def public_url(public_base_url: str, path: str, query: str = "", *, websocket: bool = False) -> str:
    """The URL Twilio used: the configured public base + the request's path and query."""
    base = urlsplit(public_base_url.rstrip("/"))
    scheme = base.scheme
    if websocket:
        scheme = {"https": "wss", "http": "ws"}.get(scheme, scheme)
    return urlunsplit((scheme, base.netloc, base.path + path, query, ""))


class TwilioSignature:
    """Validates requests against the auth token in ``settings.secrets.twilio_auth_token``."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @property
    def _validator(self) -> RequestValidator | None:
        token = self.settings.secrets.twilio_auth_token
        return RequestValidator(token.get_secret_value()) if token else None

    def _url_for(self, conn: HTTPConnection, *, websocket: bool) -> str:
        base = self.settings.twilio.public_base_url
        if not base:
            # Without a configured public URL the request's own URL is all we have.
            return str(conn.url)
        return public_url(base, conn.url.path, conn.url.query, websocket=websocket)

    def _refuse(self, conn: HTTPConnection, why: str) -> bool:
        client = conn.client.host if conn.client else "?"
        log.warning("refused Twilio %s %s from %s: %s", conn.scope.get("type"), conn.url.path, client, why)
        return False

    async def check_request(self, request: Request) -> bool:
        """For form-encoded webhooks (voice, status). Reads the form (Starlette caches it) only
        once a signature is there to check."""
        signed = self._signed(request)
        return signed is not None and self._matches(request, *signed, await request.form(), websocket=False)

    def check_websocket(self, conn: HTTPConnection) -> bool:
        """For the media-stream upgrade: Twilio signs the ``wss://`` URL with no parameters."""
        signed = self._signed(conn)
        return signed is not None and self._matches(conn, *signed, {}, websocket=True)

    def _signed(self, conn: HTTPConnection) -> tuple[RequestValidator, str] | None:
        """The validator and the request's signature; None (refused, logged) when either is missing."""
        validator, signature = self._validator, conn.headers.get(HEADER)
        if validator is None:
            self._refuse(conn, "no Twilio auth token configured (TANFANG_TWILIO_AUTH_TOKEN)")
        elif not signature:
            self._refuse(conn, "no X-Twilio-Signature header")
        else:
            return validator, signature
        return None

    def _matches(self, conn: HTTPConnection, validator: RequestValidator, signature: str, params, *,
                 websocket: bool) -> bool:
        url = self._url_for(conn, websocket=websocket)
        if not validator.validate(url, params, signature):
            return self._refuse(conn, f"signature does not match {url}")
        return True


def sign(auth_token: str, url: str, params: dict | None = None) -> str:
    """The signature Twilio would send (used by the simulator and tests)."""
    return RequestValidator(auth_token).compute_signature(url, params or {})


# -- the per-call media-stream token -----------------------------------------------------------------
# The upgrade's signature covers a fixed URL, the same for every call: on its own it could be replayed
# for ever. The voice webhook therefore gives each call's <Stream> a token, an HMAC over the attempt,
# the CallSid and an expiry, keyed with the auth token; the stream's ``start`` must carry it.
STREAM_TOKEN_SECONDS = 300


def stream_token(secret: str, attempt_id: int | str, call_sid: str, expires: int) -> str:
    msg = f"{attempt_id}:{call_sid}:{int(expires)}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def check_stream_token(secret: str, attempt_id: int | str | None, call_sid: str | None,
                       expires: int | str | None, token: str | None, now: float) -> str | None:
    """Why the stream's ``start`` is refused, or None when its token is good."""
    if not secret:
        return "no Twilio auth token configured"
    if not call_sid or attempt_id in (None, "") or not token or expires in (None, ""):
        return "start without callSid, attempt, token or expiry"
    try:
        expires = int(expires)
    except (TypeError, ValueError):
        return f"bad expiry {expires!r}"
    if expires < now:
        return "stream token expired"
    if not hmac.compare_digest(stream_token(secret, attempt_id, call_sid, expires), str(token)):
        return "stream token does not match this call"
    return None
