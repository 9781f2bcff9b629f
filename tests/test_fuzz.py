"""Hostile bytes against the serde decoder and the checkpoint loaders (SQLite and Redis).

What "only our clear errors" means here (``ACCEPTED``):

- ``graphdef.serde.SerdeError`` (a ``ValueError``): bytes that do not decode;
- ``graphdef.checkpoint.delta.CorruptStorageError`` (a ``LookupError``): stored records that do
  not rebuild a checkpoint (a missing or malformed blob, a broken delta chain);
- for Redis only, ``redis.ResponseError`` whose message starts with ``WRONGTYPE``: Redis itself
  saying a key holds another kind of value. A Lua script error is not accepted: its message
  ("attempt to get length of local 'stack'") tells the user nothing.

Anything else escaping (``JSONDecodeError``, ``KeyError``, ``TypeError``...) is a bug, and so is
a class being imported or a function called because stored data named it, or a call that never
returns. The row and record tests below found such bugs in both loaders; they are fixed and
the tests stay as regressions.

Hang guard: every decode/load runs under ``no_hang`` (SIGALRM after a generous bound). It is
not a timing assertion: it only turns an endless loop (a delta-chain cycle followed forever)
into a failure instead of a stuck test run. Inputs are bounded so that a healthy decode takes
milliseconds. Hypothesis examples are bounded, derandomized and not shrunk for speed; the long,
randomized form is ``make fuzz`` (``tests/fuzz_long.py``).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import enum
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from graphdef.checkpoint.base import ERROR, INTERRUPT
from graphdef.checkpoint.delta import CorruptStorageError
from graphdef.checkpoint.redis import RedisSaver
from graphdef.checkpoint.sqlite import SqliteSaver
from graphdef.serde import SerdeError, dumps, loads
from tests.redis_server import RedisServer, redis_server
from tests.saver_conformance import History, cfg

ACCEPTED: tuple[type[BaseException], ...] = (SerdeError, CorruptStorageError)
HANG_SECONDS = 30.0  # a hang breaker, far above any healthy call; never a speed check

# Bounded, reproducible example budgets for the default run (see module docstring).
FAST = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STORAGE = settings(FAST, max_examples=60)
# Shapes that once escaped as unclear errors: a few examples keep them covered.
KNOWN_BUG = settings(FAST, max_examples=25)


# ----------------------------------------------------------------------------- guards


class Hung(BaseException):
    """Raised by ``no_hang``; a BaseException so no ``except Exception`` can swallow it."""


@contextlib.contextmanager
def no_hang(seconds: float = HANG_SECONDS) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise Hung(f"no answer within {seconds} s: an endless loop?")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


CANARY_MODULE = "cg_fuzz_canary"


class Tripwires:
    """Records any call of the functions a forged class path could name."""

    TARGETS = (
        (os, "system"),
        (os, "popen"),
        (os, "execv"),
        (os, "execve"),
        (os, "remove"),
        (subprocess, "Popen"),
        (subprocess, "run"),
        (subprocess, "check_output"),
    )

    def __init__(self) -> None:
        self.calls: list[str] = []

    @contextlib.contextmanager
    def armed(self) -> Iterator[Tripwires]:
        with contextlib.ExitStack() as stack:
            for module, name in self.TARGETS:
                stack.enter_context(mock.patch.object(module, name, self._tripped(name)))
            posix = sys.modules.get("posix")
            if posix is not None:
                stack.enter_context(mock.patch.object(posix, "system", self._tripped("system")))
            yield self

    def _tripped(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> None:
            self.calls.append(name)
            raise AssertionError(f"decoding called {name}")

        return call


@contextlib.contextmanager
def canary_module(where: Path) -> Iterator[Path]:
    """A module on sys.path that is not allowed for decoding; importing it, or touching its
    classes' hooks, writes the canary file (yielded)."""
    flag = where / "canary-tripped"
    (where / f"{CANARY_MODULE}.py").write_text(
        "import dataclasses, enum, pathlib\n"
        f"FLAG = pathlib.Path({str(flag)!r})\n"
        "FLAG.write_text('imported')\n"
        "@dataclasses.dataclass\n"
        "class Thing:\n"
        "    n: int = 0\n"
        "    def __post_init__(self):\n"
        "        FLAG.write_text('post_init')\n"
        "class Color(enum.Enum):\n"
        "    RED = 1\n"
        "    @classmethod\n"
        "    def _missing_(cls, value):\n"
        "        FLAG.write_text('missing')\n"
    )
    sys.path.insert(0, str(where))
    try:
        yield flag
    finally:
        sys.path.remove(str(where))
        sys.modules.pop(CANARY_MODULE, None)


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with canary_module(tmp_path_factory.mktemp("canary")) as flag:
        yield flag


def assert_clean(flag: Path, wires: Tripwires) -> None:
    assert not flag.exists(), f"decoding ran code: canary says {flag.read_text()!r}"
    assert CANARY_MODULE not in sys.modules, "decoding imported a module it was not allowed to"
    assert not wires.calls, wires.calls


