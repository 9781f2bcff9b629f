"""A store's `index={"dims", "embed", "fields"}`: which texts of an item are embedded, and how.

Checked when the store is built, so a misspelt option or an embedder we cannot call fails
there rather than at the first search.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from graphdef.store.query import parse_path, texts_to_embed

_KNOWN = frozenset({"dims", "embed", "fields"})


class Index:
    """Embeds item texts and queries with the configured function, checking dimensions."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        unknown = sorted(set(config) - _KNOWN)
        if unknown:
            raise ValueError(f"index options not supported: {', '.join(unknown)} "
                             f"(supported: {', '.join(sorted(_KNOWN))})")
        dims = config.get("dims")
        if not isinstance(dims, int) or isinstance(dims, bool) or dims <= 0:
            raise ValueError(f"index['dims'] must be a positive int, got {dims!r}")
        self.dims = dims
        self.fields: list[str] = list(config.get("fields") or ["$"])
        for path in self.fields:
            parse_path(path)
        self._embed_texts, self._embed_query = _embedder(config.get("embed"))

    def item_texts(
        self, value: dict[str, Any], fields: Sequence[str] | None
    ) -> list[tuple[str, str]]:
        if fields is not None:
            for path in fields:
                parse_path(path)
        return texts_to_embed(value, list(self.fields if fields is None else fields))

    def embed_texts(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = [self._checked(v) for v in self._embed_texts(texts)]
        if len(vectors) != len(texts):
            raise ValueError(f"embed returned {len(vectors)} vectors for {len(texts)} texts")
        return vectors

    def embed_query(self, query: str) -> list[float]:
        return self._checked(self._embed_query(query))

    def _checked(self, vector: Sequence[float]) -> list[float]:
        vector = [float(x) for x in vector]
        if len(vector) != self.dims:
            raise ValueError(f"embed returned a vector of {len(vector)} dims; index has "
                             f"dims={self.dims}")
        return vector


def _embedder(embed: Any) -> tuple[Callable[[list[str]], Any], Callable[[str], Any]]:
    """A LangChain `Embeddings`-like object or a sync `texts -> vectors` function."""
    if hasattr(embed, "embed_documents") and hasattr(embed, "embed_query"):
        return embed.embed_documents, embed.embed_query
    if isinstance(embed, str):
        raise ValueError(f"index['embed'] as a provider string ({embed!r}) is not supported: "
                         "pass a function texts -> vectors or an Embeddings object")
    if inspect.iscoroutinefunction(embed):
        raise ValueError("index['embed'] is an async function, which is not supported: "
                         "pass a sync function texts -> vectors")
    if not callable(embed):
        raise ValueError(f"index['embed'] must be a function texts -> vectors, got {embed!r}")
    return embed, lambda query: embed([query])[0]
