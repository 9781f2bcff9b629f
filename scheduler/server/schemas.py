"""A graph's JSON schemas as `GET /assistants/{id}/schemas` gives them, derived from the
graph's own types with pydantic, the way LangGraph and the reference server derive them:

- `input_schema`, `output_schema`: the StateGraph's input and output types;
- `state_schema`: a model `LangGraphState` with every state key, each optional, typed by
  what a node may write to it (the reducer's operand for an `Annotated` key);
- `context_schema`: the `context_schema` type; `config_schema`: the same type titled by
  its name (what a graph reads from `configurable`), `{}` without one.

A type pydantic cannot describe (on Python 3.11, a `typing.TypedDict` rather than
`typing_extensions.TypedDict`) gives `null` for that schema, as the reference server
answers then. A graph not built with StateGraph (an `@entrypoint`) has only its context
schema here.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable, Iterator
from typing import Any

import pydantic

from graphdef.pregel import Pregel
from graphdef.state import state_keys

log = logging.getLogger("celerygraph.server")

Schema = dict[str, Any] | None


def _safely(what: str, make: Callable[[], Schema]) -> Schema:
    try:
        return make()
    except Exception as exc:  # the reference server answers null for what it cannot draw
        log.warning("no JSON schema for %s: %s", what, exc)
        return None


def _of_type(schema: Any) -> Schema:
    return None if schema is None else pydantic.TypeAdapter(schema).json_schema()


def _update_type(annotation: Any) -> Any:
    """What a node may write to a key: the type a reducer folds in, else the key's type."""
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def _state(graph: Pregel) -> Schema:
    builder: Any = graph.builder  # type: ignore[attr-defined]
    keys: dict[str, Any] = {}
    for schema in (builder.state_schema, builder.input_schema, builder.output_schema,
                   *(spec.input_schema for spec in builder.nodes.values())):
        for key, annotation in state_keys(schema).items():
            keys.setdefault(key, annotation)
    fields: dict[str, Any] = {}
    for key, annotation in keys.items():
        kind = _update_type(annotation)
        try:
            pydantic.TypeAdapter(kind).json_schema()
        except Exception:
            kind = Any
        fields[key] = (kind, None)
    model: type[pydantic.BaseModel] = pydantic.create_model(f"{graph.name}State", **fields)
    return model.model_json_schema()


def _config(graph: Pregel) -> Schema:
    schema = _of_type(graph.context_schema)
    if schema is None:
        return {}
    return {**schema, "title": getattr(graph.context_schema, "__name__", schema.get("title"))}


def graph_schemas(graph: Pregel) -> dict[str, Schema]:
    """`{input_schema, output_schema, state_schema, config_schema, context_schema}`."""
    builder = getattr(graph, "builder", None)
    name = graph.name
    out: dict[str, Schema] = {"input_schema": None, "output_schema": None,
                              "state_schema": None}
    if builder is not None:
        out["input_schema"] = _safely(f"{name} input",
                                      lambda: _of_type(builder.input_schema))
        out["output_schema"] = _safely(f"{name} output",
                                       lambda: _of_type(builder.output_schema))
        out["state_schema"] = _safely(f"{name} state", lambda: _state(graph))
    out["config_schema"] = _safely(f"{name} config", lambda: _config(graph))
    out["context_schema"] = _safely(f"{name} context",
                                    lambda: _of_type(graph.context_schema))
    return out


def subgraphs(graph: Pregel, namespace: str | None = None, recurse: bool = False
              ) -> Iterator[tuple[str, Pregel]]:
    """The graph's subgraphs by namespace (`node`, nested `node|inner` with `recurse`) as
    LangGraph's `get_subgraphs` names them: graphs run as a node, or called from one."""
    for name, node in graph.nodes.items():
        sub = node.subgraph
        if sub is None:
            continue
        if namespace is not None and not namespace.startswith(name):
            continue
        if namespace is None or namespace == name:
            yield name, sub
            if namespace == name:
                return
        if recurse or namespace is not None:
            inner = namespace[len(name) + 1:] if namespace is not None else None
            for child, deeper in subgraphs(sub, inner or None, recurse):
                yield f"{name}|{child}", deeper