def decode_only_serde_errors(data: bytes) -> Any:
    """``loads(data)``: a value or SerdeError, nothing else, and never an endless call."""
    try:
        with no_hang():
            return loads(data)
    except SerdeError:
        return None
    except Exception as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"loads raised {type(exc).__name__}: {exc!r} for {data[:300]!r}")


# ------------------------------------------------------------------------ strategies


@dataclasses.dataclass
class Point:
    x: int
    tags: tuple = ()


class Level(enum.Enum):
    LOW = 1
    HIGH = "high"


TAGS = [
    "esc", "map", "tuple", "set", "frozenset", "bytes", "bytearray", "int", "float",
    "datetime", "date", "time", "timedelta", "uuid", "decimal", "enum", "dc", "pyd", "reg",
]  # fmt: skip
CLASS_PATHS = [
    "os:system",
    "posix:system",
    "subprocess:Popen",
    "builtins:eval",
    "builtins:exec",
    "builtins:__import__",
    "importlib:import_module",
    "pickle:loads",
    f"{CANARY_MODULE}:Thing",
    f"{CANARY_MODULE}:Color",
    "graphdef.checkpoint.sqlite:os.system",
    "graphdef.serde:importlib.import_module",
    "graphdef.serde:sys.modules",
    "graphdef:__builtins__.eval",
    "graphdef.:x",
    "graphdef..x:y",
    ":",
    "",
    "tests.test_fuzz:Point",
    "tests.test_fuzz:Level",
    "tests.test_fuzz:Point.__init__",
    "tests.test_fuzz:Level.__new__",
]

# Big but bounded: ints beyond 64 bits as strings, long strings, odd floats.
junk_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["", "0x" + "f" * 64, "nan", "-inf", "1e999999", "\ud800".encode("utf-8", "surrogatepass")
         .decode("utf-8", "replace"), "2020-13-45T99:99:99", "Europe/Nowhere", "../../etc/passwd",
         "A" * 5000, "=" * 7, "////", "\x00"]
    )  # fmt: skip
)


def tagged(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"__cg__": st.sampled_from(TAGS) | junk_scalars},
        optional={
            "v": inner,
            "c": st.sampled_from(CLASS_PATHS) | junk_scalars,
            "tz": st.sampled_from(["UTC", "Europe/Paris", "/etc/localtime", "../x", ""])
            | junk_scalars,
            "x": inner,
            "s": inner,
        },
    )


hostile_json = st.recursive(
    junk_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["__cg__", "v", "c", "k"]) | st.text(max_size=5),
                          inner, max_size=4)
        | tagged(inner)
    ),
    max_leaves=20,
)  # fmt: skip

hashable = st.integers() | st.text(max_size=8) | st.tuples(st.integers(), st.booleans())
valid_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | st.datetimes(timezones=st.none() | st.just(dt.UTC))
    | st.dates()
    | st.times()
    | st.timedeltas()
    | st.uuids()
    | st.decimals(allow_nan=False, places=3)
    | st.builds(Point, st.integers(), st.tuples(st.integers()))
    | st.sampled_from(list(Level)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5) | st.just("__cg__"), inner, max_size=4)
        | st.dictionaries(hashable, inner, max_size=3)
        | st.frozensets(hashable, max_size=3)
    ),
    max_leaves=15,
)


