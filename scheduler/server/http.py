"""Request and response plumbing every endpoint shares: JSON bodies checked field by field,
errors as the Agent Server gives them (`{"detail": ...}` with its status code), and blocking
work (Redis, Celery) moved off the event loop."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from graphdef.errors import CeleryGraphError
from scheduler.server import encode

T = TypeVar("T")


class ApiError(CeleryGraphError):
    """An error a client caused: answered with `status` and `{"detail": detail}`."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def unsupported(name: str, why: str = "") -> ApiError:
    """A parameter or feature the SDK can send that this server does not implement: a 422
    naming it, never silently ignored."""
    return ApiError(422, f"{name} is not supported by celerygraph serve"
                    + (f": {why}" if why else ""))


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode.dumps(content)


async def body(request: Request) -> dict[str, Any]:
    """The request's JSON object body; an empty body is `{}`."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(422, f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ApiError(422, "Request body must be a JSON object")
    return value


def field(payload: Mapping[str, Any], name: str, kind: type | tuple[type, ...],
          default: Any = None) -> Any:
    """`payload[name]` if it has type `kind` (None counts as absent), else a 422 naming it."""
    value = payload.get(name)
    if value is None:
        return default
    if isinstance(value, bool) and kind in (int, float):
        raise ApiError(422, f"{name} must be a number, got a boolean")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ApiError(422, f"{name} must be of type {names}, got {type(value).__name__}")
    return value


def choice(payload: Mapping[str, Any], name: str, allowed: tuple[str, ...],
           default: str | None) -> str | None:
    value = field(payload, name, str, default)
    if value is not None and value not in allowed:
        raise ApiError(422, f"{name} must be one of {list(allowed)}, got {value!r}")
    return value  # type: ignore[no-any-return]


def paged(payload: Mapping[str, Any], default_limit: int = 10) -> slice:
    """The slice of a search's results that its body's `limit` and `offset` ask for (the
    reference server's defaults: 10 from the first), checked before anything is read."""
    limit = field(payload, "limit", int, default_limit)
    offset = field(payload, "offset", int, 0)
    return slice(offset, offset + limit)


def reject_unknown(payload: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    """A field this endpoint does not know: 422 naming it (a typo must not be ignored)."""
    extra = sorted(set(payload) - known)
    if extra:
        raise ApiError(422, f"Unknown field(s) for {where}: {', '.join(extra)}")


def query_int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ApiError(422, f"{name} must be an integer, got {raw!r}") from exc


def query_flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() in ("true", "1", "yes")


def check_uuid(value: str, what: str) -> str:
    """The reference server's ids are UUIDs; anything else is a 422, as there."""
    try:
        uuid.UUID(value)
    except ValueError as exc:
        raise ApiError(422, f"Invalid {what}: must be a UUID") from exc
    return value


async def blocking(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `func` in the thread pool: Redis and Celery clients here are synchronous."""
    return await run_in_threadpool(func, *args, **kwargs)
