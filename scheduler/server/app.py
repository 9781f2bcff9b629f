"""The ASGI app of `celerygraph serve`: the LangGraph Agent Server's HTTP API over the
cluster, and the command that serves it with uvicorn.

Errors come out as the Agent Server gives them, `{"detail": "..."}`: 404 for an unknown
assistant, thread, run or checkpoint, 409 for a busy thread under `reject` (and a thread
that exists already), 422 for a malformed body or a parameter this server does not
implement (named), 400 for a resume with nothing to resume.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graphdef.errors import CeleryGraphError, InvalidResumeError
from scheduler.celery_app import settings_from_env
from scheduler.errors import (
    ThreadBusyError,
    UnknownCheckpointError,
    UnknownGraphError,
    UnknownRunError,
)
from scheduler.server import assistants, crons, runs, store_items, thread_stream, threads
from scheduler.server.auth import ApiKeyMiddleware, check_bind
from scheduler.server.backend import Backend
from scheduler.server.config import ServerSettings
from scheduler.server.http import ApiError, JSONResponse
from scheduler.settings import Settings

log = logging.getLogger("celerygraph.server")

BUSY = ("Thread is already running a task. Wait for it to finish or choose a different "
        "multitask strategy.")


def _status(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, ApiError):
        return exc.status, exc.detail
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail)
    if isinstance(exc, ThreadBusyError):
        return 409, f"{BUSY} ({exc})"
    if isinstance(exc, UnknownGraphError | UnknownRunError | UnknownCheckpointError):
        return 404, str(exc)
    if isinstance(exc, InvalidResumeError):
        return 400, str(exc)
    if isinstance(exc, NotImplementedError | ValueError | CeleryGraphError):
        return 422, str(exc)
    return 500, "Internal server error"


async def _error(request: Request, exc: Exception) -> Response:
    status, detail = _status(exc)
    if status >= 500:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": detail}, status_code=status)


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def info(request: Request) -> JSONResponse:
    return JSONResponse({"version": "celerygraph", "flags": {"assistants": True,
                                                             "crons": True}})


def create_app(settings: Settings, server: ServerSettings) -> Starlette:
    """The app, connected to the cluster `settings` name (and the graph modules loaded)."""
    backend = Backend.connect(settings, server)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await backend.close()

    app = Starlette(
        routes=[Route("/ok", ok), Route("/info", info), *assistants.routes, *threads.routes,
                *crons.routes, *runs.routes, *store_items.routes,
                Route("/threads/{thread_id}/stream", thread_stream.join,
                      methods=["GET"])],
        middleware=[Middleware(ApiKeyMiddleware, keys=server.api_keys,
                               limits=server.key_graphs)],
        exception_handlers={ApiError: _error, HTTPException: _error,
                            CeleryGraphError: _error, ValueError: _error,
                            NotImplementedError: _error, Exception: _error},
        lifespan=lifespan,
    )
    app.state.backend = backend
    return app


def serve(host: str, port: int) -> None:
    """Serve the API until interrupted, configured from the environment; refuses a
    non-loopback `host` without API keys."""
    import uvicorn

    server = ServerSettings.from_env()
    check_bind(host, server.api_keys)
    # With the fault suite's faults: a server starts runs (`Client.start_here`).
    uvicorn.run(create_app(settings_from_env(), server), host=host, port=port,
                log_level="info", timeout_graceful_shutdown=5)