def nodes_of(tree: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths of every node in a parsed JSON tree (dict keys and list indexes)."""
    yield path
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from nodes_of(value, (*path, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from nodes_of(value, (*path, index))


def replace_at(tree: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        return {**tree, head: replace_at(tree[head], rest, value)}
    copy = list(tree)
    copy[head] = replace_at(tree[head], rest, value)
    return copy


def get_at(tree: Any, path: tuple) -> Any:
    for part in path:
        tree = tree[part]
    return tree


@st.composite
def tampered_encodings(draw: st.DrawFn) -> bytes:
    """A valid encoding with one node replaced, or one key of a tagged node changed."""
    tree = orjson.loads(dumps(draw(valid_values)))
    paths = list(nodes_of(tree))
    path = draw(st.sampled_from(paths))
    node = get_at(tree, path)
    if isinstance(node, dict) and "__cg__" in node and draw(st.booleans()):
        key = draw(st.sampled_from(["__cg__", "v", "c", "tz", "x", "s"]))
        if key == "__cg__":
            new: Any = draw(st.sampled_from(TAGS) | junk_scalars)
        elif key == "c":
            new = draw(st.sampled_from(CLASS_PATHS))
        else:
            new = draw(hostile_json)
        node = {**node, key: new}
    else:
        node = draw(hostile_json)
    return orjson.dumps(replace_at(tree, path, node))


@st.composite
def mangled_bytes(draw: st.DrawFn) -> bytes:
    """A valid encoding with bytes flipped, cut, spliced or made invalid UTF-8."""
    data = bytearray(dumps(draw(valid_values)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "utf8"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from([b'{"__cg__":"dc","c":"os:system","v":{}}',
                                                b'"__cg__"', b"\xff", b"\xed\xa0\x80", b"[", b"}",
                                                b'{"__cg__":"esc","v":']))  # fmt: skip
        elif kind == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "utf8" and data:
            data[at:at] = draw(st.sampled_from([b"\x80", b"\xc3", b"\xf4\x90\x80\x80"]))
    return bytes(data)


# ------------------------------------------------------------------------ serde: fuzz


@given(tampered_encodings())
@FAST
def test_tampered_encodings_decode_or_raise_serde_error(canary: Path, data: bytes) -> None:
    with Tripwires().armed() as wires:
        decode_only_serde_errors(data)
    assert_clean(canary, wires)


@given(mangled_bytes())
@FAST
def test_mangled_bytes_decode_or_raise_serde_error(canary: Path, data: bytes) -> None:
    with Tripwires().armed() as wires:
        decode_only_serde_errors(data)
    assert_clean(canary, wires)


@given(st.sampled_from(["dc", "pyd", "enum", "reg"]), st.sampled_from(CLASS_PATHS), hostile_json)
@FAST
def test_forged_class_paths_import_and_call_nothing(
    canary: Path, tag: str, path: str, value: Any
) -> None:
    data = orjson.dumps({"__cg__": tag, "c": path, "v": value})
    with Tripwires().armed() as wires:
        decoded = decode_only_serde_errors(data)
    assert_clean(canary, wires)
    # Only this module's own (encoded, hence registered) classes may come back.
    assert type(decoded).__module__ in ("builtins", __name__), type(decoded)


OWN_CLASSES = ("tests.test_fuzz:Point", "tests.test_fuzz:Level")  # legitimately decodable


@pytest.mark.parametrize("path", [p for p in CLASS_PATHS if p not in OWN_CLASSES])
@pytest.mark.parametrize("tag", ["dc", "pyd", "enum", "reg"])
def test_each_dangerous_class_path_is_refused(canary: Path, tag: str, path: str) -> None:
    data = orjson.dumps({"__cg__": tag, "c": path, "v": {"n": 1} if tag in ("dc", "pyd") else 1})
    with Tripwires().armed() as wires, pytest.raises(SerdeError), no_hang():
        loads(data)
    assert_clean(canary, wires)


def _nested(tag: str, depth: int) -> bytes:
    opening, closing = {
        "tuple": (b'{"__cg__":"tuple","v":[', b"]}"),
        "set": (b'{"__cg__":"tuple","v":[{"__cg__":"set","v":[1]},', b"]}"),
        "esc": (b'{"__cg__":"esc","v":{"k":', b"}}"),
        "map": (b'{"__cg__":"map","v":[[1,', b"]]}"),
        "dc": (b'{"__cg__":"dc","c":"tests.test_fuzz:Point","v":{"x":', b"}}"),
        "list": (b"[", b"]"),
    }[tag]
    return opening * depth + b'{"__cg__":"tuple","v":[]}' + closing * depth


@pytest.mark.parametrize("depth", [100, 300, 511, 1000, 1023, 5000])
@pytest.mark.parametrize("tag", ["tuple", "set", "esc", "map", "dc", "list"])
def test_deep_nesting_is_a_value_or_serde_error(tag: str, depth: int) -> None:
    dumps(Point(1))  # registers Point in this process, as an encoder would
    decode_only_serde_errors(_nested(tag, depth))


ENORMOUS = {
    "int of 2M hex digits": {"__cg__": "int", "v": "f" * 2_000_000},
    "int with a prefix and junk": {"__cg__": "int", "v": "-0x_" + "9" * 100_000 + "z"},
    "bytes of 3 MB": {"__cg__": "bytes", "v": base64.b64encode(b"\0" * 3_000_000).decode()},
    "bytes not base64": {"__cg__": "bytes", "v": "*" * 1_000_000},
    "decimal of 1M digits": {"__cg__": "decimal", "v": "9" * 1_000_000},
    "decimal with a huge exponent": {"__cg__": "decimal", "v": "1e999999999999999999"},
    "float of 1M digits": {"__cg__": "float", "v": "9" * 1_000_000},
    "date of 1M chars": {"__cg__": "date", "v": "2" * 1_000_000},
    "zone of 200k chars": {"__cg__": "datetime", "v": "2020-01-01T00:00:00", "tz": "A/" * 100_000},
    "zone escaping tzpath": {"__cg__": "datetime", "v": "2020-01-01T00:00:00", "tz": "../../etc"},
    "zone with a NUL": {"__cg__": "datetime", "v": "2020-01-01T00:00:00", "tz": "UTC\x00"},
    "timedelta overflow": {"__cg__": "timedelta", "v": [2**62, 2**62, 2**62]},
    "timedelta with 1000 args": {"__cg__": "timedelta", "v": [1] * 1000},
    "set of 200k ints": {"__cg__": "set", "v": list(range(200_000))},
    "map of 100k unhashable keys": {"__cg__": "map", "v": [[[i], i] for i in range(100_000)]},
    "map with ragged pairs": {"__cg__": "map", "v": [[1, 2, 3], [4]]},
    "string of 8 MB": ["a" * 8_000_000, {"__cg__": "tuple", "v": []}],
    "uuid of 1M chars": {"__cg__": "uuid", "v": "0" * 1_000_000},
    "pyd fields_set of junk": {"__cg__": "pyd", "c": "tests.test_fuzz:Point", "v": {}, "s": [[]]},
}


@pytest.mark.parametrize("value", ENORMOUS.values(), ids=ENORMOUS.keys())
def test_enormous_values_are_a_value_or_serde_error(value: Any) -> None:
    decode_only_serde_errors(orjson.dumps(value))


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe\x00\x00", b'"\xed\xa0\x80"', b'{"__cg__":"bytes","v":"\xc3"}', b"\x80" * 100,
     b'{"\xff":1, "__cg__":"esc","v":{}}', b'{"__cg__":"tuple","v":["\xf4\x90\x80\x80"]}'],
)  # fmt: skip
def test_invalid_utf8_is_a_serde_error(data: bytes) -> None:
    with pytest.raises(SerdeError):
        loads(data)


@pytest.mark.parametrize(
    "value",
    [
        {"__cg__": "esc", "v": {"__cg__": {"__cg__": "dc", "c": "os:system", "v": {}}}},
        {"__cg__": "esc", "v": {"__cg__": "dc", "c": "os:system", "v": {"a": {"__cg__": "x"}}}},
        {"__cg__": "esc", "v": [{"__cg__": "dc", "c": "os:system"}]},
        {"__cg__": "esc", "v": "os:system"},
        {"__cg__": "esc"},
        {"__cg__": ["esc"], "v": {}},
        {"__cg__": {"__cg__": "esc"}, "v": {}},
    ],
)
def test_escape_tag_tricks_do_not_smuggle_tags(canary: Path, value: Any) -> None:
    with Tripwires().armed() as wires:
        decoded = decode_only_serde_errors(orjson.dumps(value))
    assert_clean(canary, wires)
    # Whatever the esc tag hands back is plain data: its inner "__cg__" stays a string key.
    if isinstance(decoded, dict) and "__cg__" in decoded:
        assert not isinstance(decoded["__cg__"], dict) or "__cg__" in decoded["__cg__"]


def test_valid_values_still_round_trip() -> None:
    """The fuzz strategies produce values the serde must keep (a sanity check of the fuzz)."""
    value = {
        "p": Point(1, (2,)),
        "l": Level.HIGH,
        "when": dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
        "m": {(1, True): frozenset({1})},
        "d": Decimal("1.5"),
        "u": uuid.UUID(int=1),
        "__cg__": "kept",
    }
    assert loads(dumps(value)) == value


# --------------------------------------------------------------- checkpoint loaders: shared


def build_history(saver: Any) -> None:
    """Two namespaces, full and delta list blobs, an empty channel, normal and special writes."""
    for ns in ("", "sub|1"):
        history = History(saver, "t", ns)
        history.step(items=["a"], n=1, metadata={"source": "input", "step": -1})
        history.step(items=["a", "b"], when=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                     metadata={"source": "loop", "step": 0})  # fmt: skip
        config = history.step(items=["a", "b", {"c": (1, 2)}], p=Point(3),
                              metadata={"source": "loop", "step": 1})  # fmt: skip
        saver.put_writes(config, [("items", ["x"]), ("n", 2)], "task-1", "path")
        saver.put_writes(config, [(ERROR, "boom"), (INTERRUPT, {"value": "ask"})], "task-2")


def load_everything(saver: Any, *, with_filter: bool = True) -> list[BaseException]:
    """Every read path of the loader; returns the exceptions that are not ACCEPTED."""
    calls: list[Callable[[], Any]] = [
        lambda: saver.get_tuple(cfg("t")),
        lambda: saver.get_tuple(cfg("t", "sub|1")),
        lambda: list(saver.list(None)),
        lambda: list(saver.list(cfg("t"), limit=2)),
    ]
    if with_filter:
        calls.append(lambda: list(saver.list(None, filter={"source": "loop"})))
    bad = []
    for call in calls:
        try:
            with no_hang():
                call()
        except ACCEPTED:
            pass
        except redis.ResponseError as exc:
            if "WRONGTYPE" not in str(exc):  # Redis 6.2 prefixes it with the script's name
                bad.append(exc)
        except Exception as exc:
            bad.append(exc)
    return bad


def assert_clear(bad: list[BaseException], what: str) -> None:
    assert not bad, f"{what}: " + "; ".join(f"{type(e).__name__}: {e}" for e in bad)


# Ways to spoil one stored value (bytes, text or int), applied by both backends.
@st.composite
def spoiled(draw: st.DrawFn, value: Any) -> Any:
    raw = value if isinstance(value, bytes) else str(value).encode()
    kind = draw(st.sampled_from(
        ["truncate", "flip", "junk", "json", "insert", "empty", "text", "int"]
    ))  # fmt: skip
    if kind == "truncate":
        return raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    if kind == "flip" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        return raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
    if kind == "junk":
        return draw(st.binary(max_size=40))
    if kind == "json":
        return orjson.dumps(draw(hostile_json))
    if kind == "insert":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"|", b":", b"\n", b"\xff", b'"', b"d1:x|"])) + raw[
            at:
        ]
    if kind == "text":
        return raw.decode("utf-8", "replace")
    if kind == "int":
        return draw(st.integers(-5, 5))
    return b""


# ------------------------------------------------------------------------------ SQLite


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    with SqliteSaver(path) as saver:
        build_history(saver)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


@contextlib.contextmanager
def sqlite_copy(template: Path) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="cg-fuzz-"))
    try:
        path = where / "db"
        shutil.copyfile(template, path)
        yield path
    finally:
        shutil.rmtree(where, ignore_errors=True)


def sqlite_tamper(path: Path, sql: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def sqlite_load(path: Path, *, with_filter: bool = True) -> list[BaseException]:
    with SqliteSaver(path) as saver:
        return load_everything(saver, with_filter=with_filter)


SQLITE_PAYLOADS = [
    ("checkpoints", "metadata"),
    ("blobs", "data"),
    ("blobs", "version"),
    ("blobs", "digest"),
    ("blobs", "base_version"),
    ("blobs", "base_digest"),
    ("writes", "data"),
    ("writes", "channel"),
    ("writes", "task_id"),
]
SQLITE_ROWS = [("checkpoints", "checkpoint"), ("checkpoints", "refs")]
# The primary keys: the tables have no rowid.
SQLITE_KEYS = {
    "checkpoints": ("thread_id", "checkpoint_ns", "checkpoint_id"),
    "blobs": ("thread_id", "checkpoint_ns", "channel", "version", "digest"),
    "writes": ("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
}


def sqlite_tamper_and_load(
    template: Path, data: st.DataObject, columns: list[tuple[str, str]], *, with_filter: bool
) -> tuple[str, list[BaseException]]:
    """Spoil one stored value of a copy of ``template``; (what was done, unclear errors)."""
    table, column = data.draw(st.sampled_from(columns), label="column")
    with sqlite_copy(template) as path:
        conn = sqlite3.connect(path)
        key = SQLITE_KEYS[table]
        rows = conn.execute(f"SELECT {column}, {', '.join(key)} FROM {table}").fetchall()
        conn.close()
        value, *where = data.draw(st.sampled_from(rows), label="row")
        new = data.draw(spoiled(value), label="value")
        match = " AND ".join(f"{c} IS ?" for c in key)
        sqlite_tamper(path, f"UPDATE OR IGNORE {table} SET {column} = ? WHERE {match}",
                      (new, *where))  # fmt: skip
        return f"{table}.{column} = {new!r}", sqlite_load(path, with_filter=with_filter)


def sqlite_fuzz(template: Path, data: st.DataObject, columns: list[tuple[str, str]],
                *, with_filter: bool) -> None:  # fmt: skip
    what, bad = sqlite_tamper_and_load(template, data, columns, with_filter=with_filter)
    assert_clear(bad, what)


@given(st.data())
@STORAGE
def test_sqlite_tampered_payloads_raise_only_clear_errors(
    sqlite_template: Path, data: st.DataObject
) -> None:
    sqlite_fuzz(sqlite_template, data, SQLITE_PAYLOADS, with_filter=False)




@given(st.data())
@KNOWN_BUG
def test_sqlite_tampered_rows_raise_only_clear_errors(
    sqlite_template: Path, data: st.DataObject
) -> None:
    sqlite_fuzz(sqlite_template, data, SQLITE_ROWS + SQLITE_PAYLOADS, with_filter=True)


# Another blob of the same channel, thread and namespace: makes two deltas bases of each other.
_OTHER_BLOB = """FROM blobs AS b
    WHERE b.channel = blobs.channel AND b.thread_id = blobs.thread_id
      AND b.checkpoint_ns = blobs.checkpoint_ns
      AND (b.version, b.digest) != (blobs.version, blobs.digest)
    ORDER BY b.version, b.digest LIMIT 1"""
SQLITE_CASES_OK = {
    "metadata not JSON": "UPDATE checkpoints SET metadata = x'80049500'",
    "metadata as text": "UPDATE checkpoints SET metadata = 'null'",
    "refs pointing nowhere": """UPDATE checkpoints SET refs = '{"items":[99,"nowhere"]}'""",
    "refs with a string version": """UPDATE checkpoints SET refs = '{"items":["x","abc"]}'""",
    "blob payload truncated": "UPDATE blobs SET data = substr(data, 1, 3)",
    "blob payload is a pickle": "UPDATE blobs SET data = x'80049520008c086275696c74696e73'",
    "blob payload an int": "UPDATE blobs SET data = 7",
    "blobs all gone": "DELETE FROM blobs",
    "delta without a base": "UPDATE blobs SET kind = 'delta', base_version = NULL",
    "delta chain cycles on itself": "UPDATE blobs SET kind = 'delta', base_version = version,"
    " base_digest = digest WHERE channel = 'items'",
    "delta chains cycle through each other": f"""
        UPDATE blobs SET kind = 'delta',
          base_version = (SELECT b.version {_OTHER_BLOB}),
          base_digest = (SELECT b.digest {_OTHER_BLOB})
        WHERE channel = 'items'""",
    "delta base missing": "UPDATE blobs SET base_digest = 'gone' WHERE kind = 'delta'",
    "delta on a scalar": "UPDATE blobs SET data = CAST('5' AS BLOB)"
    " WHERE kind = 'full' AND channel = 'items'",
    "delta items not a list": "UPDATE blobs SET data = CAST('5' AS BLOB) WHERE kind = 'delta'",
    "write payload garbage": "UPDATE writes SET data = x'ff'",
    "write payload as text": "UPDATE writes SET data = 'null'",
}


@pytest.mark.parametrize("sql", SQLITE_CASES_OK.values(), ids=SQLITE_CASES_OK.keys())
def test_sqlite_tampered_records_raise_only_clear_errors(sqlite_template: Path, sql: str) -> None:
    with sqlite_copy(sqlite_template) as path:
        sqlite_tamper(path, sql)
        assert_clear(sqlite_load(path), sql)


def test_sqlite_delta_cycle_is_reported_not_followed(sqlite_template: Path) -> None:
    with sqlite_copy(sqlite_template) as path:
        sqlite_tamper(path, SQLITE_CASES_OK["delta chain cycles on itself"])
        with SqliteSaver(path) as saver, no_hang(), pytest.raises(CorruptStorageError):
            saver.get_tuple(cfg("t"))


SQLITE_CASES_BUGGY = {
    "refs not JSON": "UPDATE checkpoints SET refs = x'ff00'",
    "refs a list": "UPDATE checkpoints SET refs = '[1, 2]'",
    "ref without a digest": """UPDATE checkpoints SET refs = '{"items": [1]}'""",
    "ref null": """UPDATE checkpoints SET refs = '{"items": null}'""",
    "checkpoint row not JSON": "UPDATE checkpoints SET checkpoint = x'ff00'",
    "checkpoint row truncated": "UPDATE checkpoints SET checkpoint = substr(checkpoint, 1, 10)",
    "checkpoint row a list": "UPDATE checkpoints SET checkpoint = '[1]'",
    "metadata a list (list with a filter)": "UPDATE checkpoints SET metadata = CAST('[1]' AS BLOB)",
}


@pytest.mark.parametrize("sql", SQLITE_CASES_BUGGY.values(), ids=SQLITE_CASES_BUGGY.keys())
def test_sqlite_tampered_rows_known_bugs(sqlite_template: Path, sql: str) -> None:
    with sqlite_copy(sqlite_template) as path:
        sqlite_tamper(path, sql)
        assert_clear(sqlite_load(path), sql)


def test_sqlite_unknown_blob_kind_is_corrupt(sqlite_template: Path) -> None:
    with sqlite_copy(sqlite_template) as path:
        sqlite_tamper(path, "UPDATE blobs SET kind = 'pickle'")
        with SqliteSaver(path) as saver, pytest.raises(CorruptStorageError):
            saver.get_tuple(cfg("t"))


# ------------------------------------------------------------------------------- Redis


@pytest.fixture(scope="module")
def fuzz_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def raw(fuzz_redis: RedisServer) -> Iterator[redis.Redis]:
    with fuzz_redis.client() as client:
        yield client


def redis_fresh(server: RedisServer) -> None:
    server.flush()
    with RedisSaver(server.url) as saver:
        build_history(saver)


def redis_load(server: RedisServer, *, with_filter: bool = True) -> list[BaseException]:
    with RedisSaver(server.url) as saver:
        return load_everything(saver, with_filter=with_filter)


# A checkpoint's row, metadata and refs are fields of its namespace's `cp` hash, told apart by
# their first letter.
_CP_FIELDS = {"cp": b"c:", "meta": b"m:", "refs": b"r:"}


def hash_keys(raw: redis.Redis, kind: str) -> list[bytes]:
    return sorted(raw.keys(f"cg:{{t}}:{'cp' if kind in _CP_FIELDS else kind}:*"))


def hash_fields(raw: redis.Redis, kind: str, key: bytes) -> list[bytes]:
    """The fields of `key` that hold records of `kind`."""
    fields = sorted(raw.hkeys(key))
    if kind not in _CP_FIELDS:
        return fields
    return [f for f in fields if f.startswith(_CP_FIELDS[kind])]


def split_record(kind: str, record: bytes) -> tuple[bytes, bytes]:
    """(header, payload) of a stored record: the payload is serde bytes."""
    if kind == "blob":
        sep = record.find(b"|")
        return record[: sep + 1], record[sep + 1 :]
    if kind == "writes":
        sep = record.find(b"\n")
        return record[: sep + 1], record[sep + 1 :]
    return b"", record


def redis_fuzz(server: RedisServer, raw: redis.Redis, data: st.DataObject, targets: list[str],
               *, with_filter: bool) -> None:  # fmt: skip
    what, bad = redis_tamper_and_load(server, raw, data, targets, with_filter=with_filter)
    assert_clear(bad, what)


def redis_tamper_and_load(
    server: RedisServer, raw: redis.Redis, data: st.DataObject, targets: list[str],
    *, with_filter: bool,
) -> tuple[str, list[BaseException]]:  # fmt: skip
    """Spoil one stored record of a fresh history; (what was done, unclear errors)."""
    redis_fresh(server)
    target = data.draw(st.sampled_from(targets), label="target")
    kind, _, part = target.partition(".")
    key = data.draw(st.sampled_from(hash_keys(raw, kind)), label="key")
    if kind == "cps":
        member = data.draw(st.sampled_from(raw.zrange(key, 0, -1)), label="member")
        raw.zrem(key, member)
        new_member = data.draw(spoiled(member), label="value")
        raw.zadd(key, {new_member if isinstance(new_member, bytes | str) else str(new_member): 0})
        what = f"{key!r} member {member!r} -> {new_member!r}"
    else:
        field = data.draw(st.sampled_from(hash_fields(raw, kind, key)), label="field")
        record = raw.hget(key, field)
        header, payload = split_record(kind, record)
        if part == "field":
            new_field = data.draw(spoiled(field), label="value")
            raw.hdel(key, field)
            raw.hset(key, new_field, record)
            what = f"{key!r} field {field!r} -> {new_field!r}"
        else:
            spoil = payload if part == "payload" else (header if part == "header" else record)
            new = data.draw(spoiled(spoil), label="value")
            if not isinstance(new, bytes):
                new = str(new).encode()
            if part == "payload":
                new = header + new
            elif part == "header":
                new = new + payload
            raw.hset(key, field, new)
            what = f"{key!r}[{field!r}] = {new[:200]!r}"
    return what, redis_load(server, with_filter=with_filter)


REDIS_PAYLOADS = ["meta.payload", "blob.payload", "writes.payload"]
REDIS_RECORDS = ["cp.record", "refs.record", "blob.header", "blob.field", "writes.header",
                 "writes.field", "cps.member"]  # fmt: skip


@given(st.data())
@STORAGE
def test_redis_tampered_payloads_raise_only_clear_errors(
    fuzz_redis: RedisServer, raw: redis.Redis, data: st.DataObject
) -> None:
    redis_fuzz(fuzz_redis, raw, data, REDIS_PAYLOADS, with_filter=False)




@given(st.data())
@KNOWN_BUG
def test_redis_tampered_records_raise_only_clear_errors(
    fuzz_redis: RedisServer, raw: redis.Redis, data: st.DataObject
) -> None:
    redis_fuzz(fuzz_redis, raw, data, REDIS_RECORDS + REDIS_PAYLOADS, with_filter=True)


def _blob_fields(raw: redis.Redis, channel: str) -> list[bytes]:
    return sorted(f for f in raw.hkeys("cg:{t}:blob:_") if f.endswith(b":" + channel.encode()))


def _self_cycle(raw: redis.Redis) -> None:
    for field in _blob_fields(raw, "items"):
        version, digest, _ = field.decode().split(":", 2)
        raw.hset("cg:{t}:blob:_", field, f"d{version}:{digest}|[1]".encode())


def _two_cycle(raw: redis.Redis) -> None:
    first, second = _blob_fields(raw, "items")[:2]
    v1, d1, _ = first.decode().split(":", 2)
    v2, d2, _ = second.decode().split(":", 2)
    raw.hset("cg:{t}:blob:_", first, f"d{v2}:{d2}|[1]".encode())
    raw.hset("cg:{t}:blob:_", second, f"d{v1}:{d1}|[1]".encode())


def _each(key: str, value: bytes) -> Callable[[redis.Redis], None]:
    def apply(raw: redis.Redis) -> None:
        for field in raw.hkeys(key):
            raw.hset(key, field, value)

    return apply


def _fields(kind: str, value: bytes) -> Callable[[redis.Redis], None]:
    """Set every record of `kind` ("cp": rows, "meta", "refs") in the `cp` hash."""
    def apply(raw: redis.Redis) -> None:
        for field in hash_fields(raw, kind, b"cg:{t}:cp:_"):
            raw.hset(b"cg:{t}:cp:_", field, value)

    return apply


def _fields_gone(kind: str) -> Callable[[redis.Redis], None]:
    def apply(raw: redis.Redis) -> None:
        for field in hash_fields(raw, kind, b"cg:{t}:cp:_"):
            raw.hdel(b"cg:{t}:cp:_", field)

    return apply


def _writes(value: bytes) -> Callable[[redis.Redis], None]:
    def apply(raw: redis.Redis) -> None:
        for key in raw.keys("cg:{t}:writes:_:*"):
            for field in raw.hkeys(key):
                raw.hset(key, field, value)

    return apply


REDIS_CASES_OK: dict[str, Callable[[redis.Redis], Any]] = {
    "metadata not JSON": _fields("meta", b"\xff"),
    "metadata gone": _fields_gone("meta"),
    "refs pointing nowhere": _fields("refs", b'{"p":null,"f":["9:nowhere:items"]}'),
    "blob empty": _each("cg:{t}:blob:_", b""),
    "blob of unknown kind": _each("cg:{t}:blob:_", b"x|[1]"),
    "blob without a separator": _each("cg:{t}:blob:_", b"f[1]"),
    "blob payload is a pickle": _each("cg:{t}:blob:_", b"f|\x80\x04\x95\x1d\x00"),
    "blobs all gone": lambda r: r.delete("cg:{t}:blob:_"),
    "delta base without a colon": _each("cg:{t}:blob:_", b"d5|[1]"),
    "delta chain cycles on itself": _self_cycle,
    "delta chains cycle through each other": _two_cycle,
    "write payload garbage": _writes(b"000000000000[\"items\",\"\"]\n\xff"),
    "a key of the wrong type": lambda r: (r.delete("cg:{t}:blob:_"),
                                          r.set("cg:{t}:blob:_", "x")),  # fmt: skip
}


@pytest.mark.parametrize("tamper", REDIS_CASES_OK.values(), ids=REDIS_CASES_OK.keys())
def test_redis_tampered_records_raise_only_clear_errors_cases(
    fuzz_redis: RedisServer, raw: redis.Redis, tamper: Callable[[redis.Redis], Any]
) -> None:
    redis_fresh(fuzz_redis)
    tamper(raw)
    assert_clear(redis_load(fuzz_redis), "tampered")


@pytest.mark.parametrize("tamper", [_self_cycle, _two_cycle], ids=["self", "two"])
def test_redis_delta_cycle_is_reported_not_followed(
    fuzz_redis: RedisServer, raw: redis.Redis, tamper: Callable[[redis.Redis], Any]
) -> None:
    redis_fresh(fuzz_redis)
    tamper(raw)
    with RedisSaver(fuzz_redis.url) as saver, no_hang(), pytest.raises(CorruptStorageError):
        saver.get_tuple(cfg("t"))


REDIS_CASES_BUGGY: dict[str, Callable[[redis.Redis], Any]] = {
    "refs not JSON (Lua error)": _fields("refs", b"\xff\x00"),
    "refs a list (Lua error)": _fields("refs", b"[1,2]"),
    "refs without f (Lua error)": _fields("refs", b'{"p":null}'),
    "refs gone (Lua error)": _fields_gone("refs"),
    "refs without p (KeyError)": _fields("refs", b'{"f":[]}'),
    "ref field without colons (ValueError)": _fields("refs", b'{"p":null,"f":["abc"]}'),
    "ref field with a bad version (ValueError)": _fields(
        "refs", b'{"p":null,"f":["x:abc:items"]}'
    ),
    "ref field a number (AttributeError)": _fields("refs", b'{"p":null,"f":[5]}'),
    "checkpoint row not JSON (JSONDecodeError)": _fields("cp", b"\xff"),
    "checkpoint row a list (TypeError)": _fields("cp", b"[1]"),
    "delta base version not an int (ValueError)": _each("cg:{t}:blob:_", b"dzz:x|[1]"),
    "delta base not UTF-8 (UnicodeDecodeError)": _each("cg:{t}:blob:_", b"d\xff:\xfe|[1]"),
    "write without a header line (ValueError)": _writes(b"000000000000[1]"),
    "write header not JSON (JSONDecodeError)": _writes(b"000000000000zz\n[1]"),
    "write header not a pair (ValueError)": _writes(b"000000000000[1]\n[1]"),
    "write field without an index (ValueError)": lambda r: [
        (r.hset(k, b"abc", r.hget(k, f)), r.hdel(k, f))
        for k in r.keys("cg:{t}:writes:_:*")
        for f in r.hkeys(k)
    ],
    "checkpoint id not UTF-8 (UnicodeDecodeError in list)": lambda r: r.zadd(
        "cg:{t}:cps:_", {b"\xff\xff": 0}
    ),
    "metadata a list (AttributeError in list with a filter)": _fields("meta", b"[1]"),
}


@pytest.mark.parametrize("tamper", REDIS_CASES_BUGGY.values(), ids=REDIS_CASES_BUGGY.keys())
def test_redis_tampered_records_known_bugs(
    fuzz_redis: RedisServer, raw: redis.Redis, tamper: Callable[[redis.Redis], Any]
) -> None:
    redis_fresh(fuzz_redis)
    tamper(raw)
    assert_clear(redis_load(fuzz_redis), "tampered")


def test_redis_dangling_head_is_corrupt_not_an_empty_thread(
    fuzz_redis: RedisServer, raw: redis.Redis
) -> None:
    redis_fresh(fuzz_redis)
    raw.zadd("cg:{t}:cps:_", {"zzzzzzzz-newest-but-missing": 0})
    with RedisSaver(fuzz_redis.url) as saver, pytest.raises(CorruptStorageError):
        saver.get_tuple(cfg("t"))
