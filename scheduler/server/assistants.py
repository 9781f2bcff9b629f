"""`/assistants`: one assistant per graph the cluster runs (the reference server's
"system" assistants). User-created assistants (their own config and context, versions) are
not implemented: those endpoints answer 501 naming what is missing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from scheduler.server.backend import Backend, assistant_id, backend_of
from scheduler.server.http import ApiError, JSONResponse, blocking, body, field

# Assistants exist as long as their graphs: no creation time of their own.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC).isoformat()


def assistant(ref: str) -> dict[str, Any]:
    return {"assistant_id": assistant_id(ref), "graph_id": ref, "name": ref,
            "description": None, "config": {}, "context": {}, "metadata":
            {"created_by": "system"}, "version": 1, "created_at": EPOCH, "updated_at": EPOCH}


def _matching(backend: Backend, payload: dict[str, Any]) -> list[dict[str, Any]]:
    graph_id = field(payload, "graph_id", str)
    name = field(payload, "name", str)
    metadata = field(payload, "metadata", dict, {})
    found = []
    for ref in backend.graph_refs():
        item = assistant(ref)
        if graph_id is not None and graph_id not in (ref, ref.rsplit(":", 1)[-1]):
            continue
        if name is not None and name not in item["name"]:
            continue
        if any(item["metadata"].get(k) != v for k, v in metadata.items()):
            continue
        found.append(item)
    return found


async def search(request: Request) -> JSONResponse:
    payload = await body(request)
    limit = field(payload, "limit", int, 10)
    offset = field(payload, "offset", int, 0)
    found = await blocking(_matching, backend_of(request), payload)
    if field(payload, "sort_order", str) == "desc":
        found.reverse()
    return JSONResponse(found[offset:offset + limit])


async def count(request: Request) -> JSONResponse:
    payload = await body(request)
    return JSONResponse(len(await blocking(_matching, backend_of(request), payload)))


async def get(request: Request) -> JSONResponse:
    ref = await blocking(backend_of(request).graph_of, request.path_params["assistant_id"])
    return JSONResponse(assistant(ref))


async def graph(request: Request) -> JSONResponse:
    """The graph drawn as nodes and edges, in the reference server's JSON shape."""
    backend = backend_of(request)
    ref = await blocking(backend.graph_of, request.path_params["assistant_id"])
    if request.query_params.get("xray", "false").lower() not in ("false", "0"):
        raise ApiError(422, "xray is not supported by celerygraph serve")
    view = (await blocking(lambda: backend.graph(ref).get_graph()))
    return JSONResponse({
        "nodes": [{"id": n, "type": "schema" if n.startswith("__") else "runnable",
                   "data": n} for n in view.nodes],
        "edges": [{"source": s, "target": t, "conditional": c,
                   **({"data": label} if label is not None else {})}
                  for s, t, c, label in view.edges],
    })


async def versions(request: Request) -> JSONResponse:
    ref = await blocking(backend_of(request).graph_of, request.path_params["assistant_id"])
    return JSONResponse([assistant(ref)])


async def not_implemented(request: Request) -> JSONResponse:
    raise ApiError(501, f"{request.method} {request.url.path}: user-created assistants "
                   "(create, update, delete, set version), schemas and subgraphs are not "
                   "implemented by celerygraph serve; every graph the workers run is an "
                   "assistant")


routes = [
    Route("/assistants/search", search, methods=["POST"]),
    Route("/assistants/count", count, methods=["POST"]),
    Route("/assistants", not_implemented, methods=["POST"]),
    Route("/assistants/{assistant_id}", get, methods=["GET"]),
    Route("/assistants/{assistant_id}", not_implemented, methods=["PATCH", "DELETE"]),
    Route("/assistants/{assistant_id}/graph", graph, methods=["GET"]),
    Route("/assistants/{assistant_id}/versions", versions, methods=["POST"]),
    Route("/assistants/{assistant_id}/latest", not_implemented, methods=["POST"]),
    Route("/assistants/{assistant_id}/schemas", not_implemented, methods=["GET"]),
    Route("/assistants/{assistant_id}/subgraphs", not_implemented, methods=["GET"]),
    Route("/assistants/{assistant_id}/subgraphs/{namespace}", not_implemented,
          methods=["GET"]),
]
