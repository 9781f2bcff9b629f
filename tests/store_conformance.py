"""The behaviour every store must share; subclass and override the ``make_store`` fixture
(a factory: ``make_store(index=None, ttl=None)``), and ``ops`` for a store that takes another
library's op classes and raises its ``InvalidNamespaceError`` (LangGraph's, for the
LangGraph-facing adapter).

Kept out of ``test_*`` files so pytest collects it only through the backends that use it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from graphdef.serde import NotSerializableError
from graphdef.store import base as graphdef_ops
from graphdef.store.base import BaseStore

MakeStore = Callable[..., BaseStore]

VOCABULARY = ("cat", "dog", "fish", "bird")


def embed(texts: list[str]) -> list[list[float]]:
    """A deterministic embedder: how often each vocabulary word occurs, plus a constant so
    that no vector is zero."""
    return [[float(t.lower().count(w)) for w in VOCABULARY] + [0.1] for t in texts]


INDEX = {"dims": len(VOCABULARY) + 1, "embed": embed, "fields": ["text"]}


def keys(items: list[Any]) -> list[str]:
    return [item.key for item in items]


class StoreConformance:
    # Where GetOp, PutOp, SearchOp, ListNamespacesOp, MatchCondition and
    # InvalidNamespaceError come from.
    ops: ModuleType = graphdef_ops

    @pytest.fixture
    def make_store(self) -> MakeStore:
        raise NotImplementedError("override the make_store fixture")

    @pytest.fixture
    def store(self, make_store: MakeStore) -> BaseStore:
        return make_store()

    # ---------------------------------------------------------------------- put / get

    def test_round_trip_keeps_types(self, store: BaseStore) -> None:
        value = {"when": dt.datetime(2024, 5, 1, tzinfo=dt.UTC), "pair": (1, 2), "n": None,
                 "nested": {"tags": {"x"}}, "text": "héllo"}
        store.put(("users", "u1"), "profile", value)
        item = store.get(("users", "u1"), "profile")
        assert item is not None
        assert item.value == value and type(item.value["pair"]) is tuple
        assert (item.namespace, item.key) == (("users", "u1"), "profile")
        assert item.created_at == item.updated_at
        assert item.created_at.tzinfo is not None

    def test_missing(self, store: BaseStore) -> None:
        assert store.get(("nobody",), "k") is None
        store.put(("a",), "k", {"v": 1})
        assert store.get(("a",), "other") is None
        assert store.get(("a", "b"), "k") is None

    def test_update_keeps_created_at(self, store: BaseStore) -> None:
        store.put(("a",), "k", {"v": 1})
        first = store.get(("a",), "k")
        store.put(("a",), "k", {"w": 2})
        second = store.get(("a",), "k")
        assert first is not None and second is not None
        assert second.value == {"w": 2}
        assert second.created_at == first.created_at
        assert second.updated_at >= first.updated_at

    def test_returned_values_are_copies(self, store: BaseStore) -> None:
        value = {"items": [1]}
        store.put(("a",), "k", value)
        value["items"].append(2)
        got = store.get(("a",), "k")
        assert got is not None and got.value == {"items": [1]}
        got.value["items"].append(3)
        assert store.get(("a",), "k").value == {"items": [1]}  # type: ignore[union-attr]

    def test_delete(self, store: BaseStore) -> None:
        store.put(("a",), "k", {"v": 1})
        store.delete(("a",), "k")
        assert store.get(("a",), "k") is None
        store.delete(("a",), "k")
        store.delete(("never",), "k")
        assert store.list_namespaces() == []

    def test_bad_namespaces(self, store: BaseStore) -> None:
        for bad in [(), ("a.b",), ("",), ("langgraph",), ("a", 1), ("a\x00",)]:
            with pytest.raises(self.ops.InvalidNamespaceError):
                store.put(bad, "k", {"v": 1})  # type: ignore[arg-type]
        with pytest.raises(self.ops.InvalidNamespaceError):
            store.get(("a.b",), "k")
        with pytest.raises(self.ops.InvalidNamespaceError):
            store.search(("a.b",))
        with pytest.raises(self.ops.InvalidNamespaceError):
            store.batch([self.ops.PutOp(("a.b",), "k", {"v": 1})])
        assert store.list_namespaces() == []

    def test_reserved_root_is_refused_by_put_only(self, store: BaseStore) -> None:
        """LangGraph's rule: its root label is closed to `put`, open to a `PutOp` in `batch`."""
        with pytest.raises(self.ops.InvalidNamespaceError):
            store.put(("langgraph", "x"), "k", {"v": 1})
        store.batch([self.ops.PutOp(("langgraph", "x"), "k", {"v": 1})])
        assert store.get(("langgraph", "x"), "k").value == {"v": 1}  # type: ignore[union-attr]
        assert keys(store.search(("langgraph",))) == ["k"]
        store.delete(("langgraph", "x"), "k")
        assert store.list_namespaces() == []

    def test_rejected_value_stores_nothing(self, store: BaseStore) -> None:
        with pytest.raises(NotSerializableError, match="handler"):
            store.batch([self.ops.PutOp(("a",), "ok", {"v": 1}),
                         self.ops.PutOp(("a",), "bad", {"handler": print})])
        with pytest.raises(TypeError):
            store.put(("a",), "list", [1, 2])  # type: ignore[arg-type]
        assert store.search(("a",)) == []

    # ---------------------------------------------------------------------------- search

    def _fill(self, store: BaseStore) -> None:
        store.put(("docs", "b"), "b1", {"kind": "memo", "score": 5, "meta": {"lang": "en"}})
        store.put(("docs", "a"), "a1", {"kind": "report", "score": 2, "meta": {"lang": "fr"}})
        store.put(("docs", "b"), "b2", {"kind": "report", "score": 9, "tags": ["x", "y"]})
        store.put(("docsx",), "x1", {"kind": "report", "score": 1})
        store.put(("other",), "o1", {"kind": "report", "score": 7})

    def test_search_order_and_prefix(self, store: BaseStore) -> None:
        self._fill(store)
        # Namespaces in the order they were created, keys in the order they were created.
        assert keys(store.search(("docs",))) == ["b1", "b2", "a1"]
        assert keys(store.search(("docs", "a"))) == ["a1"]
        assert keys(store.search(())) == ["b1", "b2", "a1", "x1", "o1"]
        assert keys(store.search(("doc",))) == []
        store.put(("docs", "b"), "b1", {"kind": "memo", "score": 6})  # an update keeps place
        assert keys(store.search(("docs",))) == ["b1", "b2", "a1"]
        assert all(item.score is None for item in store.search(()))

    def test_search_filters(self, store: BaseStore) -> None:
        self._fill(store)
        assert keys(store.search((), filter={"kind": "report"})) == ["b2", "a1", "x1", "o1"]
        assert keys(store.search((), filter={"score": {"$gt": 5}})) == ["b2", "o1"]
        assert keys(store.search((), filter={"score": {"$gte": 5, "$lt": 9}})) == ["b1", "o1"]
        assert keys(store.search((), filter={"score": {"$lte": 2}})) == ["a1", "x1"]
        assert keys(store.search((), filter={"kind": {"$ne": "report"}})) == ["b1"]
        assert keys(store.search((), filter={"kind": {"$eq": "memo"}})) == ["b1"]
        assert keys(store.search((), filter={"meta": {"lang": "fr"}})) == ["a1"]
        assert keys(store.search((), filter={"tags": ["x", "y"]})) == ["b2"]
        assert keys(store.search((), filter={"missing": 1})) == []
        with pytest.raises(ValueError, match=r"\$regex"):
            store.search((), filter={"kind": {"$regex": "r.*"}})

    def test_search_pages(self, store: BaseStore) -> None:
        self._fill(store)
        assert keys(store.search((), limit=2)) == ["b1", "b2"]
        assert keys(store.search((), limit=2, offset=2)) == ["a1", "x1"]
        assert keys(store.search((), filter={"kind": "report"}, limit=1, offset=3)) == ["o1"]
        assert store.search((), offset=10) == []

    def test_query_without_index_is_unranked(self, store: BaseStore) -> None:
        self._fill(store)
        found = store.search(("docs",), query="anything")
        assert keys(found) == ["b1", "b2", "a1"]
        assert all(item.score is None for item in found)

    # ---------------------------------------------------------------------- namespaces

    def test_list_namespaces(self, store: BaseStore) -> None:
        for ns in [("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f"),
                   ("a", "c", "f"), ("z",)]:
            store.put(ns, "k", {"v": 1})
        assert store.list_namespaces(prefix=("a", "b"), max_depth=3) == [
            ("a", "b", "c"), ("a", "b", "d"), ("a", "b", "f")]
        assert store.list_namespaces(suffix=("f",)) == [("a", "b", "f"), ("a", "c", "f")]
        assert store.list_namespaces(prefix=("a", "*", "f")) == [("a", "b", "f"), ("a", "c", "f")]
        assert store.list_namespaces(prefix=("a",), suffix=("*", "e")) == [("a", "b", "d", "e")]
        assert store.list_namespaces(max_depth=1) == [("a",), ("z",)]
        assert store.list_namespaces(limit=2, offset=1) == [("a", "b", "d", "e"),
                                                            ("a", "b", "d", "i")]
        assert store.list_namespaces(prefix=("a", "b", "c")) == [("a", "b", "c")]
        assert store.list_namespaces(prefix=("nothing",)) == []
        store.delete(("z",), "k")
        assert ("z",) not in store.list_namespaces()

    # ---------------------------------------------------------------------------- batch

    def test_batch_reads_before_puts_and_last_put_wins(self, store: BaseStore) -> None:
        store.put(("a",), "k", {"v": 0})
        results = store.batch([
            self.ops.PutOp(("a",), "k", {"v": 1}),
            self.ops.GetOp(("a",), "k"),
            self.ops.PutOp(("a",), "k", {"v": 2}),
            self.ops.SearchOp(("a",)),
            self.ops.ListNamespacesOp((self.ops.MatchCondition("prefix", ("a",)),)),
            self.ops.PutOp(("b",), "k", {"v": 3}),
        ])
        assert results[0] is None and results[2] is None and results[5] is None
        assert results[1].value == {"v": 0}  # type: ignore[union-attr]
        assert [i.value for i in results[3]] == [{"v": 0}]  # type: ignore[union-attr]
        assert results[4] == [("a",)]
        assert store.get(("a",), "k").value == {"v": 2}  # type: ignore[union-attr]
        assert store.get(("b",), "k").value == {"v": 3}  # type: ignore[union-attr]

    def test_async_twins(self, store: BaseStore) -> None:
        async def run() -> list[Any]:
            await store.aput(("a",), "k", {"v": 1})
            got = await store.aget(("a",), "k")
            found = await store.asearch(("a",), filter={"v": 1})
            spaces = await store.alist_namespaces()
            await store.adelete(("a",), "k")
            gone = await store.aget(("a",), "k")
            return [got.value if got else None, keys(found), spaces, gone]

        assert asyncio.run(run()) == [{"v": 1}, ["k"], [("a",)], None]

    def test_threads_share_a_store(self, store: BaseStore) -> None:
        def work(n: int) -> None:
            for i in range(20):
                store.put(("t", str(n)), str(i), {"i": i})

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(store.search(("t",), limit=1000)) == 80
        assert len(store.list_namespaces(prefix=("t",))) == 4

    # ------------------------------------------------------------------------------ TTL

    def test_ttl_expires_and_reads_refresh(self, make_store: MakeStore) -> None:
        store = make_store()
        store.put(("s",), "read", {"v": 1}, ttl=0.03)  # 1.8 s
        store.put(("s",), "unread", {"v": 2}, ttl=0.03)
        store.put(("s",), "kept", {"v": 3})
        time.sleep(1.0)
        assert store.get(("s",), "read") is not None  # refreshes: 1.8 s from now
        time.sleep(1.2)
        assert store.get(("s",), "unread", refresh_ttl=False) is None
        assert keys(store.search(("s",), refresh_ttl=False)) == ["read", "kept"]
        time.sleep(2.2)
        assert keys(store.search(("s",))) == ["kept"]
        store.put(("gone",), "k", {"v": 1}, ttl=0.001)
        time.sleep(0.3)
        assert store.list_namespaces() == [("s",)]
        assert store.sweep_ttl() == 0  # type: ignore[attr-defined]

    def test_ttl_config(self, make_store: MakeStore) -> None:
        store = make_store(ttl={"default_ttl": 0.001, "refresh_on_read": False})
        store.put(("d",), "k", {"v": 1})
        store.put(("d",), "forever", {"v": 1}, ttl=None)
        time.sleep(0.3)
        assert store.sweep_ttl() == 1  # type: ignore[attr-defined]
        assert keys(store.search(("d",))) == ["forever"]
        with pytest.raises(ValueError, match="sweep_interval_minutes"):
            make_store(ttl={"sweep_interval_minutes": 5})
        with pytest.raises(ValueError, match="refresh_on_reed"):
            make_store(ttl={"refresh_on_reed": True})
        with pytest.raises(ValueError, match="ttl"):
            store.put(("d",), "k", {"v": 1}, ttl=-1)

    # ------------------------------------------------------------------ similarity search

    def test_similarity_ranking(self, make_store: MakeStore) -> None:
        store = make_store(index=INDEX)
        store.put(("pets",), "c", {"text": "cat cat", "kind": "mammal"})
        store.put(("pets",), "d", {"text": "dog", "kind": "mammal"})
        store.put(("pets",), "f", {"text": "fish fish fish dog", "kind": "fish"})
        store.put(("pets",), "plain", {"text": "cat"}, index=False)
        store.put(("pets",), "notext", {"kind": "mammal"})
        found = store.search(("pets",), query="dog")
        assert keys(found) == ["d", "f", "c", "plain", "notext"]
        assert found[0].score == pytest.approx(1.0)
        assert found[1].score == pytest.approx(1.01 / math.sqrt(1.01 * 10.01))
        assert [item.score is None for item in found] == [False, False, False, True, True]
        assert keys(store.search(("pets",), query="cat", filter={"kind": "mammal"},
                                 limit=2)) == ["c", "d"]
        assert keys(store.search(("pets",), query="fish", offset=1, limit=1)) == ["d"]

    def test_index_fields_and_overrides(self, make_store: MakeStore) -> None:
        store = make_store(index={**INDEX, "fields": ["title", "parts[*].text"]})
        store.put(("n",), "parts", {"title": "x", "parts": [{"text": "fish"}, {"text": "bird"}]})
        store.put(("n",), "title", {"title": "bird bird", "body": "fish"})
        store.put(("n",), "body", {"title": "x", "body": "fish"}, index=["body"])
        assert keys(store.search(("n",), query="fish", limit=2)) == ["parts", "body"]
        assert keys(store.search(("n",), query="bird", limit=2)) == ["parts", "title"]

    def test_index_config_errors(self, make_store: MakeStore) -> None:
        with pytest.raises(ValueError, match="distance_type"):
            make_store(index={**INDEX, "distance_type": "l2"})
        with pytest.raises(ValueError, match="dims"):
            make_store(index={**INDEX, "dims": 0})
        with pytest.raises(ValueError, match="not supported"):
            make_store(index={**INDEX, "fields": ["{a,b}"]})
        wrong = make_store(index={**INDEX, "dims": 3})
        with pytest.raises(ValueError, match="dims=3"):
            wrong.put(("a",), "k", {"text": "cat"})
        assert wrong.get(("a",), "k") is None

    def test_provider_string_embedder(self, make_store: MakeStore) -> None:
        with pytest.raises(ValueError, match="provider string"):
            make_store(index={**INDEX, "embed": "openai:text-embedding-3-small"})
