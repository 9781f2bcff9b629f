"""API keys (CELERYGRAPH_API_KEYS): every endpoint but the health check wants one, as
`Authorization: Bearer <key>` or as the `x-api-key` header the LangGraph SDKs send.

Without keys the server would serve anyone who reaches it, so it refuses to bind anything
but loopback (`check_bind`). Keys are compared in constant time.

A key may be limited to some graphs (`key:graph1|graph2`, `scheduler.server.config`). For
its requests `visible_graphs` holds those graphs, and every endpoint sees only them: other
graphs' assistants, and threads, runs and crons of other graphs, do not exist for it (404,
as an unknown id: a limited key cannot tell another graph's thread from no thread). Threads
that no run has used yet belong to no graph and are visible to every key. The store
(`/store`), which no graph owns, answers a limited key 403.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

from scheduler.server import encode

OPEN_PATHS = frozenset({"/ok"})
# Paths a limited key may not use: what they serve belongs to no graph.
UNLIMITED_PATHS = ("/store",)

# The graphs the current request's key may use; None: every graph.
visible_graphs: ContextVar[frozenset[str] | None] = ContextVar("visible_graphs", default=None)


def limited() -> bool:
    """Whether the current request's key is limited to some graphs (worth reading which
    graph a thread belongs to)."""
    return visible_graphs.get() is not None


def may_use(ref: str | None) -> bool:
    """Whether the current request's key may use graph `ref` (None: a thread no run has
    used yet, visible to every key)."""
    allowed = visible_graphs.get()
    if allowed is None or ref is None:
        return True
    return ref in allowed or ref.rsplit(":", 1)[-1] in allowed


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

    def __init__(self, app: ASGIApp, keys: tuple[str, ...],
                 limits: Mapping[str, frozenset[str]] | None = None) -> None:
        self.app = app
        self.keys = tuple(k.encode() for k in keys)
        self.limits = {k.encode(): v for k, v in (limits or {}).items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        presented = _presented(scope)
        token = presented.encode() if presented is not None else b""
        # Check every key, so the time taken does not say which one nearly matched.
        matched: bytes | None = None
        for key in self.keys:
            if hmac.compare_digest(token, key):
                matched = key
        if presented is None or matched is None:
            detail = "Missing API key" if presented is None else "Invalid API key"
            await _refuse(send, 401, detail, [(b"www-authenticate", b"Bearer")])
            return
        limit = self.limits.get(matched)
        if limit is not None and scope["path"].startswith(UNLIMITED_PATHS):
            await _refuse(send, 403, "This API key is limited to some graphs; the store "
                          "belongs to none", [])
            return
        reset = visible_graphs.set(limit)
        try:
            await self.app(scope, receive, send)
        finally:
            visible_graphs.reset(reset)


async def _refuse(send: Send, status: int, detail: str,
                  headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body", "body": encode.dumps({"detail": detail})})
