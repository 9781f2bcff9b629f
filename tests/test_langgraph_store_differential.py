"""LangGraphRedisStore against LangGraph's own stores, doing the same things on real LangGraph:
the differential suite's store programs with our store in place of LangGraph's InMemoryStore;
seeded random sequences of puts, deletes, gets, searches (filters, pages, similarity) and
listings, sync and async; and TTL against LangGraph's SqliteStore (its InMemoryStore has
none). The known differences (README, "Stores") are left out, as said where they would show.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from langgraph.store.base import BaseStore, GetOp, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore

from celerygraph_langgraph import LangGraphRedisStore
from tests.differential import scenarios_store
from tests.differential.apis import LANGGRAPH
from tests.differential.observe import normalize
from tests.redis_server import RedisServer, redis_server


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as running:
        yield running


# ------------------------------------------------------------ the differential's programs

STORE_SCENARIOS = sorted(n for n in vars(scenarios_store) if n.startswith("scenario_"))


@pytest.mark.parametrize("scenario", STORE_SCENARIOS)
def test_store_scenarios_match_langgraphs_in_memory_store(
    scenario: str, server: RedisServer, tmp_path: Any
) -> None:
    """Each program runs on LangGraph twice: with its InMemoryStore, then with ours."""
    server.flush()
    made: list[LangGraphRedisStore] = []

    def redis_store(**kwargs: Any) -> LangGraphRedisStore:
        made.append(LangGraphRedisStore(server.url, prefix=f"s{len(made)}", **kwargs))
        return made[-1]

    run = getattr(scenarios_store, scenario)
    with_ours = SimpleNamespace(**{**vars(LANGGRAPH), "InMemoryStore": redis_store})
    (tmp_path / "theirs").mkdir()
    (tmp_path / "ours").mkdir()
    expected = normalize(run(LANGGRAPH, tmp_path / "theirs"))
    actual = normalize(run(with_ours, tmp_path / "ours"))
    for store in made:
        store.close()
    assert made, "the scenario built no store"
    assert actual == expected


# --------------------------------------------------------------------- random sequences

WORDS = ("tea", "cat", "code", "rain")
NAMESPACES = [("u1",), ("u1", "mem"), ("u1", "mem", "x"), ("u2", "mem"), ("docs",)]
PREFIXES = [(), ("u1",), ("u1", "mem"), ("u2",), ("docs",), ("none",)]
FILTERS: list[dict[str, Any] | None] = [
    None, {"n": 3}, {"n": {"$gte": 4}}, {"n": {"$lt": 3, "$ne": 1}}, {"meta": {"lang": "en"}},
    {"tags": ["x", "y"]}, {"n": {"$gt": 2}, "meta": {"lang": "fr"}},
]


def embed(texts: list[str]) -> list[list[float]]:
    return [[float(t.count(w)) for w in WORDS] + [0.5] for t in texts]


INDEX = {"dims": len(WORDS) + 1, "embed": embed, "fields": ["text"]}


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))


def _value(rng: random.Random, body: bool) -> dict[str, Any]:
    value: dict[str, Any] = {"text": _text(rng), "n": rng.randint(0, 6),
                             "meta": {"lang": rng.choice(["en", "fr"])}}
    if rng.random() < 0.3:
        value["tags"] = rng.choice([["x", "y"], ["y"], []])
    if body:
        value["body"] = "body: " + _text(rng)  # never equal to `text` (see _ops)
    return value


Shape = tuple[Any, bool]  # a put's `index` argument, whether the value has a `body`


def _ops(seed: int, count: int) -> Iterator[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """(method, args, kwargs) calls. Reads and deletes only touch namespaces that hold items,
    and a delete never empties one: LangGraph's InMemoryStore keeps such namespaces (a pinned
    difference), which would change its listings and its search order. An item keeps the
    fields it embeds until it is deleted: an update of LangGraph's InMemoryStore keeps the
    vectors of fields it does not embed again (a pinned difference). A batch has at most one
    put: LangGraph's InMemoryStore fails a batch whose puts embed the same text twice."""
    rng = random.Random(seed)
    live: dict[tuple[str, ...], dict[str, Shape]] = {}
    for _ in range(count):
        roll = rng.random()
        if roll < 0.4 or not live:
            ns, key = rng.choice(NAMESPACES), rng.choice("abcde")
            shapes = live.setdefault(ns, {})
            if key not in shapes:
                index = rng.choice([None, None, False, ["body"], ["text", "body"]])
                shapes[key] = (index, rng.random() < 0.4)
            index, body = shapes[key]
            yield "put", (ns, key, _value(rng, body)), {"index": index}
        elif roll < 0.5:
            ns = rng.choice(sorted(live))
            key = rng.choice("abcde")
            if key in live[ns] and len(live[ns]) == 1:
                continue
            live[ns].pop(key, None)
            yield "delete", (ns, key), {}
        elif roll < 0.6:
            yield "get", (rng.choice(sorted(live)), rng.choice("abcde")), {}
        elif roll < 0.85:
            yield "search", (rng.choice(PREFIXES),), {
                "filter": rng.choice(FILTERS), "limit": rng.randint(1, 6),
                "offset": rng.choice([0, 0, 1, 3]),
                "query": rng.choice([None, None, *WORDS, "cat tea"])}
        elif roll < 0.93:
            yield "list_namespaces", (), {
                "prefix": rng.choice([None, ("u1",), ("u1", "*"), ("*", "mem")]),
                "suffix": rng.choice([None, None, ("mem",), ("x",)]),
                "max_depth": rng.choice([None, 1, 2]), "limit": rng.randint(1, 5),
                "offset": rng.choice([0, 1])}
        else:
            ns = rng.choice(sorted(live))
            key = rng.choice(sorted(live[ns]))
            index, body = live[ns][key]
            ops = [GetOp(ns, rng.choice("abcde")), SearchOp(ns[:1], rng.choice(FILTERS)),
                   PutOp(ns, key, _value(rng, body), index), GetOp(ns, key)]
            rng.shuffle(ops)
            yield "batch", (ops,), {}


