"""What a search and a namespace listing mean, independent of where items live.

Every backend hands its candidates (in insertion order) to these pure functions, so the
three stores filter, rank and paginate identically.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from graphdef.store.base import ListNamespacesOp, MatchCondition, SearchItem, SearchOp


@dataclass
class Record:
    """An item as a backend stores it, with its vectors (path -> embedding)."""

    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    vectors: dict[str, list[float]] = field(default_factory=dict)


# ---- filters -------------------------------------------------------------------------------

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: float(a) > float(b),
    "$gte": lambda a, b: float(a) >= float(b),
    "$lt": lambda a, b: float(a) < float(b),
    "$lte": lambda a, b: float(a) <= float(b),
}


def check_filter(filter: dict[str, Any] | None) -> None:
    """An unknown `$operator` is an error before any item is read, not a silent miss."""
    for wanted in (filter or {}).values():
        if isinstance(wanted, dict):
            for name in wanted:
                if name.startswith("$") and name not in _OPERATORS:
                    raise ValueError(f"Unsupported operator: {name}")
            check_filter({k: v for k, v in wanted.items() if not k.startswith("$")})


def matches(value: Any, wanted: Any) -> bool:
    """LangGraph's filter rules: nested dicts match field by field, `$op` dicts compare,
    lists match element-wise, anything else by equality."""
    if isinstance(wanted, dict):
        if any(k.startswith("$") for k in wanted):
            return all(_OPERATORS[op](value, arg) for op, arg in wanted.items())
        return isinstance(value, dict) and all(
            matches(value.get(k), v) for k, v in wanted.items()
        )
    if isinstance(wanted, list | tuple):
        return (
            isinstance(value, list | tuple) and len(value) == len(wanted)
            and all(matches(a, b) for a, b in zip(value, wanted, strict=True))
        )
    return value == wanted


def passes(record: Record, filter: dict[str, Any] | None) -> bool:
    return all(matches(record.value.get(k), v) for k, v in (filter or {}).items())


# ---- namespaces ----------------------------------------------------------------------------


def _matches_path(namespace: tuple[str, ...], path: Sequence[str]) -> bool:
    return len(namespace) >= len(path) and all(
        p == "*" or n == p for n, p in zip(namespace, path, strict=False)
    )


def condition_holds(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    if condition.match_type == "prefix":
        return _matches_path(namespace, condition.path)
    if condition.match_type == "suffix":
        return _matches_path(namespace[::-1], tuple(condition.path)[::-1])
    raise ValueError(f"Unsupported match type: {condition.match_type}")


def list_namespaces(op: ListNamespacesOp, namespaces: Sequence[tuple[str, ...]]) -> list:
    found = [ns for ns in namespaces
             if all(condition_holds(c, ns) for c in op.match_conditions or ())]
    if op.max_depth is not None:
        found = list({ns[: op.max_depth] for ns in found})
    return sorted(set(found))[op.offset: op.offset + op.limit]


def literal_prefix(op: ListNamespacesOp) -> tuple[str, ...]:
    """The labels every listed namespace must start with, so a backend reads only those."""
    for condition in op.match_conditions or ():
        if condition.match_type == "prefix":
            labels = []
            for label in condition.path:
                if label == "*":
                    break
                labels.append(label)
            return tuple(labels)
    return ()


# ---- texts to embed ------------------------------------------------------------------------

_TOKEN = re.compile(r"\[(\*|-?\d+)\]|([^.\[\]]+)")


def parse_path(path: str) -> list[str | int]:
    """`a.b[0].c`, `a[*].b`, `a[-1]` -> tokens ("*" for all items); other syntax is an error
    naming it (LangGraph's `{a,b}` multi-field selection is not implemented)."""
    if path == "$":
        return []
    tokens: list[str | int] = []
    pos = 0
    while pos < len(path):
        if path[pos] == "." and tokens and pos + 1 < len(path):
            pos += 1
        found = _TOKEN.match(path, pos)
        if found is None or "{" in path or "}" in path:
            raise ValueError(f"index field path {path!r} is not supported: use names, "
                             "'.', '[N]', '[-N]' and '[*]'")
        index, name = found.groups()
        tokens.append(name if name is not None else (index if index == "*" else int(index)))
        pos = found.end()
    return tokens


def _leaf_texts(obj: Any) -> list[str]:
    if isinstance(obj, str | int | float | bool):
        return [str(obj)]
    if isinstance(obj, list | dict):
        return [json.dumps(obj, sort_keys=True, ensure_ascii=False)]
    return []


def texts_at(obj: Any, tokens: list[str | int]) -> list[str]:
    if not tokens:
        return _leaf_texts(obj)
    head, rest = tokens[0], tokens[1:]
    if isinstance(head, int) or head == "*" and isinstance(obj, list):
        if not isinstance(obj, list):
            return []
        if head == "*":
            return [t for item in obj for t in texts_at(item, rest)]
        assert isinstance(head, int)
        idx = head + len(obj) if head < 0 else head
        return texts_at(obj[idx], rest) if 0 <= idx < len(obj) else []
    if isinstance(obj, dict) and head in obj:
        return texts_at(obj[head], rest)
    return []


def texts_to_embed(value: dict[str, Any], fields: Sequence[str]) -> list[tuple[str, str]]:
    """(vector path, text) pairs: one per field, or `field.i` when a field yields several."""
    if fields == ["$"] or not fields:
        fields = ["$"]
    pairs = []
    for path in fields:
        if path == "$":
            pairs.append(("$", json.dumps(value, sort_keys=True, ensure_ascii=False)))
            continue
        texts = texts_at(value, parse_path(path))
        if len(texts) == 1:
            pairs.append((path, texts[0]))
        else:
            pairs.extend((f"{path}.{i}", text) for i, text in enumerate(texts))
    return pairs


# ---- ranking -------------------------------------------------------------------------------


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=False)) / norm if norm else 0.0


def _item(record: Record, score: float | None) -> SearchItem:
    return SearchItem(record.namespace, record.key, record.value, record.created_at,
                      record.updated_at, score)


def search(op: SearchOp, candidates: Sequence[Record], query_vector: list[float] | None
           ) -> list[SearchItem]:
    """Filter, then rank by the best cosine of an item's vectors when there is a query
    vector (unembedded items follow, unscored), then the page `offset:offset+limit`."""
    found = [r for r in candidates if passes(r, op.filter)]
    if query_vector is None:
        return [_item(r, None) for r in found[op.offset: op.offset + op.limit]]
    scored = [(max(cosine(query_vector, v) for v in r.vectors.values()), i, r)
              for i, r in enumerate(found) if r.vectors]
    scored.sort(key=lambda t: (-t[0], t[1]))
    page = [_item(r, s) for s, _, r in scored[op.offset: op.offset + op.limit]]
    if len(page) < op.limit:
        unscored = [r for r in found if not r.vectors]
        page.extend(_item(r, None) for r in unscored[: op.limit - len(page)])
    return page
