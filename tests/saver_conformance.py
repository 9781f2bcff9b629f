"""The behaviour every checkpoint saver must share; subclass and override the ``saver`` fixture.

Kept out of ``test_*`` files so pytest collects it only through the backends that use it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import uuid
from decimal import Decimal
from typing import Any

import pytest

from graphdef.checkpoint.base import (
    ERROR,
    INTERRUPT,
    RESUME,
    BaseCheckpointSaver,
    Checkpoint,
    empty_checkpoint,
)
from graphdef.checkpoint.delta import ListCache
from graphdef.serde import NotSerializableError, dumps


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: tuple[int, ...] = ()


def cfg(thread: str, ns: str = "", checkpoint_id: str | None = None) -> dict[str, Any]:
    configurable: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def make(values: dict[str, Any], versions: dict[str, int]) -> Checkpoint:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = dict(values)
    checkpoint["channel_versions"] = dict(versions)
    checkpoint["versions_seen"] = {"node": dict(versions)}
    return checkpoint


def checkpoint_id(config: dict[str, Any]) -> str:
    return config["configurable"]["checkpoint_id"]


class History:
    """Puts a chain of checkpoints the way a runner does: bump the versions of what changed."""

    def __init__(self, saver: BaseCheckpointSaver, thread: str, ns: str = "") -> None:
        self.saver = saver
        self.config = cfg(thread, ns)
        self.values: dict[str, Any] = {}
        self.versions: dict[str, int] = {}

    def step(self, metadata: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
        new_versions = {}
        for channel, value in changes.items():
            version = self.saver.get_next_version(self.versions.get(channel))
            self.versions[channel] = new_versions[channel] = version
            self.values[channel] = value
        checkpoint = make(self.values, self.versions)
        self.config = self.saver.put(self.config, checkpoint, metadata or {}, new_versions)
        return self.config


def snapshot(saver: BaseCheckpointSaver) -> list[Any]:
    """Everything observable through the contract, to compare before and after a failure."""
    return [saver.stored_bytes()] + [
        (t.config, t.checkpoint, t.metadata, t.pending_writes) for t in saver.list(None)
    ]


class SaverConformance:
    @pytest.fixture
    def saver(self) -> BaseCheckpointSaver:
        raise NotImplementedError("override the saver fixture")

    # ----------------------------------------------------------------------- put / get

    def test_round_trip_mixed_values(self, saver: BaseCheckpointSaver) -> None:
        values = {
            "text": "héllo",
            "number": 3,
            "ratio": 0.25,
            "none": None,
            "nested": {"a": [1, (2, 3)], "b": {"__cg__": "not a tag"}},
            "when": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
            "id": uuid.UUID(int=7),
            "money": Decimal("9.99"),
            "raw": b"\x00\x01",
            "tags": {"x", "y"},
            "point": Point(1, (2, 3)),
        }
        checkpoint = make(values, dict.fromkeys(values, 1))
        metadata = {"source": "loop", "step": 2, "parents": {}, "writes": {"n": [1, 2]}}
        config = saver.put(cfg("t"), checkpoint, metadata, dict.fromkeys(values, 1))

        assert config == cfg("t", "", checkpoint["id"])
        loaded = saver.get_tuple(config)
        assert loaded is not None
        assert loaded.config == config
        assert loaded.checkpoint == checkpoint
        assert loaded.metadata == metadata
        assert loaded.parent_config is None
        assert loaded.pending_writes == []
        assert type(loaded.checkpoint["channel_values"]["nested"]["a"][1]) is tuple
        assert saver.get(config) == checkpoint

    def test_missing_thread_or_id(self, saver: BaseCheckpointSaver) -> None:
        assert saver.get_tuple(cfg("nobody")) is None
        History(saver, "t").step(a=1)
        assert saver.get_tuple(cfg("t", "", "0" * 36)) is None
        assert saver.get_tuple(cfg("t", "other-ns")) is None
        assert saver.get(cfg("nobody")) is None

    def test_newest_by_default_get_by_id_and_parents(self, saver: BaseCheckpointSaver) -> None:
        history = History(saver, "t")
        first = history.step(a=1)
        second = history.step(a=2)
        third = history.step(b="x")

        newest = saver.get_tuple(cfg("t"))
        assert newest is not None and newest.config == third
        assert newest.checkpoint["channel_values"] == {"a": 2, "b": "x"}
        assert newest.parent_config == second
        older = saver.get_tuple(first)
        assert older is not None and older.checkpoint["channel_values"] == {"a": 1}
        assert older.parent_config is None

    def test_mutating_after_put_changes_nothing(self, saver: BaseCheckpointSaver) -> None:
        items = [{"n": 1}]
        checkpoint = make({"items": items}, {"items": 1})
        config = saver.put(cfg("t"), checkpoint, {}, {"items": 1})
        items[0]["n"] = 99
        items.append({"n": 2})
        loaded = saver.get(config)
        assert loaded is not None and loaded["channel_values"]["items"] == [{"n": 1}]

    def test_get_next_version(self, saver: BaseCheckpointSaver) -> None:
        assert saver.get_next_version(None) == 1
        assert saver.get_next_version(1) == 2

    # -------------------------------------------------------------------------------- list

    def test_list_order_filter_before_limit(self, saver: BaseCheckpointSaver) -> None:
        history = History(saver, "t")
        configs = [history.step({"step": i, "source": "loop"}, a=i) for i in range(5)]
        History(saver, "other").step({"step": 0}, a=0)

        listed = [t.config for t in saver.list(cfg("t"))]
        assert listed == configs[::-1]
        assert [t.config for t in saver.list(cfg("t"), limit=2)] == configs[:2:-1]
        assert [t.config for t in saver.list(cfg("t"), before=configs[3])] == configs[2::-1]
        assert [t.config for t in saver.list(cfg("t"), filter={"step": 1})] == [configs[1]]
        assert [t.config for t in saver.list(cfg("t"), filter={"source": "loop"}, limit=1)] == [
            configs[4]
        ]
        assert list(saver.list(cfg("t"), filter={"missing": None})) == []
        assert [t.config for t in saver.list(configs[2])] == [configs[2]]
        assert list(saver.list(cfg("t"), limit=0)) == []
        every = list(saver.list(None))
        assert len(every) == 6
        ids = [checkpoint_id(t.config) for t in every]
        assert ids == sorted(ids, reverse=True)

    def test_list_namespaces(self, saver: BaseCheckpointSaver) -> None:
        root = History(saver, "t").step(a=1)
        child = History(saver, "t", "sub:1").step(a=2)

        assert [t.config for t in saver.list(cfg("t", ""))] == [root]
        assert [t.config for t in saver.list(cfg("t", "sub:1"))] == [child]
        unrestricted = {"configurable": {"thread_id": "t"}}
        assert [t.config for t in saver.list(unrestricted)] == [child, root]
        loaded = saver.get_tuple(cfg("t", "sub:1"))
        assert loaded is not None and loaded.checkpoint["channel_values"] == {"a": 2}

    # ------------------------------------------------------------------------ value blobs

    def test_value_stored_once_per_version(self, saver: BaseCheckpointSaver) -> None:
        big = "x" * 20_000
        history = History(saver, "t")
        history.step(big=big)
        before = saver.stored_bytes()
        for _ in range(3):  # unchanged channel: the checkpoints refer to version 1
            history.step(small=len(history.versions))
        # The same version put again (as a re-put after a crash would) is one blob too.
        checkpoint = make(history.values, history.versions)
        saver.put(history.config, checkpoint, {}, {"big": history.versions["big"]})
        assert saver.stored_bytes() - before < len(big)
        loaded = saver.get(cfg("t"))
        assert loaded is not None and loaded["channel_values"]["big"] == big

    def test_empty_marker(self, saver: BaseCheckpointSaver) -> None:
        history = History(saver, "t")
        history.step(a=1)
        checkpoint = make({}, {"a": 2})
        config = saver.put(history.config, checkpoint, {}, {"a": 2})
        loaded = saver.get(config)
        assert loaded is not None
        assert loaded["channel_values"] == {}
        assert loaded["channel_versions"] == {"a": 2}

    def test_values_only_for_new_versions(self, saver: BaseCheckpointSaver) -> None:
        # A value for a channel missing from new_versions is not stored by that put.
        history = History(saver, "t")
        history.step(a=1)
        checkpoint = make({"a": 1, "b": "ignored"}, {"a": 1, "b": 1})
        config = saver.put(history.config, checkpoint, {}, {})
        loaded = saver.get(config)
        assert loaded is not None and loaded["channel_values"] == {"a": 1}

    # ---------------------------------------------------------------------- pending writes

    def test_pending_writes(self, saver: BaseCheckpointSaver) -> None:
        config = History(saver, "t").step(a=1)
        saver.put_writes(config, [("a", 1), ("b", (2,))], "task-2")
        saver.put_writes(config, [("a", "first")], "task-1", "path")
        saver.put_writes(config, [("a", "second"), ("c", 3)], "task-1")  # idx 0 kept
        saver.put_writes(config, [("a", "third")], "task-1")  # a lone repeat: kept too
        saver.put_writes(config, [(ERROR, "boom")], "task-1")
        saver.put_writes(config, [(ERROR, "boom again")], "task-1")  # special: overwritten
        saver.put_writes(config, [(INTERRUPT, {"v": 1}), (RESUME, "yes")], "task-3")

        loaded = saver.get_tuple(config)
        assert loaded is not None
        assert loaded.pending_writes == [
            ("task-2", "a", 1),
            ("task-2", "b", (2,)),
            ("task-1", ERROR, "boom again"),
            ("task-1", "a", "first"),
            ("task-1", "c", 3),
            ("task-3", RESUME, "yes"),
            ("task-3", INTERRUPT, {"v": 1}),
        ]
        assert saver.get_tuple(cfg("t")) == loaded  # same checkpoint found as newest

    def test_writes_belong_to_one_checkpoint(self, saver: BaseCheckpointSaver) -> None:
        history = History(saver, "t")
        first = history.step(a=1)
        second = history.step(a=2)
        saver.put_writes(first, [("a", 5)], "task")
        older = saver.get_tuple(first)
        newer = saver.get_tuple(second)
        assert older is not None and older.pending_writes == [("task", "a", 5)]
        assert newer is not None and newer.pending_writes == []

    # ---------------------------------------------------------------------------- deletion

    def test_delete_thread_leaves_others(self, saver: BaseCheckpointSaver) -> None:
        kept = History(saver, "keep")
        kept.step(items=["a"])
        kept_config = kept.step(items=["a", "b"])
        saver.put_writes(kept_config, [("items", ["c"])], "task")
        doomed = History(saver, "doomed")
        doomed.step(items=["a"])
        doomed_config = doomed.step(items=["a", "b"])
        History(saver, "doomed", "sub").step(x=1)
        saver.put_writes(doomed_config, [("items", ["c"])], "task")
        kept_before = [(t.config, t.checkpoint, t.pending_writes) for t in saver.list(cfg("keep"))]
        kept_bytes = saver.stored_bytes("keep")

        saver.delete_thread("doomed")

        assert saver.get_tuple(cfg("doomed")) is None
        assert saver.get_tuple(cfg("doomed", "sub")) is None
        assert list(saver.list({"configurable": {"thread_id": "doomed"}})) == []
        assert saver.stored_bytes("doomed") == 0
        assert saver.stored_bytes() == kept_bytes
        after = [(t.config, t.checkpoint, t.pending_writes) for t in saver.list(cfg("keep"))]
        assert after == kept_before

    def test_thread_reused_after_delete(self, saver: BaseCheckpointSaver) -> None:
        old = History(saver, "t")
        for i in range(3):
            old.step(items=list(range(i + 1)))
        saver.delete_thread("t")
        new = History(saver, "t")
        for i in range(4):
            config = new.step(items=list(range(10, 11 + i)))
        loaded = saver.get(config)
        assert loaded is not None and loaded["channel_values"]["items"] == [10, 11, 12, 13]

    def test_prune_keep_last(self, saver: BaseCheckpointSaver) -> None:
        payload = "p" * 5_000
        history = History(saver, "t")
        configs = []
        for i in range(6):
            configs.append(history.step({"step": i}, blob=f"{i}{payload}", n=i))
            saver.put_writes(configs[-1], [("n", i)], f"task-{i}")
        sub = History(saver, "t", "sub")
        sub_configs = [sub.step(x=i) for i in range(3)]
        other = History(saver, "other").step(blob=payload)

        saver.prune("t", keep_last=2)

        assert [t.config for t in saver.list(cfg("t"))] == configs[:3:-1]
        assert [t.config for t in saver.list(cfg("t", "sub"))] == sub_configs[:0:-1]
        for config in configs[:4]:
            assert saver.get_tuple(config) is None
        newest = saver.get_tuple(configs[-1])
        assert newest is not None
        assert newest.checkpoint["channel_values"] == {"blob": f"5{payload}", "n": 5}
        assert newest.pending_writes == [("task-5", "n", 5)]
        # Values of dropped versions are gone: two kept blob versions plus small change.
        assert saver.stored_bytes("t") < 3 * len(payload)
        loaded_other = saver.get(other)
        assert loaded_other is not None and loaded_other["channel_values"]["blob"] == payload
        with pytest.raises(ValueError):
            saver.prune("t", keep_last=0)

    def test_prune_keeps_delta_bases(self, saver: BaseCheckpointSaver) -> None:
        history = History(saver, "t")
        items: list[str] = []
        for i in range(8):
            items = [*items, f"item-{i}"]
            history.step(items=items, n=i)
        saver.prune("t", keep_last=1)

        loaded = saver.get(cfg("t"))
        assert loaded is not None and loaded["channel_values"]["items"] == items
        assert len(list(saver.list(cfg("t")))) == 1
        # The thread continues from the pruned state and still reads back correctly.
        config = history.step(items=[*items, "after"])
        loaded = saver.get(config)
        assert loaded is not None and loaded["channel_values"]["items"] == [*items, "after"]

    # ---------------------------------------------------------------- non-serializable data

    def test_non_serializable_value_stores_nothing(self, saver: BaseCheckpointSaver) -> None:
        history = History(saver, "t")
        history.step(items=[1], other="ok")
        before = snapshot(saver)
        checkpoint = make({"items": [1, 2, {"fn": len}], "other": "new"}, {"items": 2, "other": 2})
        with pytest.raises(NotSerializableError) as caught:
            saver.put(history.config, checkpoint, {}, {"items": 2, "other": 2})
        assert "state['items'][2]['fn']" in str(caught.value)
        assert "builtin_function_or_method" in str(caught.value)
        assert snapshot(saver) == before

    def test_non_serializable_appended_item_names_its_index(
        self, saver: BaseCheckpointSaver
    ) -> None:
        history = History(saver, "t")
        history.step(items=["a", "b"])
        history.step(items=["a", "b", "c"])  # the saver now knows the list: deltas follow
        before = snapshot(saver)
        checkpoint = make({"items": ["a", "b", "c", {"f": object()}]}, {"items": 3})
        with pytest.raises(NotSerializableError, match=r"state\['items'\]\[3\]\['f'\]"):
            saver.put(history.config, checkpoint, {}, {"items": 3})
        assert snapshot(saver) == before

    def test_non_serializable_metadata_stores_nothing(self, saver: BaseCheckpointSaver) -> None:
        before = snapshot(saver)
        with pytest.raises(NotSerializableError, match=r"metadata\['bad'\]"):
            saver.put(cfg("t"), make({"a": 1}, {"a": 1}), {"bad": object()}, {"a": 1})
        assert snapshot(saver) == before

    def test_non_serializable_write_stores_nothing(self, saver: BaseCheckpointSaver) -> None:
        config = History(saver, "t").step(a=1)
        before = snapshot(saver)
        with pytest.raises(NotSerializableError, match=r"state\['b'\]\[0\]"):
            saver.put_writes(config, [("a", 2), ("b", [lambda: 1])], "task")
        assert snapshot(saver) == before

    # ---------------------------------------------------------------------- delta encoding

    def test_delta_round_trip(self, saver: BaseCheckpointSaver) -> None:
        history = History(saver, "t")
        configs, expected = [], []
        items: list[Any] = []
        for i in range(30):
            items = [*items, {"i": i, "t": (i,)}] if i % 7 else []  # resets break the chain
            configs.append(history.step(items=items))
            expected.append(items)
        for config, items in zip(configs, expected, strict=True):
            loaded = saver.get(config)
            assert loaded is not None and loaded["channel_values"]["items"] == items

    def test_delta_forks(self, saver: BaseCheckpointSaver) -> None:
        history = History(saver, "t")
        history.step(items=["a"])
        parent = history.step(items=["a", "b"])
        version = history.versions["items"]

        def child(of: dict[str, Any], items: list[str], v: int) -> dict[str, Any]:
            return saver.put(of, make({"items": items}, {"items": v}), {}, {"items": v})

        # Two children of one parent get the same int version with different values.
        left = child(parent, ["a", "b", "left"], version + 1)
        right = child(parent, ["a", "b", "right"], version + 1)
        left_2 = child(left, ["a", "b", "left", "left-2"], version + 2)
        right_2 = child(right, ["a", "b", "right", "right-2"], version + 2)
        unchanged = saver.put(right_2, make({}, {"items": version + 2}), {}, {})

        expected = [
            (left, ["a", "b", "left"]),
            (right, ["a", "b", "right"]),
            (left_2, ["a", "b", "left", "left-2"]),
            (right_2, ["a", "b", "right", "right-2"]),
            (unchanged, ["a", "b", "right", "right-2"]),
        ]
        for config, items in expected:
            loaded = saver.get(config)
            assert loaded is not None and loaded["channel_values"]["items"] == items, config

    def test_in_place_mutation_of_loaded_list_is_stored(self, saver: BaseCheckpointSaver) -> None:
        history = History(saver, "t")
        history.step(items=[{"n": 1}])
        history.step(items=[{"n": 1}, {"n": 2}])
        loaded = saver.get(cfg("t"))
        assert loaded is not None
        items = loaded["channel_values"]["items"]
        items[0]["n"] = 100  # the caller edits an element the saver handed out
        config = history.step(items=[*items, {"n": 3}])
        reloaded = saver.get(config)
        assert reloaded is not None
        assert reloaded["channel_values"]["items"] == [{"n": 100}, {"n": 2}, {"n": 3}]

    def test_correct_when_the_cache_forgets(self, saver: BaseCheckpointSaver) -> None:
        saver.codec.cache = ListCache(max_entries=1, max_bytes=200)
        histories = [History(saver, "a"), History(saver, "b")]
        items: list[str] = []
        for i in range(20):
            items = [*items, f"item-{i:02d}"]  # outgrows max_bytes halfway through
            for history in histories:  # two threads evict each other's entry
                history.step(items=items)
        for thread in ("a", "b"):
            loaded = saver.get(cfg(thread))
            assert loaded is not None and loaded["channel_values"]["items"] == items

    def test_storage_grows_with_changes(self, saver: BaseCheckpointSaver) -> None:
        history = History(saver, "t")
        items: list[str] = []
        for step in range(400):
            items = items + [f"{step:04d}" + "x" * 1020]
            history.step({"source": "loop", "step": step}, items=items)
        final = saver.get(cfg("t"))
        assert final is not None and final["channel_values"]["items"] == items
        assert saver.stored_bytes("t") <= 3 * len(dumps(items))

    # -------------------------------------------------------------------------- threading

    def test_concurrent_threads(self, saver: BaseCheckpointSaver) -> None:
        errors: list[BaseException] = []

        def run(n: int) -> None:
            try:
                history = History(saver, f"thread-{n}")
                for i in range(15):
                    config = history.step(items=list(range(i + 1)))
                    saver.put_writes(config, [("items", [i])], f"task-{i}")
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        workers = [threading.Thread(target=run, args=(n,)) for n in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        for n in range(6):
            loaded = saver.get_tuple(cfg(f"thread-{n}"))
            assert loaded is not None
            assert loaded.checkpoint["channel_values"]["items"] == list(range(15))
            assert loaded.pending_writes == [("task-14", "items", [14])]
