"""Security of every response: the bearer token check (when configured) and the headers
(Content-Security-Policy without inline script, no framing, no sniffing, no referrer, no
caching), as one ASGI middleware wrapping the whole application."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


def token_matches(header: bytes | None, token: str) -> bool:
    """True when an ``Authorization`` header value is ``Bearer <token>`` (constant time)."""
    if header is None:
        return False
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(given.strip(), token.encode())


class SecurityMiddleware:
    """Refuses requests without the bearer token (when one is set) with 401, and sets the
    security headers on every HTTP response, errors included."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {h for h, _ in HEADERS}
                kept = [(k, v) for k, v in message.get("headers", [])
                        if k.lower() not in names]
                message["headers"] = kept + list(HEADERS)
            await send(message)

        if self.token is not None:
            header = dict(scope.get("headers") or []).get(b"authorization")
            if not token_matches(header, self.token):
                body = json.dumps({"detail": "a bearer token is required"}).encode()
                await send_secured({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="snapfim"')]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send_secured)
