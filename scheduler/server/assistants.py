"""`/assistants`: one assistant per graph the cluster runs (the reference server's "system"
assistants), and assistants users create: a graph with its own config, context, metadata,
name and description, versioned (each update is a new version; any version can be made
the latest again), kept in Redis (`AssistantRecords`).

A graph's own assistant is derived from the graph, not stored: it cannot be updated or
deleted (the reference server lets one edit it until it restarts and registers the graph
again); create an assistant for the graph instead.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler.server import schemas
from scheduler.server.backend import Backend, backend_of, graph_not_found, system_assistant
from scheduler.server.http import (
    ApiError,
    JSONResponse,
    blocking,
    body,
    check_uuid,
    choice,
    field,
    not_found,
    paged,
    query_flag,
    reject_unknown,
    unsupported,
)
from scheduler.server.threads import delete_thread

SEARCH_FIELDS = frozenset({"metadata", "graph_id", "name", "limit", "offset", "sort_by",
                           "sort_order", "select"})
CREATE_FIELDS = frozenset({"assistant_id", "graph_id", "config", "context", "metadata",
                           "if_exists", "name", "description"})
PATCH_FIELDS = frozenset({"graph_id", "config", "context", "metadata", "name",
                          "description"})
SORT_KEYS = ("assistant_id", "graph_id", "name", "created_at", "updated_at")
FIELDS = ("assistant_id", "graph_id", "name", "description", "config", "context", "metadata",
          "version", "created_at", "updated_at")


def contains(superset: Any, subset: Any) -> bool:
    """Postgres' `@>` on JSON objects, as the reference server filters metadata."""
    if isinstance(subset, dict) and isinstance(superset, dict):
        return all(k in superset and contains(superset[k], v) for k, v in subset.items())
    return bool(superset == subset)


def _all(backend: Backend) -> list[dict[str, Any]]:
    created = backend.created_assistants()
    taken = {a["assistant_id"] for a in created}
    return created + [a for a in map(system_assistant, backend.graph_refs())
                      if a["assistant_id"] not in taken]


def _matching(backend: Backend, payload: dict[str, Any], where: str) -> list[dict[str, Any]]:
    reject_unknown(payload, SEARCH_FIELDS, where)
    graph_id = field(payload, "graph_id", str)
    ref = _graph(backend, graph_id) if graph_id is not None else None
    name = field(payload, "name", str)
    metadata = field(payload, "metadata", dict, {})
    return [a for a in _all(backend)
            if (ref is None or a["graph_id"] == ref)
            and (name is None or name.lower() in str(a["name"]).lower())
            and contains(a["metadata"], metadata)]


def _graph(backend: Backend, graph_id: str) -> str:
    """A graph reference or a graph's attribute name, as a reference; 404 if unknown (the
    reference server's answer to a graph it does not serve)."""
    try:
        return backend.graph_ref(graph_id)
    except ApiError as exc:
        raise graph_not_found(graph_id, backend.graph_refs()) from exc


