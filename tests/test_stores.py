"""The store conformance suite on each backend, and what only one backend has to show."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graphdef.store.base import InvalidNamespaceError, PutOp
from graphdef.store.memory import InMemoryStore
from graphdef.store.redis import RedisStore
from graphdef.store.sqlite import SqliteStore
from tests.redis_server import RedisServer, redis_server
from tests.store_conformance import INDEX, MakeStore, StoreConformance


class TestInMemoryStore(StoreConformance):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        return InMemoryStore


class TestSqliteStore(StoreConformance):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Iterator[MakeStore]:
        made: list[SqliteStore] = []

        def make(**kwargs: Any) -> SqliteStore:
            made.append(SqliteStore(tmp_path / f"store{len(made)}.db", **kwargs))
            return made[-1]

        yield make
        for store in made:
            store.close()


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


class TestRedisStore(StoreConformance):
    @pytest.fixture
    def make_store(self, redis: RedisServer) -> Iterator[MakeStore]:
        redis.flush()
        made: list[RedisStore] = []

        def make(**kwargs: Any) -> RedisStore:
            made.append(RedisStore(redis.url, prefix=f"t{len(made)}", **kwargs))
            return made[-1]

        yield make
        for store in made:
            store.close()


def test_sqlite_store_persists_and_shares_a_saver_file(tmp_path: Path) -> None:
    from graphdef.checkpoint.sqlite import SqliteSaver

    path = tmp_path / "app.db"
    with SqliteSaver(path), SqliteStore(path) as store:
        store.put(("a",), "k", {"v": 1})
    with SqliteStore(path) as again:
        assert again.get(("a",), "k").value == {"v": 1}  # type: ignore[union-attr]


def test_redis_store_keys_share_a_slot_per_root(redis: RedisServer) -> None:
    redis.flush()
    with RedisStore(redis.url) as store:
        store.put(("u1", "memories"), "a", {"v": 1}, ttl=5)
        store.put(("u2",), "b", {"v": 2})
        again = RedisStore(redis.url)
        assert again.get(("u1", "memories"), "a").value == {"v": 1}  # type: ignore[union-attr]
        again.close()
    with redis.client() as client:
        names = sorted(k.decode() for k in client.keys("*"))
    assert {n for n in names if "{" not in n} == {"cg:kv:roots", "cg:kv:seq"}
    tags = {n[n.index("{"): n.index("}") + 1] for n in names if "{" in n}
    assert len(tags) == 2  # one hash tag (so one Cluster slot) per namespace root
    assert all(n.startswith("cg:kv:") for n in names)


def test_deliberate_differences_from_langgraphs_in_memory_store() -> None:
    """README "Stores": each line shows LangGraph's behaviour, then ours."""
    from langgraph.store.base import PutOp as LangGraphPutOp
    from langgraph.store.memory import InMemoryStore as LangGraphStore

    theirs, ours = LangGraphStore(), InMemoryStore()
    for store in (theirs, ours):
        store.get(("read", "only"), "k")
        store.put(("emptied",), "k", {"v": 1})
        store.delete(("emptied",), "k")
    # Namespaces that only were read, or whose items were all deleted, are not listed.
    assert theirs.list_namespaces() == [("emptied",), ("read", "only")]
    assert ours.list_namespaces() == []
    # An update keeps the item's created_at (LangGraph's InMemoryStore sets it anew; its
    # SQL stores keep it). Pinned for all our stores by test_update_keeps_created_at.
    # An update replaces the item's vectors: one with index=False leaves it unranked. LangGraph's
    # InMemoryStore keeps the vectors of the fields the update does not embed, so the item is
    # still ranked by its old text.
    theirs_ranked, ours_ranked = LangGraphStore(index=INDEX), InMemoryStore(index=INDEX)
    for store in (theirs_ranked, ours_ranked):
        store.put(("r",), "k", {"text": "cat"})
        store.put(("r",), "k", {"text": "dog"}, index=False)
    assert theirs_ranked.search(("r",), query="cat")[0].score == pytest.approx(1.0)
    assert ours_ranked.search(("r",), query="cat")[0].score is None
    # A PutOp given to batch needs a namespace (our Redis keys hash on its first label);
    # LangGraph's InMemoryStore stores it under ().
    theirs.batch([LangGraphPutOp((), "k", {"v": 1})])
    assert [item.key for item in theirs.search(())] == ["k"]
    with pytest.raises(InvalidNamespaceError):
        ours.batch([PutOp((), "k", {"v": 1})])
    # Our InMemoryStore supports TTL; LangGraph's raises.
    with pytest.raises(NotImplementedError):
        theirs.put(("a",), "t", {"v": 1}, ttl=1)
    ours.put(("a",), "t", {"v": 1}, ttl=1)
