"""Values as the Agent Server's JSON: what a graph's state, a stream chunk or a store item
holds, for clients in any language.

The serde (`graphdef.serde`) tags types so that Python gets them back; HTTP clients want
the plain JSON the reference server sends instead: pydantic models (LangChain messages) as
their `model_dump()`, dataclasses (an `Interrupt`: `{"value", "id"}`) and named tuples as
objects, exceptions as `{"error", "message"}`, sets and tuples as arrays.
"""

from __future__ import annotations

import base64
import dataclasses
from decimal import Decimal
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump()
    as_dict = getattr(value, "_asdict", None)
    if isinstance(value, tuple) and callable(as_dict):
        return as_dict()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "message": str(value)}
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, Decimal):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    """`value` as JSON bytes; a type with no JSON form raises TypeError naming it."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def plain(value: Any) -> Any:
    """`value` as plain JSON types (dicts, lists, strings, numbers)."""
    return orjson.loads(dumps(value))
