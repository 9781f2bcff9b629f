"""The store interface LangGraph programs call (`langgraph.store.base`'s names and rules).

A store is long-term memory shared across threads: items (a dict value under a key) in
hierarchical namespaces (tuples of labels). Every operation is an op object so that a
store can run a batch of them in one round trip; the convenience methods build one op
each and validate namespaces first, as LangGraph does.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, NamedTuple, TypedDict

from graphdef.errors import CeleryGraphError


class NotProvided:
    """Sentinel for "argument not given" where None means something (no TTL)."""

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_PROVIDED = NotProvided()


class InvalidNamespaceError(CeleryGraphError, ValueError):
    """A namespace label is empty, not a string, or contains '.' or NUL."""


class Item:
    """A stored value with its place (namespace, key) and timestamps."""

    __slots__ = ("value", "key", "namespace", "created_at", "updated_at")

    def __init__(
        self, *, value: dict[str, Any], key: str, namespace: tuple[str, ...],
        created_at: datetime, updated_at: datetime,
    ) -> None:
        self.value = value
        self.key = key
        self.namespace = tuple(namespace)
        self.created_at = created_at
        self.updated_at = updated_at

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Item):
            return False
        return self.dict() == other.dict()

    def __hash__(self) -> int:
        return hash((self.namespace, self.key))

    def dict(self) -> dict[str, Any]:
        return {
            "namespace": list(self.namespace),
            "key": self.key,
            "value": self.value,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.dict().items())})"


class SearchItem(Item):
    """An item found by `search`; `score` is its similarity when the search was ranked."""

    __slots__ = ("score",)

    def __init__(
        self, namespace: tuple[str, ...], key: str, value: dict[str, Any],
        created_at: datetime, updated_at: datetime, score: float | None = None,
    ) -> None:
        super().__init__(value=value, key=key, namespace=namespace,
                         created_at=created_at, updated_at=updated_at)
        self.score = score

    def dict(self) -> dict[str, Any]:
        return {**super().dict(), "score": self.score}


class GetOp(NamedTuple):
    namespace: tuple[str, ...]
    key: str
    refresh_ttl: bool = True


class SearchOp(NamedTuple):
    namespace_prefix: tuple[str, ...]
    filter: dict[str, Any] | None = None
    limit: int = 10
    offset: int = 0
    query: str | None = None
    refresh_ttl: bool = True


NamespacePath = tuple[str, ...]  # labels, "*" matching any one label
NamespaceMatchType = Literal["prefix", "suffix"]


class MatchCondition(NamedTuple):
    match_type: NamespaceMatchType
    path: NamespacePath


class ListNamespacesOp(NamedTuple):
    match_conditions: tuple[MatchCondition, ...] | None = None
    max_depth: int | None = None
    limit: int = 100
    offset: int = 0


class PutOp(NamedTuple):
    """Store `value` (None deletes); `index` overrides the fields embedded for this item
    (False: none); `ttl` in minutes."""

    namespace: tuple[str, ...]
    key: str
    value: Mapping[str, Any] | None
    index: Literal[False] | list[str] | None = None
    ttl: float | None = None


Op = GetOp | SearchOp | PutOp | ListNamespacesOp
Result = Item | list[Item] | list[SearchItem] | list[tuple[str, ...]] | None


class TTLConfig(TypedDict, total=False):
    refresh_on_read: bool
    default_ttl: float | None
    omit_expired: bool
    sweep_interval_minutes: int | None


class IndexConfig(TypedDict, total=False):
    dims: int
    embed: Any
    fields: list[str] | None


class BaseStore(ABC):
    """Key-value memory in namespaces, with optional similarity search and TTL."""

    supports_ttl: bool = False
    ttl_config: TTLConfig | None = None

    @abstractmethod
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run `ops` in order; one result per op (None for a put)."""

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """`batch` off the event loop: the backends' I/O is blocking."""
        return await asyncio.to_thread(self.batch, list(ops))

    # ---- the convenience surface (LangGraph's signatures) ----------------------------------

    def get(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        return self.batch([self._get_op(namespace, key, refresh_ttl)])[0]  # type: ignore[return-value]

    def search(
        self, namespace_prefix: tuple[str, ...], /, *, query: str | None = None,
        filter: dict[str, Any] | None = None, limit: int = 10, offset: int = 0,
        refresh_ttl: bool | None = None,
    ) -> list[SearchItem]:
        op = self._search_op(namespace_prefix, query, filter, limit, offset, refresh_ttl)
        return self.batch([op])[0]  # type: ignore[return-value]

    def put(
        self, namespace: tuple[str, ...], key: str, value: Mapping[str, Any],
        index: Literal[False] | list[str] | None = None, *,
        ttl: float | None | NotProvided = NOT_PROVIDED,
    ) -> None:
        self.batch([self._put_op(namespace, key, value, index, ttl)])

    def delete(self, namespace: tuple[str, ...], key: str) -> None:
        validate_labels(namespace)
        self.batch([PutOp(tuple(namespace), str(key), None)])

    def list_namespaces(
        self, *, prefix: NamespacePath | None = None, suffix: NamespacePath | None = None,
        max_depth: int | None = None, limit: int = 100, offset: int = 0,
    ) -> list[tuple[str, ...]]:
        return self.batch([_list_op(prefix, suffix, max_depth, limit, offset)])[0]  # type: ignore[return-value]

    async def aget(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        return (await self.abatch([self._get_op(namespace, key, refresh_ttl)]))[0]  # type: ignore[return-value]

    async def asearch(
        self, namespace_prefix: tuple[str, ...], /, *, query: str | None = None,
        filter: dict[str, Any] | None = None, limit: int = 10, offset: int = 0,
        refresh_ttl: bool | None = None,
    ) -> list[SearchItem]:
        op = self._search_op(namespace_prefix, query, filter, limit, offset, refresh_ttl)
        return (await self.abatch([op]))[0]  # type: ignore[return-value]

    async def aput(
        self, namespace: tuple[str, ...], key: str, value: Mapping[str, Any],
        index: Literal[False] | list[str] | None = None, *,
        ttl: float | None | NotProvided = NOT_PROVIDED,
    ) -> None:
        await self.abatch([self._put_op(namespace, key, value, index, ttl)])

    async def adelete(self, namespace: tuple[str, ...], key: str) -> None:
        validate_labels(namespace)
        await self.abatch([PutOp(tuple(namespace), str(key), None)])

    async def alist_namespaces(
        self, *, prefix: NamespacePath | None = None, suffix: NamespacePath | None = None,
        max_depth: int | None = None, limit: int = 100, offset: int = 0,
    ) -> list[tuple[str, ...]]:
        op = _list_op(prefix, suffix, max_depth, limit, offset)
        return (await self.abatch([op]))[0]  # type: ignore[return-value]

    # ---- building ops ----------------------------------------------------------------------

    def _refresh_default(self, refresh_ttl: bool | None) -> bool:
        if refresh_ttl is not None:
            return refresh_ttl
        return (self.ttl_config or {}).get("refresh_on_read", True)

    def _get_op(self, namespace: tuple[str, ...], key: str, refresh: bool | None) -> GetOp:
        validate_labels(namespace)
        return GetOp(tuple(namespace), str(key), self._refresh_default(refresh))

    def _search_op(
        self, prefix: tuple[str, ...], query: str | None, filter: dict[str, Any] | None,
        limit: int, offset: int, refresh: bool | None,
    ) -> SearchOp:
        validate_labels(prefix)
        return SearchOp(tuple(prefix), filter, limit, offset, query, self._refresh_default(refresh))

    def _put_op(
        self, namespace: tuple[str, ...], key: str, value: Mapping[str, Any],
        index: Literal[False] | list[str] | None, ttl: float | None | NotProvided,
    ) -> PutOp:
        validate_namespace(namespace)
        if ttl not in (NOT_PROVIDED, None) and not self.supports_ttl:
            raise NotImplementedError(
                f"TTL is not supported by {type(self).__name__}; pass ttl=None"
            )
        if isinstance(ttl, NotProvided):
            ttl = (self.ttl_config or {}).get("default_ttl")
        return PutOp(tuple(namespace), str(key), value, index=index, ttl=ttl)


def _list_op(
    prefix: NamespacePath | None, suffix: NamespacePath | None, max_depth: int | None,
    limit: int, offset: int,
) -> ListNamespacesOp:
    validate_labels(prefix or ())
    validate_labels(suffix or ())
    conditions = []
    if prefix:
        conditions.append(MatchCondition("prefix", tuple(prefix)))
    if suffix:
        conditions.append(MatchCondition("suffix", tuple(suffix)))
    return ListNamespacesOp(tuple(conditions), max_depth, limit, offset)


def validate_namespace(namespace: tuple[str, ...]) -> None:
    """What a namespace written to must be: non-empty, valid labels, not LangGraph's root."""
    if not namespace:
        raise InvalidNamespaceError("Namespace cannot be empty.")
    validate_labels(namespace)
    if namespace[0] == "langgraph":
        raise InvalidNamespaceError(
            f'Root label for namespace cannot be "langgraph". Got: {namespace}'
        )


def validate_labels(namespace: Iterable[Any]) -> None:
    """Labels are joined with separators in storage, so these characters must not occur."""
    namespace = tuple(namespace)
    for label in namespace:
        if not isinstance(label, str):
            raise InvalidNamespaceError(
                f"Invalid namespace label {label!r} found in {namespace}: labels must be "
                f"strings, got {type(label).__name__}"
            )
        if not label:
            raise InvalidNamespaceError(f"Namespace labels cannot be empty strings: {namespace}")
        if "." in label or "\x00" in label:
            raise InvalidNamespaceError(
                f"Invalid namespace label {label!r} found in {namespace}: labels cannot "
                "contain periods ('.') or NUL bytes"
            )


def validate_op(op: Op) -> None:
    """Ops handed straight to `batch` skip the convenience methods' checks; run them here.
    As in LangGraph, the reserved root "langgraph" is refused by `put` only: a `PutOp` given
    to `batch` may write there (LangGraph keeps that root for its own tooling)."""
    if isinstance(op, PutOp):
        validate_labels(op.namespace)
        if op.value is not None:
            if not op.namespace:
                raise InvalidNamespaceError("Namespace cannot be empty.")
            if not isinstance(op.value, Mapping):
                raise TypeError(f"store values are dicts, got {type(op.value).__name__}")
    elif isinstance(op, GetOp):
        validate_labels(op.namespace)
    elif isinstance(op, SearchOp):
        validate_labels(op.namespace_prefix)
    elif isinstance(op, ListNamespacesOp):
        for condition in op.match_conditions or ():
            validate_labels(condition.path)
    else:
        raise ValueError(f"Unknown operation type: {type(op).__name__}")
