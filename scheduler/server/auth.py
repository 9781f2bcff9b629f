"""API keys (CELERYGRAPH_API_KEYS): every endpoint but the health check wants one, as
`Authorization: Bearer <key>` or as the `x-api-key` header the LangGraph SDKs send.

Without keys the server would serve anyone who reaches it, so it refuses to bind anything
but loopback (`check_bind`). Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from scheduler.server import encode

OPEN_PATHS = frozenset({"/ok"})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: tuple[str, ...]) -> None:
    """Refuse to serve a non-loopback address with no keys configured."""
    if not keys and not is_loopback(host):
        raise SystemExit(
            f"error: refusing to serve {host} without API keys: set CELERYGRAPH_API_KEYS "
            "(comma-separated) or bind to 127.0.0.1")


def _presented(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"x-api-key":
            return value.decode("latin-1")
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
    return None


class ApiKeyMiddleware:
    """401 with a JSON `detail` for a request without a valid key; no keys: all pass."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]) -> None:
        self.app = app
        self.keys = tuple(k.encode() for k in keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        presented = _presented(scope)
        token = presented.encode() if presented is not None else b""
        # Check every key, so the time taken does not say which one nearly matched.
        valid = False
        for key in self.keys:
            valid |= hmac.compare_digest(token, key)
        if presented is not None and valid:
            await self.app(scope, receive, send)
            return
        detail = "Missing API key" if presented is None else "Invalid API key"
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": encode.dumps({"detail": detail})})
