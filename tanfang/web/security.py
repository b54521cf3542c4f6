"""Web security of the one ASGI app (docs/security.md, issue #14.17–22): response headers, the
client's scheme and address behind a reverse proxy, cookie flags and CSRF tokens.

* Every HTTP response gets a Content-Security-Policy (no inline script unless it carries the
  request's nonce, no inline style, no framing), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY`` and, over https,
  ``Strict-Transport-Security``. Everything but static files is ``Cache-Control: no-store``:
  dashboard pages and exports carry personal data and must not stay in a browser or proxy cache.
* ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed only from ``web.trusted_proxies``
  (uvicorn's ``ProxyHeadersMiddleware``, applied by the app itself so that the setting is the only
  switch); the scheme decides the cookies' ``Secure`` flag (``web.cookie_secure: auto``).
* CSRF: a signed double-submit token. The browser holds a random nonce cookie (HttpOnly,
  SameSite=Strict); a form carries HMAC(key, nonce | session cookie). A POST whose token does not
  match is refused with 403 before anything is read or written.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.datastructures import MutableHeaders

CSRF_COOKIE = "tanfang_csrf"
CSRF_FIELD = "csrf"
STATIC_PREFIXES = ("/dashboard/static/",)
HSTS = "max-age=31536000"


def content_security_policy(nonce: str) -> str:
    """Only our own style sheet and images; scripts only with the response's nonce; no framing."""
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def security_headers(path: str, nonce: str, https: bool) -> dict[str, str]:
    """The headers every response of ``path`` carries (pure; a route's own value wins)."""
    headers = {
        "content-security-policy": content_security_policy(nonce),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
        "permissions-policy": "camera=(), microphone=(), geolocation=()",
    }
    if not path.startswith(STATIC_PREFIXES):
        headers["cache-control"] = "no-store"
    if https:
        headers["strict-transport-security"] = HSTS
    return headers


class SecurityHeaders:
    """ASGI middleware: a CSP nonce per request (``request.state.csp_nonce``) and the headers of
    :func:`security_headers` on every HTTP response. Websockets pass untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        wanted = security_headers(scope.get("path", ""), nonce, scope.get("scheme") == "https")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in wanted.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def secure_cookies(settings, scheme: str) -> bool:
    """``Secure`` on cookies: always when configured so, else when the request came over https."""
    return settings.web.cookie_secure == "always" or scheme == "https"


# ---- CSRF ------------------------------------------------------------------------------------------
def new_nonce() -> str:
    return secrets.token_urlsafe(32)


def valid_nonce(value: str | None) -> bool:
    return bool(value) and 20 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum()


def csrf_token(key: bytes, nonce: str, session_cookie: str | None) -> str:
    """The token a form of this browser (nonce) and this login (session cookie) must send back."""
    msg = f"csrf|{nonce}|{hashlib.sha256((session_cookie or '').encode()).hexdigest()}"
    return hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()


def csrf_ok(key: bytes, nonce: str | None, session_cookie: str | None, sent: str | None) -> bool:
    if not valid_nonce(nonce) or not sent:
        return False
    return hmac.compare_digest(csrf_token(key, nonce, session_cookie), str(sent))
