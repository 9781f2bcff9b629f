"""`/store`: items in the cluster's Redis store (`graphdef.store.redis.RedisStore`), the
one nodes read and write when their graph is compiled with a RedisStore of the same prefix
(CELERYGRAPH_API_STORE_PREFIX). A missing item is `null` with 200, as the reference
server answers."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler.server.backend import backend_of
from scheduler.server.http import ApiError, JSONResponse, blocking, body, field, reject_unknown


def _namespace(raw: Any, name: str = "namespace") -> tuple[str, ...]:
    if not isinstance(raw, list | tuple) or not all(isinstance(x, str) for x in raw):
        raise ApiError(422, f"{name} must be a list of strings")
    for label in raw:
        if not label or "." in label:
            raise ApiError(422, f"Namespace label {label!r} must be a non-empty string "
                           "without periods")
    return tuple(raw)


async def put(request: Request) -> Response:
    payload = await body(request)
    reject_unknown(payload, frozenset({"namespace", "key", "value", "index", "ttl"}),
                   "PUT /store/items")
    namespace = _namespace(payload.get("namespace") or [])
    key = field(payload, "key", str)
    value = field(payload, "value", dict)
    if key is None or value is None:
        raise ApiError(422, "key and value (an object) are required")
    index = payload.get("index")
    if index not in (None, False) and not isinstance(index, list):
        raise ApiError(422, "index must be false or a list of paths")
    kv = backend_of(request).kv
    ttl = field(payload, "ttl", (int, float))
    if ttl is None:
        await blocking(kv.put, namespace, key, value, index)
    else:
        await blocking(kv.put, namespace, key, value, index, ttl=ttl)
    return Response(status_code=204)


async def get(request: Request) -> JSONResponse:
    namespace = _namespace([n for n in request.query_params.get("namespace", "").split(".")
                            if n])
    key = request.query_params.get("key")
    if not key:
        raise ApiError(422, "key is required")
    refresh = request.query_params.get("refresh_ttl")
    found = await blocking(backend_of(request).kv.get, namespace, key,
                           refresh_ttl=None if refresh is None else refresh.lower() == "true")
    return JSONResponse(None if found is None else found.dict())


async def delete(request: Request) -> Response:
    payload = await body(request)
    reject_unknown(payload, frozenset({"namespace", "key"}), "DELETE /store/items")
    key = field(payload, "key", str)
    if key is None:
        raise ApiError(422, "key is required")
    await blocking(backend_of(request).kv.delete, _namespace(payload.get("namespace") or []),
                   key)
    return Response(status_code=204)


async def search(request: Request) -> JSONResponse:
    payload = await body(request)
    reject_unknown(payload, frozenset({"namespace_prefix", "filter", "limit", "offset",
                                       "query", "refresh_ttl"}), "POST /store/items/search")
    prefix = _namespace(payload.get("namespace_prefix") or [], "namespace_prefix")
    found = await blocking(
        backend_of(request).kv.search, prefix, query=field(payload, "query", str),
        filter=field(payload, "filter", dict), limit=field(payload, "limit", int, 10),
        offset=field(payload, "offset", int, 0),
        refresh_ttl=field(payload, "refresh_ttl", bool))
    return JSONResponse({"items": [i.dict() for i in found]})


async def namespaces(request: Request) -> JSONResponse:
    payload = await body(request)
    reject_unknown(payload, frozenset({"prefix", "suffix", "max_depth", "limit", "offset"}),
                   "POST /store/namespaces")
    prefix = payload.get("prefix")
    suffix = payload.get("suffix")
    found = await blocking(
        backend_of(request).kv.list_namespaces,
        prefix=None if prefix is None else _namespace(prefix, "prefix"),
        suffix=None if suffix is None else _namespace(suffix, "suffix"),
        max_depth=field(payload, "max_depth", int), limit=field(payload, "limit", int, 100),
        offset=field(payload, "offset", int, 0))
    return JSONResponse({"namespaces": [list(n) for n in found]})


routes = [
    Route("/store/items", put, methods=["PUT"]),
    Route("/store/items", get, methods=["GET"]),
    Route("/store/items", delete, methods=["DELETE"]),
    Route("/store/items/search", search, methods=["POST"]),
    Route("/store/namespaces", namespaces, methods=["POST"]),
]
