from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from graphdef.checkpoint.ids import new_checkpoint_id
from graphdef.checkpoint.memory import InMemorySaver
from graphdef.checkpoint.sqlite import SqliteSaver
from tests.saver_conformance import History, SaverConformance, cfg

TESTS_DIR = Path(__file__).parent


class TestInMemorySaver(SaverConformance):
    @pytest.fixture
    def saver(self) -> InMemorySaver:
        return InMemorySaver()


class TestSqliteSaver(SaverConformance):
    @pytest.fixture
    def saver(self, tmp_path: Path) -> Iterator[SqliteSaver]:
        with SqliteSaver(tmp_path / "checkpoints.db") as saver:
            yield saver


def run_python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=TESTS_DIR.parent,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


WRITER = """
import sys
sys.path.insert(0, ".")
from tests.saver_conformance import History
from graphdef.checkpoint.sqlite import SqliteSaver

path, thread, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
with SqliteSaver.from_path(path) as saver:
    history = History(saver, thread)
    for i in range(steps):
        config = history.step({"step": i}, items=list(range(i + 1)))
        saver.put_writes(config, [("items", [i])], f"task-{i}")
print(config["configurable"]["checkpoint_id"])
"""


def test_sqlite_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    checkpoint_id = run_python(WRITER, path, "t", "20").strip()

    with SqliteSaver(path) as saver:
        loaded = saver.get_tuple(cfg("t"))
        assert loaded is not None
        assert loaded.config == cfg("t", "", checkpoint_id)
        assert loaded.checkpoint["channel_values"] == {"items": list(range(20))}
        assert loaded.pending_writes == [("task-19", "items", [19])]
        assert len(list(saver.list(cfg("t")))) == 20

        # This process knows nothing of the list yet, so it continues with a full copy.
        history = History(saver, "t")
        history.config = loaded.config
        history.values = dict(loaded.checkpoint["channel_values"])
        history.versions = dict(loaded.checkpoint["channel_versions"])
        config = history.step(items=list(range(21)))
        assert saver.get(config) is not None

    reader = (
        "import sys\n"
        "from graphdef.checkpoint.sqlite import SqliteSaver\n"
        "with SqliteSaver(sys.argv[1]) as saver:\n"
        "    print(saver.get({'configurable': {'thread_id': 't'}})['channel_values']['items'])\n"
    )
    assert run_python(reader, path).strip() == str(list(range(21)))


def test_sqlite_concurrent_writer_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SqliteSaver(path).close()  # create the schema before the race
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, path, f"thread-{n}", "30"],
            cwd=TESTS_DIR.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr
    with SqliteSaver(path) as saver:
        for n in range(3):
            loaded = saver.get(cfg(f"thread-{n}"))
            assert loaded is not None and loaded["channel_values"]["items"] == list(range(30))


def test_sqlite_stale_delta_base_after_another_writer(tmp_path: Path) -> None:
    """A saver whose cache remembers blobs that another process deleted and rewrote must
    not write deltas against them."""
    path = tmp_path / "shared.db"
    with SqliteSaver(path) as first, SqliteSaver(path) as second:
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
        newest = second.get(cfg("t"))
        assert newest is not None and newest["channel_values"]["items"] == ["a", "b", "c"]


def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with SqliteSaver.from_path(path) as saver:
        history = History(saver, "t")
        for i in range(5):
            config = history.step(items=list(range(i + 1)))
    with SqliteSaver.from_path(path) as saver:
        loaded = saver.get(config)
        assert loaded is not None and loaded["channel_values"]["items"] == list(range(5))


def test_checkpoint_ids_sort_in_creation_order() -> None:
    ids = [new_checkpoint_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids[:10])


def payload_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM payloads").fetchone()[0])
    finally:
        conn.close()


