"""BaseCache: LangGraph's interface for caching node and task results between runs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

from graphdef.cache.keys import FullKey, Namespace
from graphdef.serde import Serde, SerializerProtocol

ValueT = TypeVar("ValueT")


class BaseCache(ABC, Generic[ValueT]):
    """Values under (namespace, key), each with an optional TTL in seconds.

    Values go through a serializer (ours by default, never pickle), so a cached value is a
    copy and a process can read what another one cached.
    """

    def __init__(self, *, serde: SerializerProtocol | None = None) -> None:
        self.serde: SerializerProtocol = serde or _DEFAULT_SERDE

    @abstractmethod
    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        """The values found for `keys`; missing and expired ones are left out."""

    @abstractmethod
    def set(self, pairs: Mapping[FullKey, tuple[ValueT, int | None]]) -> None:
        """Store each value with its TTL (seconds; None keeps it until cleared)."""

    @abstractmethod
    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        """Forget the values of `namespaces`, or every value when None."""

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        return self.get(keys)

    async def aset(self, pairs: Mapping[FullKey, tuple[ValueT, int | None]]) -> None:
        self.set(pairs)

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        self.clear(namespaces)


_DEFAULT_SERDE: SerializerProtocol = Serde()