def _seen(result: Any) -> Any:
    """An item without its timestamps (they differ), with its score rounded; as it is else."""
    if isinstance(result, list):
        return [_seen(r) for r in result]
    if hasattr(result, "key"):
        score = getattr(result, "score", None)
        return (result.namespace, result.key, result.value,
                None if score is None else round(score, 6))
    return result


def _call(store: BaseStore, method: str, args: Any, kwargs: Any) -> Any:
    try:
        return _seen(getattr(store, method)(*args, **kwargs))
    except Exception as error:  # the error type is the observation
        return type(error).__name__


async def _acall(store: BaseStore, method: str, args: Any, kwargs: Any) -> Any:
    name = "abatch" if method == "batch" else f"a{method}"
    try:
        return _seen(await getattr(store, name)(*args, **kwargs))
    except Exception as error:  # the error type is the observation
        return type(error).__name__


@pytest.mark.parametrize(("seed", "api"), [(1, "sync"), (2, "sync"), (3, "async")])
def test_random_sequences_match_langgraphs_in_memory_store(
    seed: int, api: str, server: RedisServer
) -> None:
    server.flush()
    theirs = InMemoryStore(index=INDEX)  # type: ignore[arg-type]
    calls = list(_ops(seed, 250))
    with LangGraphRedisStore.from_url(server.url, index=INDEX) as ours:
        for step, (method, args, kwargs) in enumerate(calls):
            if api == "sync":
                got = [_call(store, method, args, kwargs) for store in (theirs, ours)]
            else:
                got = [asyncio.run(_acall(store, method, args, kwargs))
                       for store in (theirs, ours)]
            assert got[1] == got[0], (step, method, args, kwargs)


# ------------------------------------------------------------------------------------ TTL


def test_ttl_and_refresh_match_langgraphs_sqlite_store(server: RedisServer) -> None:
    """Minute TTLs, refreshed by a get or a search unless ``refresh_ttl=False``, and a
    ``default_ttl``; compared once both stores have swept (LangGraph's SqliteStore returns
    an expired item until its sweep deletes it; ours never returns one). Times are seconds
    apart: LangGraph's SqliteStore keeps expiry times to the second."""
    server.flush()
    ttl = {"refresh_on_read": True, "default_ttl": 0.08}  # 4.8 s
    theirs = SqliteStore(sqlite3.connect(":memory:", check_same_thread=False,
                                         isolation_level=None),
                         ttl=ttl)  # type: ignore[arg-type]
    theirs.setup()
    with LangGraphRedisStore.from_url(server.url, ttl=ttl) as ours:
        stores: tuple[Any, Any] = (theirs, ours)
        for store in stores:
            for key in ("read", "unread", "found"):
                store.put(("s",), key, {"k": key}, ttl=0.08)
            store.put(("s",), "default", {"k": "default"})  # default_ttl
            store.put(("s",), "kept", {"k": "kept"}, ttl=None)
        time.sleep(2.5)
        for store in stores:
            store.get(("s",), "read")
            store.get(("s",), "unread", refresh_ttl=False)
            store.search(("s",), filter={"k": "found"})
        time.sleep(3.5)
        swept = [store.sweep_ttl() for store in stores]
        left = [sorted(i.key for i in store.search(("s",), refresh_ttl=False))
                for store in stores]
    assert left[0] == left[1] == ["found", "kept", "read"]
    assert swept[0] == 2  # "unread" and "default" had expired in LangGraph's store too
