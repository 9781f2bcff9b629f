"""RedisSaver: the shared conformance suite plus what only Redis has (hash tags, TTL, auth,
compare-and-set on the head checkpoint, other processes). Every test runs against a private
redis-server started for this session, never the system one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from graphdef.checkpoint.base import ERROR
from graphdef.checkpoint.redis import RedisSaver
from graphdef.errors import StaleCheckpointError
from graphdef.serde import SerdeError
from tests.redis_server import RedisServer, redis_server
from tests.saver_conformance import History, SaverConformance, cfg, make, snapshot

TESTS_DIR = Path(__file__).parent


@pytest.fixture(scope="session")
def private_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def server(private_redis: RedisServer) -> RedisServer:
    private_redis.flush()
    return private_redis


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    with server.client() as client:
        yield client


class TestRedisSaver(SaverConformance):
    @pytest.fixture
    def saver(self, server: RedisServer) -> Iterator[RedisSaver]:
        with RedisSaver(server.url) as saver:
            yield saver


class TestRedisSaverWithTtlAndPrefix(SaverConformance):
    @pytest.fixture
    def saver(self, server: RedisServer) -> Iterator[RedisSaver]:
        with RedisSaver.from_url(server.url, ttl=600, prefix="app:*cg") as saver:
            yield saver


def keys_of(client: redis.Redis) -> list[str]:
    return sorted(k.decode() for k in client.keys("*"))


def new_saver(server: RedisServer, **kwargs: Any) -> RedisSaver:
    return RedisSaver(server.url, **kwargs)


# ------------------------------------------------------------------------------ key layout


def test_keys_carry_the_thread_hash_tag(server: RedisServer, raw: redis.Redis) -> None:
    with new_saver(server) as saver:
        for ns in ("", "sub:1", "a|b:c"):
            history = History(saver, "t", ns)
            history.step(items=["a"])
            config = history.step(items=["a", "b"], n=1)
            saver.put_writes(config, [("items", ["c"]), (ERROR, "boom")], "task")
        keys = keys_of(raw)
        assert len(keys) > 10
        assert all(key.startswith("cg:{t}:") for key in keys), keys
        assert len({key_slot(key.encode()) for key in keys}) == 1
        assert "cg:{t}:cps:_" in keys  # the root namespace


@pytest.mark.parametrize(
    "thread", ["", "a{b", "x}y", "{z}", "~t", "has:colon", "sp ace", "ünï", "*?[glob]"]
)
def test_awkward_thread_ids(server: RedisServer, raw: redis.Redis, thread: str) -> None:
    with new_saver(server) as saver:
        config = History(saver, thread, "n:s").step(items=[thread])
        History(saver, "plain").step(items=["plain"])
        saver.put_writes(config, [("items", [1])], "task")
        thread_keys = [k for k in keys_of(raw) if "{plain}" not in k]
        # One well-formed hash tag per key, the same slot for the whole thread.
        assert all(k.count("{") == 1 and k.count("}") == 1 for k in thread_keys), thread_keys
        assert len({key_slot(k.encode()) for k in thread_keys}) == 1
        loaded = saver.get_tuple(cfg(thread, "n:s"))
        assert loaded is not None and loaded.config == config
        assert loaded.checkpoint["channel_values"] == {"items": [thread]}
        assert loaded.pending_writes == [("task", "items", [1])]
        assert {t.config["configurable"]["thread_id"] for t in saver.list(None)} == {
            thread,
            "plain",
        }
        assert saver.stored_bytes(thread) > 0
        saver.delete_thread(thread)
        assert all("{plain}" in k for k in keys_of(raw))


def test_namespaces_with_separators_do_not_collide(server: RedisServer) -> None:
    with new_saver(server) as saver:
        configs = {}
        for ns in ("a", "a:b", "a:b:c", "_", "YQ"):  # "YQ" is base64url of "a"
            history = History(saver, "t", ns)
            for i in range(3):
                configs[ns] = history.step(v=f"{ns}-{i}")
            saver.put_writes(configs[ns], [("v", ns)], "task")
        saver.prune("t", keep_last=1)
        for ns, config in configs.items():
            listed = list(saver.list(cfg("t", ns)))
            assert [t.config for t in listed] == [config]
            assert listed[0].checkpoint["channel_values"] == {"v": f"{ns}-2"}
            assert listed[0].pending_writes == [("task", "v", ns)]


def test_prefixes_are_separate(server: RedisServer, raw: redis.Redis) -> None:
    with new_saver(server, prefix="one") as one, new_saver(server, prefix="two") as two:
        History(one, "t").step(a=1)
        History(two, "t").step(a=2)
        assert [t.checkpoint["channel_values"] for t in one.list(None)] == [{"a": 1}]
        two.delete_thread("t")
        assert one.get(cfg("t")) is not None and two.get(cfg("t")) is None
        assert all(k.startswith("one:{t}:") for k in keys_of(raw))
    with pytest.raises(ValueError, match="prefix"):
        RedisSaver(server.url, prefix="a{b}")


def test_prune_and_delete_remove_keys(server: RedisServer, raw: redis.Redis) -> None:
    with new_saver(server) as saver:
        history = History(saver, "t")
        for i in range(5):
            config = history.step(items=list(range(i + 1)))
            saver.put_writes(config, [("items", [i])], "task")
        writes_keys = [k for k in keys_of(raw) if ":writes:" in k]
        assert len(writes_keys) == 5
        saver.prune("t", keep_last=2)
        assert len([k for k in keys_of(raw) if ":writes:" in k]) == 2
        assert len(raw.smembers("cg:{t}:keys")) == len(keys_of(raw)) - 1
        saver.delete_thread("t")
        assert keys_of(raw) == []


def test_rejects_decoding_client_and_bad_ttl(server: RedisServer) -> None:
    with server.client(decode_responses=True) as client, pytest.raises(ValueError):
        RedisSaver(client)
    with pytest.raises(ValueError, match="ttl"):
        RedisSaver(server.url, ttl=0)


def test_uses_a_given_client_without_closing_it(server: RedisServer) -> None:
    with server.client() as client:
        with RedisSaver(client) as saver:
            History(saver, "t").step(a=1)
        assert client.ping()
        assert RedisSaver(client).get(cfg("t")) is not None


# ------------------------------------------------------------------------------------- TTL


def test_ttl_set_and_refreshed_on_every_key_of_the_thread(
    server: RedisServer, raw: redis.Redis
) -> None:
    with new_saver(server, ttl=60) as saver:
        root = History(saver, "t").step(items=["a"])
        History(saver, "t", "sub").step(items=["b"])
        saver.put_writes(root, [("items", ["c"])], "task")
        History(saver, "other").step(x=1)
        keys = keys_of(raw)
        assert keys and all(0 < raw.pttl(k) <= 60_000 for k in keys)

        for key in keys:
            raw.pexpire(key, 5_000)
        saver.put_writes(root, [("items", ["d"])], "task-2")  # refreshes thread t only
        for key in keys_of(raw):
            if "{t}" in key:
                assert raw.pttl(key) > 50_000, key
            else:
                assert raw.pttl(key) <= 5_000, key
        for key in keys_of(raw):
            raw.pexpire(key, 5_000)
        History(saver, "t", "sub").step(items=["b", "e"])  # a put refreshes all namespaces
        assert all(raw.pttl(k) > 50_000 for k in keys_of(raw) if "{t}" in k)


def test_no_ttl_means_persistent_keys(server: RedisServer, raw: redis.Redis) -> None:
    with new_saver(server) as saver:
        config = History(saver, "t").step(a=1)
        saver.put_writes(config, [("a", 2)], "task")
        assert all(raw.ttl(k) == -1 for k in keys_of(raw))


def test_expired_thread_is_gone(server: RedisServer, raw: redis.Redis) -> None:
    with new_saver(server, ttl=0.2) as saver:
        History(saver, "t").step(a=1)
        assert saver.get(cfg("t")) is not None
        time.sleep(0.35)
        assert saver.get(cfg("t")) is None
        assert keys_of(raw) == []


# ------------------------------------------------------------------------- compare-and-set


def test_head_and_put_if_head(server: RedisServer) -> None:
    with new_saver(server) as saver:
        assert saver.head("t") is None
        first = saver.put_if_head(cfg("t"), make({"a": 1}, {"a": 1}), {}, {"a": 1}, None)
        assert saver.head("t") == first["configurable"]["checkpoint_id"]
        second = saver.put_if_head(first, make({"a": 2}, {"a": 2}), {}, {"a": 2}, saver.head("t"))
        assert saver.head("t") == second["configurable"]["checkpoint_id"]
        assert saver.head("t", "sub") is None
        saver.put_if_head(cfg("t", "sub"), make({"s": 1}, {"s": 1}), {}, {"s": 1}, None)

        before = snapshot(saver)
        stale = make({"a": 3}, {"a": 3})
        for expected in (first["configurable"]["checkpoint_id"], None, "nonsense"):
            with pytest.raises(StaleCheckpointError, match="expected"):
                saver.put_if_head(first, stale, {}, {"a": 3}, expected)
        assert snapshot(saver) == before
        assert saver.get(cfg("t", "", stale["id"])) is None
        assert issubclass(StaleCheckpointError, RuntimeError)


def test_put_if_head_loses_a_race_inside_its_transaction(server: RedisServer) -> None:
    """A rival commits between this writer's read of the head and its EXEC: the EXEC fails,
    the retry sees the new head and refuses, and nothing of the loser is stored. (The writer
    never saw the head's refs, so it puts the WATCH way.)"""
    with new_saver(server) as saver, new_saver(server) as rival:
        base = History(rival, "t").step(items=["a"])
        head = saver.head("t")
        rival_config: dict[str, Any] = {}
        original = saver._resolve
        calls = 0

        def resolve_then_rival(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            result = original(*args)
            if calls == 1:  # still inside the first writer's WATCH window
                checkpoint = make({"items": ["a", "rival"]}, {"items": 3})
                rival_config.update(rival.put_if_head(base, checkpoint, {}, {"items": 3}, head))
            return result

        saver._resolve = resolve_then_rival  # type: ignore[method-assign]
        loser = make({"items": ["a", "loser"], "x": "y" * 5000}, {"items": 3, "x": 1})
        with pytest.raises(StaleCheckpointError):
            saver.put_if_head(base, loser, {}, {"items": 3, "x": 1}, head)
        assert calls == 1
        assert saver.head("t") == rival_config["configurable"]["checkpoint_id"]
        assert saver.get(cfg("t", "", loser["id"])) is None
        assert saver.stored_bytes("t") < 5000  # the loser's blob was not written either
        loaded = saver.get(cfg("t"))
        assert loaded is not None and loaded["channel_values"]["items"] == ["a", "rival"]


def test_put_if_head_threads_race_exactly_one_wins(server: RedisServer) -> None:
    with new_saver(server) as setup:
        base = History(setup, "t").step(n=0)
        head = setup.head("t")
    savers = [new_saver(server) for _ in range(8)]
    barrier = threading.Barrier(len(savers))
    won: list[str] = []
    lost: list[str] = []
    errors: list[BaseException] = []

    def contend(n: int) -> None:
        checkpoint = make({"n": n + 1, "blob": f"{n}" * 2000}, {"n": 2, "blob": 1})
        barrier.wait()
        try:
            savers[n].put_if_head(base, checkpoint, {"writer": n}, {"n": 2, "blob": 1}, head)
            won.append(checkpoint["id"])
        except StaleCheckpointError:
            lost.append(checkpoint["id"])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(len(savers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(won) == 1 and len(lost) == len(savers) - 1
    reader = savers[0]
    assert reader.head("t") == won[0]
    assert [t.checkpoint["id"] for t in reader.list(cfg("t"))] == [won[0], head]
    assert all(reader.get(cfg("t", "", cid)) is None for cid in lost)
    assert reader.stored_bytes("t") < 2 * 2000  # only the winner's blob
    for saver in savers:
        saver.close()


# ---------------------------------------------------------------- other clients, processes


def test_copy_thread_copies_every_checkpoint_and_write(server: RedisServer,
                                                      raw: redis.Redis) -> None:
    with new_saver(server, ttl=600) as saver:
        history = History(saver, "t")
        for i in range(4):
            config = history.step(items=list(range(i + 1)))
        saver.put_writes(config, [("items", [99])], "task")
        saver.copy_thread("t", "copy")
        source = list(saver.list(cfg("t")))
        copied = list(saver.list(cfg("copy")))
        assert [c.checkpoint for c in copied] == [c.checkpoint for c in source]
        assert [c.metadata for c in copied] == [c.metadata for c in source]
        assert [c.config["configurable"]["thread_id"] for c in copied] == ["copy"] * 4
        assert copied[0].pending_writes == [("task", "items", [99])]
        assert len(raw.smembers("cg:{copy}:keys")) == len(raw.smembers("cg:{t}:keys"))
        assert all(0 < raw.ttl(k) <= 600 for k in raw.keys("cg:{copy}:*"))
        history.config = copied[0].config  # the copy goes on from its own head
        after = history.step(items=list(range(5)))
        assert saver.get_tuple(cfg("copy")).config == after
        assert saver.get(after)["channel_values"]["items"] == list(range(5))
        assert len(list(saver.list(cfg("t")))) == 4
        with pytest.raises(ValueError, match="already has checkpoints"):
            saver.copy_thread("t", "copy")
        saver.delete_thread("t")  # the copy is a thread of its own
        after_delete = list(saver.list(cfg("copy")))
        assert [c.checkpoint for c in after_delete[1:]] == [c.checkpoint for c in source]
        saver.copy_thread("nothing-here", "empty")
        assert raw.keys("cg:{empty}:*") == []


def test_second_saver_with_empty_cache_reads_and_continues(server: RedisServer) -> None:
    with new_saver(server) as first, new_saver(server) as second:
        history = History(first, "t")
        for i in range(10):
            config = history.step(items=list(range(i + 1)))
        first.put_writes(config, [("items", [99])], "task")
        loaded = second.get_tuple(cfg("t"))
        assert loaded is not None and loaded.config == config
        assert loaded.checkpoint["channel_values"]["items"] == list(range(10))
        assert loaded.pending_writes == [("task", "items", [99])]
        history.saver = second  # the second saver continues the thread
        config = history.step(items=list(range(11)))
        again = first.get(config)
        assert again is not None and again["channel_values"]["items"] == list(range(11))


def test_stale_delta_base_after_another_writer(server: RedisServer) -> None:
    """A saver whose cache remembers blobs another client deleted and rewrote must not write
    deltas against them."""
    with new_saver(server) as first, new_saver(server) as second:
        mine = History(first, "t")
        mine.step(items=["a"])
        mine.step(items=["a", "b"])
        second.delete_thread("t")
        theirs = History(second, "t")
        theirs.step(items=["x"])
        theirs.step(items=["x", "y"])
        config = mine.step(items=["a", "b", "c"])
        for saver in (first, second):
            loaded = saver.get(config)
            assert loaded is not None and loaded["channel_values"]["items"] == ["a", "b", "c"]


WRITER = """
import sys
sys.path.insert(0, ".")
from tests.saver_conformance import History
from graphdef.checkpoint.redis import RedisSaver

url, thread, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
with RedisSaver.from_url(url) as saver:
    history = History(saver, thread)
    for i in range(steps):
        config = history.step({"step": i}, items=list(range(i + 1)))
        saver.put_writes(config, [("items", [i])], f"task-{i}")
print(config["configurable"]["checkpoint_id"])
"""

READER = """
import sys
from graphdef.checkpoint.redis import RedisSaver
with RedisSaver(sys.argv[1]) as saver:
    print(saver.get({"configurable": {"thread_id": sys.argv[2]}})["channel_values"]["items"])
"""


def run_python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=TESTS_DIR.parent,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_across_processes(server: RedisServer) -> None:
    checkpoint_id = run_python(WRITER, server.url, "t", "20").strip()
    with new_saver(server) as saver:
        loaded = saver.get_tuple(cfg("t"))
        assert loaded is not None and loaded.config == cfg("t", "", checkpoint_id)
        assert loaded.checkpoint["channel_values"] == {"items": list(range(20))}
        assert loaded.pending_writes == [("task-19", "items", [19])]
        assert len(list(saver.list(cfg("t")))) == 20
        history = History(saver, "t")
        history.config = loaded.config
        history.values = dict(loaded.checkpoint["channel_values"])
        history.versions = dict(loaded.checkpoint["channel_versions"])
        history.step(items=list(range(21)))
    assert run_python(READER, server.url, "t").strip() == str(list(range(21)))


# --------------------------------------------------------------------------------- safety


def test_password_auth() -> None:
    password = "s3cret/pw"
    with redis_server(password=password) as server:
        assert server.url.startswith("redis://:s3cret%2Fpw@127.0.0.1:")
        with RedisSaver(server.url) as saver:
            config = History(saver, "t").step(a=1)
            loaded = saver.get(config)
            assert loaded is not None and loaded["channel_values"] == {"a": 1}
        plain = f"redis://:pw@127.0.0.1:{server.port}/0"
        with RedisSaver(plain) as wrong, pytest.raises(redis.AuthenticationError):
            wrong.get(cfg("t"))
        anonymous = RedisSaver(f"redis://127.0.0.1:{server.port}/0")
        with anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.get(cfg("t"))


def test_foreign_bytes_are_a_serde_error_not_code(server: RedisServer, raw: redis.Redis) -> None:
    # What an attacker might plant: a pickle of ``print`` (never unpickled, just bytes).
    forged = (
        b"f|\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00"
        b"\x8c\x08builtins\x94\x8c\x05print\x94\x93\x94."
    )
    with new_saver(server) as saver:
        config = History(saver, "t").step(a=1)
        (field,) = raw.hkeys("cg:{t}:blob:_")
        raw.hset("cg:{t}:blob:_", field, forged)
        with pytest.raises(SerdeError):
            saver.get(config)


def test_put_retries_when_its_delta_base_vanishes_inside_the_transaction(
    server: RedisServer,
) -> None:
    """Another client deletes the thread between this put's reads and its EXEC: the EXEC
    fails, the retry sees the delta base gone and stores a full copy instead."""
    with new_saver(server) as saver, new_saver(server) as other:
        history = History(saver, "t")
        history.step(items=["a"])
        history.step(items=["a", "b"])  # the cache now offers a delta for the next put
        original = saver._resolve
        calls = 0

        def resolve_then_delete(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            result = original(*args)
            if calls == 1:
                other.delete_thread("t")
            return result

        saver._resolve = resolve_then_delete  # type: ignore[method-assign]
        config = history.step(items=["a", "b", "c"])
        assert calls == 2
        assert [t.config for t in other.list(cfg("t"))] == [config]
        loaded = other.get(config)
        assert loaded is not None and loaded["channel_values"]["items"] == ["a", "b", "c"]


def test_odd_channel_names_and_empty_checkpoints(server: RedisServer) -> None:
    with new_saver(server) as saver:
        history = History(saver, "t")
        names = ["branch:to:node", "ü:|{x}", "1:2:3"]
        for i in range(3):
            config = history.step(**{name: [name, i] for name in names})
        saver.put_writes(config, [(name, i) for i, name in enumerate(names)], "task:1|x")
        with new_saver(server) as fresh:
            loaded = fresh.get_tuple(config)
        assert loaded is not None
        assert loaded.checkpoint["channel_values"] == {name: [name, 2] for name in names}
        assert loaded.pending_writes == [("task:1|x", name, i) for i, name in enumerate(names)]
        empty = saver.put(cfg("e"), make({}, {}), {}, {})
        assert saver.get(empty) is not None and saver.get(cfg("e")) == saver.get(empty)
        saver.prune("t", keep_last=1)
        loaded = saver.get(cfg("t"))
        assert loaded is not None and loaded["channel_values"] == {n: [n, 2] for n in names}


def test_resp2_client(server: RedisServer) -> None:
    with server.client(protocol=2) as client:
        saver = RedisSaver(client)
        history = History(saver, "t")
        for i in range(3):
            config = history.step({"step": i}, items=list(range(i + 1)))
        saver.put_writes(config, [("items", [7])], "task")
        assert saver.get_tuple(cfg("t", "", "0" * 36)) is None
        assert [t.metadata["step"] for t in saver.list(None, filter={"step": 1})] == [1]
        loaded = saver.get_tuple(cfg("t"))
        assert loaded is not None and loaded.pending_writes == [("task", "items", [7])]
        assert saver.stored_bytes() > 0 and saver.head("t") == loaded.checkpoint["id"]


def test_loading_for_one_task_leaves_out_its_siblings_writes(server: RedisServer) -> None:
    from graphdef.constants import NULL_TASK_ID

    with new_saver(server) as saver:
        config = History(saver, "wide").step(items=["x"])
        saver.put_writes(config, [("items", ["null"])], NULL_TASK_ID)
        for sibling in ("t1", "t2", "t3"):
            saver.put_writes(config, [("items", [sibling])], sibling, f"~push:{sibling}")
        # A call made from inside t2 (functional API): its path names its caller.
        saver.put_writes(config, [("__return__", 7)], "c9", "~push:('~push:t2', 0, 't2')")
        everything = saver.get_tuple(config)
        mine = saver.get_tuple_for_tasks(config, ["t2", NULL_TASK_ID])
        assert everything is not None and mine is not None
        assert mine.checkpoint == everything.checkpoint
        assert sorted(w[0] for w in everything.pending_writes) == [
            NULL_TASK_ID, "c9", "t1", "t2", "t3"]
        assert sorted(w[0] for w in mine.pending_writes) == [NULL_TASK_ID, "c9", "t2"]


def test_a_blob_read_again_is_decoded_once(server: RedisServer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Every task of a wide superstep reads the same stored list of `Send`s: a process
    decodes each stored blob once, and each reader still gets a list of its own."""
    with new_saver(server) as saver:
        items = [{"n": i} for i in range(50)]
        config = History(saver, "decode-once").step(items=items)
        saver.codec.cache.drop_thread("decode-once")
        decoded: list[bytes] = []
        loads = saver.codec.serde.loads
        monkeypatch.setattr(saver.codec.serde, "loads",
                            lambda data, *a, **k: decoded.append(data) or loads(data, *a, **k))

        def list_decodes() -> int:
            return sum(1 for data in decoded if b'"n":49' in data)

        first = saver.get(config)
        assert first is not None and list_decodes() >= 1
        after_first = list_decodes()
        first["channel_values"]["items"].append({"n": "mine"})
        second = saver.get(config)
        assert second is not None and second["channel_values"]["items"] == items
        assert list_decodes() == after_first


def _commands(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in client.info("commandstats").items()}


def test_a_chain_of_puts_on_known_heads_is_one_script_each(server: RedisServer) -> None:
    """A writer that wrote (or read) the head puts its child in one script: no WATCH,
    MULTI or read of the parent's refs; what it stores reads back as the WATCH way's."""
    with new_saver(server) as saver, new_saver(server) as reader:
        history = History(saver, "chain")
        config = history.step(items=["a"], n=1)
        client = saver.client
        client.config_resetstat()
        for i in range(5):
            checkpoint = make({"items": ["a", *"b" * i], "n": i}, {"items": 2 + i, "n": 2 + i})
            config = saver.put_if_head(config, checkpoint, {"step": i}, {"items": 2 + i,
                                                                          "n": 2 + i},
                                       saver.head("chain"))
        used = _commands(client)
        assert used.get("evalsha") == 5 and "watch" not in used and "multi" not in used
        assert "hget" not in used  # the parents' refs came from the writer's own cache
        loaded = reader.get_tuple(config)
        assert loaded is not None
        assert loaded.checkpoint["channel_values"] == {"items": ["a", "b", "b", "b", "b"],
                                                       "n": 4}
        assert [c.metadata.get("step") for c in reader.list(cfg("chain"))][:5] == [4, 3, 2, 1, 0]


def test_a_put_on_a_known_head_that_moved_stores_nothing(server: RedisServer) -> None:
    """Two writers know the same head; the second to put loses, in its one script."""
    with new_saver(server) as saver, new_saver(server) as rival:
        base = History(saver, "t").step(items=["a"])
        head = saver.head("t")
        assert rival.get_tuple(base) is not None  # the rival knows the head's refs too
        won = rival.put_if_head(base, make({"items": ["a", "r"]}, {"items": 3}), {},
                                {"items": 3}, head)
        before = snapshot(saver)
        loser = make({"items": ["a", "l"], "x": "y" * 5000}, {"items": 3, "x": 1})
        with pytest.raises(StaleCheckpointError, match="expected"):
            saver.put_if_head(base, loser, {}, {"items": 3, "x": 1}, head)
        assert snapshot(saver) == before
        assert saver.head("t") == won["configurable"]["checkpoint_id"]


def test_a_put_on_a_known_head_without_its_lease_stores_nothing(server: RedisServer) -> None:
    """The guard (a writer's lease) is checked in the same script as the head."""
    with new_saver(server) as saver:
        base = History(saver, "t").step(items=["a"])
        guard = ("cg:{t}:lease:run-x", "me")
        saver.client.set(guard[0], "someone else")
        before = snapshot(saver)
        with pytest.raises(StaleCheckpointError, match="lost its lease"):
            saver.put_if_head(base, make({"items": ["a", "b"]}, {"items": 3}), {},
                              {"items": 3}, saver.head("t"), guard=guard)
        assert snapshot(saver) == before
        saver.client.set(guard[0], "me")
        saver.put_if_head(base, make({"items": ["a", "b"]}, {"items": 3}), {},
                          {"items": 3}, saver.head("t"), guard=guard)
        saver.client.delete(guard[0])


def test_a_namespaces_first_put_is_one_script_and_refuses_a_thread_with_a_head(
        server: RedisServer) -> None:
    """The first checkpoint of a namespace goes in one script that lists its keys; one that
    expects no head on a thread that has one stores nothing."""
    with new_saver(server) as saver:
        client = saver.client
        saver.put_if_head(cfg("warm"), make({"a": 0}, {"a": 1}), {}, {"a": 1}, None)
        client.config_resetstat()  # the script is loaded: count its one call
        first = saver.put_if_head(cfg("fresh"), make({"a": 1}, {"a": 1}), {}, {"a": 1}, None)
        used = _commands(client)
        assert used.get("evalsha") == 1 and "watch" not in used and used.get("sadd") == 1
        loaded = saver.get_tuple(first)
        assert loaded is not None and loaded.checkpoint["channel_values"] == {"a": 1}
        before = snapshot(saver)
        with pytest.raises(StaleCheckpointError, match="expected None"):
            saver.put_if_head(cfg("fresh"), make({"a": 2}, {"a": 2}), {}, {"a": 2}, None)
        assert snapshot(saver) == before
        saver.delete_thread("fresh")
        saver.delete_thread("warm")
        assert not client.keys("*fresh*")  # every key it wrote was listed


def test_a_fork_storing_a_blob_already_stored_loads_every_checkpoint_right(
        server: RedisServer) -> None:
    """A fork re-puts versions an older lineage stored, with the same values (so the same
    blob fields): whole records may be written over stored ones, deltas never are (a delta
    over a stored record could loop a chain through a newer base). Every checkpoint of both
    lineages loads its own values, from a saver that remembers nothing too."""
    items = [list(range(i)) for i in range(40, 46)]
    with new_saver(server) as first, new_saver(server) as second:
        main = History(first, "t")
        lineage = [main.step(items=value, flag=i % 2) for i, value in enumerate(items)]
        fork = History(second, "t")
        fork.config = lineage[1]
        fork.values = {"items": items[1], "flag": 1}
        fork.versions = {"items": 2, "flag": 2}
        forked = [fork.step(items=value, flag=(i + 2) % 2)
                  for i, value in enumerate(items[2:])]
    with new_saver(server) as cold:
        for config, value in [*zip(lineage, items, strict=True),
                              *zip(forked, items[2:], strict=True)]:
            loaded = cold.get(config)
            assert loaded is not None and loaded["channel_values"]["items"] == value