def test_sqlite_values_too_big_for_a_row_round_trip_and_go_with_their_rows(
        tmp_path: Path) -> None:
    """Values over what a clustered row holds live in `payloads`; every path that reads,
    replaces or drops their rows does the same to them."""
    path = tmp_path / "db.sqlite"
    big = ["x" * 3000, "y" * 9000]
    with SqliteSaver.from_path(path) as saver:
        history = History(saver, "t")
        configs = [history.step(items=big[: i + 1], text="z" * 5000 * (i + 1))
                   for i in range(2)]
        saver.put_writes(configs[0], [("items", big), ("__error__", "e" * 4000)], "task")
        saver.put_writes(configs[0], [("items", ["other"]), ("__error__", "f" * 4000)], "task")
        loaded = saver.get_tuple(configs[0])
        assert loaded is not None
        assert loaded.checkpoint["channel_values"] == {"items": big[:1], "text": "z" * 5000}
        assert loaded.pending_writes == [("task", "__error__", "f" * 4000), ("task", "items", big)]
        newest = saver.get(cfg("t"))
        assert newest is not None and newest["channel_values"]["items"] == big
        # Versions read back from the refs keep the checkpoint's channel order.
        assert list(newest["channel_versions"]) == ["items", "text"]
        assert payload_rows(path) > 0
        saver.prune("t", keep_last=1)
        assert saver.get(cfg("t")) == newest
        kept = payload_rows(path)
        saver.delete_thread("t")
    assert kept > 0 and payload_rows(path) == 0


OLDER_LAYOUT = """
CREATE TABLE checkpoints (thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL, parent_id TEXT, checkpoint BLOB NOT NULL,
    metadata BLOB NOT NULL, refs BLOB NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id));
CREATE TABLE blobs (thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL,
    channel TEXT NOT NULL, version INTEGER NOT NULL, digest TEXT NOT NULL, kind TEXT NOT NULL,
    data BLOB NOT NULL, base_version INTEGER, base_digest TEXT,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version, digest));
CREATE TABLE writes (thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL, task_id TEXT NOT NULL, idx INTEGER NOT NULL,
    channel TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx));
"""


def test_sqlite_reads_and_extends_a_file_of_the_earlier_layout(tmp_path: Path) -> None:
    """A file an earlier release wrote (rowid tables, text ids, plain JSON rows) is read as
    it is and written in its own layout; its writes keep their insertion order."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(OLDER_LAYOUT)
    checkpoint_id = new_checkpoint_id()
    row = orjson.dumps({"v": 1, "id": checkpoint_id, "ts": "2026-01-01T00:00:00+00:00",
                        "channel_versions": {"n": 1}, "versions_seen": {},
                        "updated_channels": None})
    refs = orjson.dumps({"n": [1, "d1"]})
    conn.execute("INSERT INTO checkpoints VALUES ('t', '', ?, NULL, ?, ?, ?)",
                 (checkpoint_id, row, b'{"source":"input","step":-1,"parents":{}}', refs))
    conn.execute("INSERT INTO blobs VALUES ('t', '', 'n', 1, 'd1', 'full', ?, NULL, NULL)",
                 (b"7",))
    for task in ("z-task", "a-task"):
        conn.execute("INSERT INTO writes VALUES ('t', '', ?, ?, 0, 'n', ?)",
                     (checkpoint_id, task, b"1"))
    conn.commit()
    conn.close()
    with SqliteSaver.from_path(path) as saver:
        loaded = saver.get_tuple(cfg("t"))
        assert loaded is not None
        assert loaded.checkpoint["id"] == checkpoint_id
        assert loaded.checkpoint["channel_values"] == {"n": 7}
        assert loaded.pending_writes == [("z-task", "n", 1), ("a-task", "n", 1)]
        saver.put_writes(loaded.config, [("n", 2)], "m-task")
        History(saver, "t2").step(n=5)
    with SqliteSaver.from_path(path) as saver:
        again = saver.get_tuple(cfg("t"))
        assert again is not None and [w[0] for w in again.pending_writes] == [
            "z-task", "a-task", "m-task"]
        fresh = saver.get(cfg("t2"))
        assert fresh is not None and fresh["channel_values"] == {"n": 5}
