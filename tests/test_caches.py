"""The behaviour every node cache shares (InMemoryCache, RedisCache), on the same suite.

Expiry is observed, never timed: the in-memory cache runs on a clock the test moves, the
Redis one waits well past a one-second TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from graphdef import Send
from graphdef.cache.base import BaseCache
from graphdef.cache.memory import InMemoryCache
from graphdef.cache.redis import RedisCache
from graphdef.serde import NotSerializableError
from tests.redis_server import RedisServer, redis_server

NS = ("__pregel_ns_writes", "mod.fn", "node")
OTHER = ("__pregel_ns_writes", "mod.other", "other")


@dataclass
class Backend:
    cache: BaseCache
    advance: Callable[[float], None]  # let `seconds` pass, as the cache sees time


class CacheConformance:
    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError

    def test_miss_then_hit_returns_a_copy(self, backend: Backend) -> None:
        cache = backend.cache
        assert cache.get([(NS, "k")]) == {}
        writes = [("log", ["a"]), ("branch:to:b", None), ("__pregel_tasks", Send("b", 1))]
        cache.set({(NS, "k"): (writes, None)})
        found = cache.get([(NS, "k"), (NS, "missing")])
        assert found == {(NS, "k"): writes}
        found[(NS, "k")][0][1].append("mutated")
        assert cache.get([(NS, "k")])[(NS, "k")][0] == ("log", ["a"])

    def test_namespaces_are_separate_and_clear_by_namespace(self, backend: Backend) -> None:
        cache = backend.cache
        cache.set({(NS, "k"): (1, None), (OTHER, "k"): (2, None)})
        assert cache.get([(NS, "k"), (OTHER, "k")]) == {(NS, "k"): 1, (OTHER, "k"): 2}
        cache.clear([NS])
        assert cache.get([(NS, "k"), (OTHER, "k")]) == {(OTHER, "k"): 2}
        cache.set({(NS, "k2"): (3, None)})
        cache.clear()
        assert cache.get([(NS, "k2"), (OTHER, "k")]) == {}

    def test_overwrite_keeps_the_last_value(self, backend: Backend) -> None:
        backend.cache.set({(NS, "k"): ("old", None)})
        backend.cache.set({(NS, "k"): ("new", None)})
        assert backend.cache.get([(NS, "k")]) == {(NS, "k"): "new"}

    def test_ttl_expires_entries_and_none_keeps_them(self, backend: Backend) -> None:
        cache = backend.cache
        cache.set({(NS, "short"): ("s", 1), (NS, "forever"): ("f", None)})
        assert cache.get([(NS, "short")]) == {(NS, "short"): "s"}
        backend.advance(1)
        assert cache.get([(NS, "short"), (NS, "forever")]) == {(NS, "forever"): "f"}

    def test_unserializable_value_stores_nothing(self, backend: Backend) -> None:
        with pytest.raises(NotSerializableError):
            backend.cache.set({(NS, "k"): (object(), None)})
        assert backend.cache.get([(NS, "k")]) == {}

    def test_async_twins(self, backend: Backend) -> None:
        import asyncio

        async def run() -> dict:
            await backend.cache.aset({(NS, "k"): ("v", None)})
            found = await backend.cache.aget([(NS, "k")])
            await backend.cache.aclear([NS])
            return found

        assert asyncio.run(run()) == {(NS, "k"): "v"}
        assert backend.cache.get([(NS, "k")]) == {}


class TestInMemoryCache(CacheConformance):
    @pytest.fixture
    def backend(self) -> Backend:
        now = [1000.0]

        def advance(seconds: float) -> None:
            now[0] += seconds

        return Backend(InMemoryCache(clock=lambda: now[0]), advance)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


class TestRedisCache(CacheConformance):
    @pytest.fixture
    def backend(self, redis: RedisServer) -> Iterator[Backend]:
        redis.flush()
        cache: RedisCache = RedisCache(redis.url)

        def advance(seconds: float) -> None:
            time.sleep(seconds * 2 + 0.5)  # Redis's own clock: wait well past the TTL

        yield Backend(cache, advance)
        cache.close()

    def test_keys_of_a_namespace_share_a_hash_tag(self, backend: Backend,
                                                  redis: RedisServer) -> None:
        backend.cache.set({(NS, "a"): (1, 60), (NS, "b"): (2, None)})
        with redis.client() as client:
            keys = sorted(k.decode() for k in client.keys("cg:cache:{*"))
            tags = {k[k.index("{"):k.index("}") + 1] for k in keys}
            assert len(tags) == 1 and len(keys) == 3  # the index and two values
            ttls = {k.rsplit(":", 1)[-1]: client.pttl(k) for k in keys if ":v:" in k}
        assert 0 < ttls["a"] <= 60_000 and ttls["b"] == -1

    def test_clear_everything_leaves_no_keys(self, backend: Backend,
                                             redis: RedisServer) -> None:
        backend.cache.set({(NS, "a"): (1, None), (OTHER, "b"): (2, 30)})
        backend.cache.clear()
        with redis.client() as client:
            assert client.keys("cg:cache:*") == []


def test_default_key_encodes_with_the_serde_not_pickle() -> None:
    """A deliberate difference (README): LangGraph pickles a node's input to key it; here it
    is encoded by the serde (same bytes in every process), so an input the serde refuses
    cannot be keyed: the run fails naming it instead of caching under a pickle."""
    import operator
    from typing import Annotated, TypedDict

    from graphdef import CachePolicy, StateGraph
    from graphdef.cache.keys import default_cache_key

    assert default_cache_key({"b": 1, "a": {2, 1}}) == default_cache_key({"a": {1, 2}, "b": 1})

    class State(TypedDict):
        thing: object
        log: Annotated[list, operator.add]

    builder = StateGraph(State)
    builder.add_node("node", lambda state: {"log": ["ran"]}, cache_policy=CachePolicy())
    builder.add_edge("__start__", "node")
    graph = builder.compile(cache=InMemoryCache())
    with pytest.raises(NotSerializableError, match="cache key input"):
        graph.invoke({"thing": object(), "log": []})