def _search(backend: Backend, payload: dict[str, Any]
            ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """A page of matching assistants, and the reference server's paging headers (what
    the SDK's `search(response_format="object")` reads as `next`)."""
    found = _matching(backend, payload, "POST /assistants/search")
    window = paged(payload)
    sort_by = str(choice(payload, "sort_by", SORT_KEYS, "created_at"))
    descending = choice(payload, "sort_order", ("asc", "desc"), "desc") == "desc"
    select = field(payload, "select", list)
    if select is not None and not set(select) <= set(FIELDS):
        raise ApiError(422, f"select must name fields among {list(FIELDS)}")
    lowered = sort_by in ("name", "graph_id")
    found.sort(key=lambda a: (str(a[sort_by]).lower() if lowered else str(a[sort_by])),
               reverse=descending)
    page = found[window]
    if select:
        page = [{k: a[k] for k in select} for a in page]
    if len(found) > window.stop:
        headers = {"X-Pagination-Total": str(window.stop + 1),
                   "X-Pagination-Next": str(window.stop)}
    else:
        headers = {"X-Pagination-Total": str(window.start + len(page))}
    return page, headers


async def search(request: Request) -> JSONResponse:
    page, headers = await blocking(_search, backend_of(request), await body(request))
    return JSONResponse(page, headers=headers)


async def count(request: Request) -> JSONResponse:
    payload = await body(request)
    reject_unknown(payload, frozenset({"metadata", "graph_id", "name"}),
                   "POST /assistants/count")
    return JSONResponse(len(await blocking(_matching, backend_of(request), payload,
                                           "POST /assistants/count")))


def _get(backend: Backend, assistant_id: str) -> dict[str, Any]:
    """The assistant; one whose graph is no longer served is hidden (404), as the reference
    hides it (its versions, update and delete still reach it, there as here)."""
    found = backend.assistant(assistant_id)
    if found["graph_id"] not in backend.graph_refs():
        raise not_found(f"Assistant {assistant_id!r}")
    return found


async def get(request: Request) -> JSONResponse:
    return JSONResponse(await blocking(_get, backend_of(request),
                                       request.path_params["assistant_id"]))


def _config_and_context(payload: dict[str, Any]) -> tuple[dict[str, Any] | None, Any]:
    """The request's config and context, kept in step as the reference server keeps them:
    an assistant's `configurable` is its context and the other way round."""
    config = field(payload, "config", dict)
    context = field(payload, "context", dict)
    if config is not None and config.get("configurable") and context:
        raise ApiError(400, "Cannot specify both configurable and context. Prefer setting "
                       "context alone.")
    if config is not None and config.get("configurable"):
        context = dict(config["configurable"])
    elif context:
        config = {**(config or {}), "configurable": dict(context)}
    return config, context


def _text(payload: dict[str, Any], name: str) -> str | None:
    return field(payload, name, str)  # type: ignore[no-any-return]


def _create(backend: Backend, payload: dict[str, Any]) -> dict[str, Any]:
    reject_unknown(payload, CREATE_FIELDS, "POST /assistants")
    graph_id = field(payload, "graph_id", str)
    if graph_id is None:
        raise ApiError(422, "graph_id is required")
    new_id = field(payload, "assistant_id", str) or str(uuid.uuid4())
    check_uuid(new_id, "assistant ID")
    if_exists = choice(payload, "if_exists", ("raise", "do_nothing"), "raise")
    config, context = _config_and_context(payload)
    wanted = {"assistant_id": new_id, "graph_id": _graph(backend, graph_id),
              "config": config or {}, "context": context or {},
              "metadata": field(payload, "metadata", dict, {}),
              "name": _text(payload, "name") or "Untitled",
              "description": _text(payload, "description")}
    existing = backend.created_assistant(new_id)
    if existing is None and new_id in {system_assistant(r)["assistant_id"]
                                       for r in backend.graph_refs()}:
        existing = backend.assistant(new_id)
    if existing is None:
        created = backend.assistants.create(wanted)
        if created is not None:
            return created
        existing = backend.assistant(new_id)
    if if_exists == "raise":
        raise ApiError(409, f"Assistant {new_id} already exists")
    return existing


async def create(request: Request) -> JSONResponse:
    return JSONResponse(await blocking(_create, backend_of(request), await body(request)))


def _created(backend: Backend, assistant_id: str) -> str:
    """The id of a user-created assistant; a graph's own assistant is refused (422), an
    unknown id is a 404."""
    check_uuid(assistant_id, "assistant ID")
    if backend.created_assistant(assistant_id) is not None:
        return assistant_id
    if any(system_assistant(r)["assistant_id"] == assistant_id for r in backend.graph_refs()):
        raise unsupported("changing a graph's own assistant", "it is derived from the graph; "
                          "create an assistant with this graph_id and its own config instead")
    raise not_found(f"Assistant {assistant_id}")


def _patch(backend: Backend, assistant_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    reject_unknown(payload, PATCH_FIELDS, "PATCH /assistants/{assistant_id}")
    _created(backend, assistant_id)
    config, context = _config_and_context(payload)
    fields: dict[str, Any] = {"metadata": field(payload, "metadata", dict, {})}
    graph_id = field(payload, "graph_id", str)
    if graph_id is not None:
        fields["graph_id"] = _graph(backend, graph_id)
    if config:
        fields["config"] = config
    if context is not None:
        fields["context"] = context
    for name in ("name", "description"):
        if _text(payload, name) is not None:
            fields[name] = payload[name]
    updated = backend.assistants.update(assistant_id, fields)
    if updated is None:
        raise not_found(f"Assistant {assistant_id}")
    return updated


async def patch(request: Request) -> JSONResponse:
    return JSONResponse(await blocking(_patch, backend_of(request),
                                       request.path_params["assistant_id"],
                                       await body(request)))


def _delete(backend: Backend, assistant_id: str, with_threads: bool) -> None:
    """Drop the assistant and its versions; its runs still going are cancelled, and with
    `delete_threads` the threads whose metadata names it go too."""
    _created(backend, assistant_id)
    store = backend.client.store
    for thread_id in backend.records.thread_ids() if with_threads else ():
        record = backend.records.thread(thread_id)
        if record is not None and record["metadata"].get("assistant_id") == assistant_id:
            delete_thread(backend, thread_id)
    for thread_id, run_id in store.active_runs():
        info = backend.records.run(thread_id, run_id)
        if info is not None and info.get("assistant_id") == assistant_id:
            backend.client.cancel(thread_id, run_id)
    if not backend.assistants.delete(assistant_id):
        raise not_found(f"Assistant {assistant_id}")


async def delete(request: Request) -> Response:
    await blocking(_delete, backend_of(request), request.path_params["assistant_id"],
                   query_flag(request, "delete_threads"))
    return Response(status_code=204)


def _versions(backend: Backend, assistant_id: str, payload: dict[str, Any]
              ) -> list[dict[str, Any]]:
    reject_unknown(payload, frozenset({"metadata", "limit", "offset"}),
                   "POST /assistants/{assistant_id}/versions")
    metadata = field(payload, "metadata", dict, {})
    limit = field(payload, "limit", int, 10)
    offset = field(payload, "offset", int, 0)
    created = backend.created_assistant(assistant_id)
    if created is None:
        found = backend.assistant(assistant_id)
        versions = [{k: found[k] for k in ("assistant_id", "version", "graph_id", "config",
                                           "context", "metadata", "name", "description",
                                           "created_at")}]
    else:
        versions = backend.assistants.versions(assistant_id)
    return [v for v in versions if contains(v["metadata"], metadata)][offset:offset + limit]


async def versions(request: Request) -> JSONResponse:
    return JSONResponse(await blocking(_versions, backend_of(request),
                                       request.path_params["assistant_id"],
                                       await body(request)))


def _set_latest(backend: Backend, assistant_id: str, payload: dict[str, Any]
                ) -> dict[str, Any]:
    reject_unknown(payload, frozenset({"version"}), "POST /assistants/{assistant_id}/latest")
    version = field(payload, "version", int)
    if version is None:
        raise ApiError(422, "version is required")
    _created(backend, assistant_id)
    try:
        updated = backend.assistants.set_latest(assistant_id, version)
    except KeyError:
        raise not_found(f"Version {version} for assistant {assistant_id}") from None
    if updated is None:
        raise not_found(f"Assistant {assistant_id}")
    return updated


async def set_latest(request: Request) -> JSONResponse:
    return JSONResponse(await blocking(_set_latest, backend_of(request),
                                       request.path_params["assistant_id"],
                                       await body(request)))


def _served_graph(backend: Backend, assistant_id: str) -> str:
    """The assistant's graph, read here from its code: 404 if no longer served."""
    return str(backend.served(backend.assistant(assistant_id))["graph_id"])


async def graph(request: Request) -> JSONResponse:
    """The graph drawn as nodes and edges, in the reference server's JSON shape."""
    backend = backend_of(request)
    ref = await blocking(_served_graph, backend, request.path_params["assistant_id"])
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


def _schemas(backend: Backend, assistant_id: str) -> dict[str, Any]:
    ref = _served_graph(backend, assistant_id)
    return {"graph_id": ref, **schemas.graph_schemas(backend.graph(ref).graph)}


async def get_schemas(request: Request) -> JSONResponse:
    return JSONResponse(await blocking(_schemas, backend_of(request),
                                       request.path_params["assistant_id"]))


def _subgraphs(backend: Backend, assistant_id: str, namespace: str | None, recurse: bool
               ) -> dict[str, Any]:
    root = backend.graph(_served_graph(backend, assistant_id)).graph
    return {ns: schemas.graph_schemas(sub)
            for ns, sub in schemas.subgraphs(root, namespace, recurse)}


async def get_subgraphs(request: Request) -> JSONResponse:
    return JSONResponse(await blocking(_subgraphs, backend_of(request),
                                       request.path_params["assistant_id"],
                                       request.path_params.get("namespace"),
                                       query_flag(request, "recurse")))


routes = [
    Route("/assistants", create, methods=["POST"]),
    Route("/assistants/search", search, methods=["POST"]),
    Route("/assistants/count", count, methods=["POST"]),
    Route("/assistants/{assistant_id}", get, methods=["GET"]),
    Route("/assistants/{assistant_id}", patch, methods=["PATCH"]),
    Route("/assistants/{assistant_id}", delete, methods=["DELETE"]),
    Route("/assistants/{assistant_id}/graph", graph, methods=["GET"]),
    Route("/assistants/{assistant_id}/versions", versions, methods=["POST"]),
    Route("/assistants/{assistant_id}/latest", set_latest, methods=["POST"]),
    Route("/assistants/{assistant_id}/schemas", get_schemas, methods=["GET"]),
    Route("/assistants/{assistant_id}/subgraphs", get_subgraphs, methods=["GET"]),
    Route("/assistants/{assistant_id}/subgraphs/{namespace}", get_subgraphs,
          methods=["GET"]),
]
