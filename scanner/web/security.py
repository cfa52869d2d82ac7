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


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def loopback_host(header: bytes | None) -> bool:
    """True when a ``Host`` header names this machine's loopback (``localhost``,
    ``127.0.0.1`` or ``[::1]``, with or without a port). Without a token the service only
    answers such requests: a page on another site that rebinds its DNS name to 127.0.0.1
    sends its own name as the Host, and gets nothing."""
    if not header:
        return False
    host = header.decode("latin-1").strip().lower()
    if host.startswith("["):
        name, bracket, port = host[1:].partition("]")
        if not bracket:
            return False
        port = port.removeprefix(":") if port.startswith(":") else "x" if port else ""
    else:
        name, _, port = host.partition(":")
    return name in LOOPBACK_NAMES and (port == "" or port.isdigit())


class SecurityMiddleware:
    """Refuses requests without the bearer token (when one is set) with 401, and, without a
    token, requests whose Host is not a loopback name with 400 (DNS rebinding); sets the
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

        if self.token is None and not loopback_host(
                dict(scope.get("headers") or []).get(b"host")):
            await _refuse(send_secured, 400, "without a token only a loopback Host is served "
                                             "(localhost, 127.0.0.1, [::1])", [])
            return
        if self.token is not None:
            header = dict(scope.get("headers") or []).get(b"authorization")
            if not token_matches(header, self.token):
                await _refuse(send_secured, 401, "a bearer token is required",
                              [(b"www-authenticate", b'Bearer realm="snapfim"')])
                return
        await self.app(scope, receive, send_secured)


async def _refuse(send: Send, status: int, detail: str,
                  headers: list[tuple[bytes, bytes]]) -> None:
    """Answer ``status`` with ``{"detail": ...}`` as JSON."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
