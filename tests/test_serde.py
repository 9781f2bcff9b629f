from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import math
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphdef.serde import (
    NotSerializableError,
    Serde,
    SerdeError,
    allow_module,
    check_serializable,
    dumps,
    loads,
    register,
)


def assert_same(a: Any, b: Any) -> None:
    """Equality that also tells 1 from 1.0 from True, tuples from lists, -0.0 from 0.0."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, float):
        assert repr(a) == repr(b)
    elif isinstance(a, Decimal):
        assert str(a) == str(b)
    elif isinstance(a, dt.datetime) and a.tzinfo is not None:
        # Wall times inside a DST gap do not exist; the instant and the zone are what count.
        assert a.tzinfo == b.tzinfo
        assert a.astimezone(dt.UTC) == b.astimezone(dt.UTC)
    else:
        assert a == b


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
keys = st.text() | st.sampled_from(["__cg__", "v", "c"])
plain_json = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)
hashables = st.recursive(
    st.integers() | st.text() | st.booleans() | st.none(),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=5,
)
tagged_scalars = (
    st.integers()  # beyond 64 bits too
    | st.floats(allow_nan=False)  # infinities too
    | st.binary(max_size=20)
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.times()
    | st.timedeltas()
    | st.uuids()
    | st.decimals(allow_nan=False)
    | hashables
)
tagged_values = st.recursive(
    json_scalars | tagged_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(keys, inner, max_size=4)
        | st.dictionaries(hashables, inner, max_size=3)
        | st.sets(hashables, max_size=3)
    ),
    max_leaves=25,
)


def has_tag_key(value: Any) -> bool:
    if isinstance(value, dict):
        return "__cg__" in value or any(has_tag_key(v) for v in value.values())
    return isinstance(value, list) and any(has_tag_key(v) for v in value)


@given(plain_json)
def test_plain_json_round_trips_as_plain_json(value: Any) -> None:
    data = dumps(value)
    assert_same(loads(data), value)
    if not has_tag_key(value):
        assert data == orjson.dumps(value)


@given(tagged_values)
@settings(max_examples=300)
def test_tagged_values_round_trip(value: Any) -> None:
    assert_same(loads(dumps(value)), value)


def test_sets_and_frozensets() -> None:
    value = {"s": {3, 1, 2}, "f": frozenset({"a"}), "mixed": {1, "a", (2,)}}
    decoded = loads(dumps(value))
    assert decoded == value
    assert type(decoded["f"]) is frozenset
    assert dumps({3, 1, 2}) == dumps({1, 2, 3})


def test_special_floats_and_big_ints() -> None:
    decoded = loads(dumps([math.inf, -math.inf, math.nan, 2**200, -(2**70)]))
    assert decoded[:2] == [math.inf, -math.inf]
    assert math.isnan(decoded[2])
    assert decoded[3:] == [2**200, -(2**70)]


def test_zoneinfo_survives() -> None:
    when = dt.datetime(2024, 3, 31, 3, 30, tzinfo=ZoneInfo("Europe/Paris"))
    decoded = loads(dumps(when))
    assert decoded == when and decoded.tzinfo == ZoneInfo("Europe/Paris")


def test_cg_key_in_user_dict_is_escaped() -> None:
    tricky = {"__cg__": "tuple", "v": [1, 2]}
    value = {"outer": tricky, "list": [{"__cg__": "dc", "c": "os:system", "v": {}}]}
    assert_same(loads(dumps(value)), value)
    assert_same(loads(dumps(tricky)), tricky)
    assert_same(loads(dumps({"__cg__": {"__cg__": (1,)}})), {"__cg__": {"__cg__": (1,)}})


def test_non_str_keys() -> None:
    value = {1: "int", (1, 2): "tuple", None: "none", frozenset({1}): "frozen", "s": 2}
    assert_same(loads(dumps(value)), value)


def test_builtin_subclasses_keep_their_base_form() -> None:
    from collections import OrderedDict, namedtuple

    pair = namedtuple("pair", "a b")
    decoded = loads(dumps({"od": OrderedDict(a=1), "nt": pair(1, 2)}))
    assert_same(decoded, {"od": {"a": 1}, "nt": (1, 2)})


# ------------------------------------------------------------------------ classes and safety


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    tags: tuple[str, ...] = ()
    extra: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Normalizing:
    name: str

    def __post_init__(self) -> None:
        self.name = self.name.upper() + "!"


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Model(pydantic.BaseModel):
    a: int
    pairs: list[tuple[int, int]] = []
    when: dt.date | None = None


class Loose(pydantic.BaseModel, extra="allow"):
    a: int = 0


def test_dataclasses_enums_and_models_round_trip() -> None:
    value = {
        "point": Point(1, ("a",), [2]),
        "color": Color.RED,
        "level": Level.HIGH,
        "model": Model(a=1, pairs=[(1, 2)], when=dt.date(2024, 1, 1)),
        "loose": Loose(a=2, other=(1,)),
        "norm": Normalizing("bob"),
    }
    decoded = loads(dumps(value))
    assert decoded == value
    assert type(decoded["level"]) is Level
    assert type(decoded["model"].pairs[0]) is tuple
    assert decoded["loose"].model_extra == {"other": (1,)}
    assert decoded["norm"].name == "BOB!"  # __post_init__ not run a second time


def test_pydantic_fields_set_survives() -> None:
    partial = Model(a=1)
    decoded = loads(dumps(partial))
    assert decoded.model_fields_set == {"a"}
    assert decoded.model_dump(exclude_unset=True) == {"a": 1}


def test_dataclass_schema_evolution() -> None:
    data = b'{"__cg__":"dc","c":"%s","v":{"x":5,"gone":1}}' % _name(Point).encode()
    assert loads(data) == Point(5)
    missing = b'{"__cg__":"dc","c":"%s","v":{}}' % _name(Point).encode()
    with pytest.raises(SerdeError, match="lacks field 'x'"):
        loads(missing)


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and other.cents == self.cents

    __hash__ = None  # type: ignore[assignment]


def test_register_custom_class() -> None:
    register(Money, name="test.Money", encode=lambda m: m.cents, decode=Money)
    data = dumps({"price": Money(250)})
    assert b"test.Money" in data
    assert loads(data) == {"price": Money(250)}


def test_register_needs_both_hooks_for_plain_classes() -> None:
    class Plain:
        pass

    with pytest.raises(TypeError, match="encode= and decode="):
        register(Plain)
    with pytest.raises(TypeError, match="both"):
        register(Plain, encode=lambda p: 1)
    assert register(Point) is Point


def test_local_class_decodes_once_encoded_in_this_process() -> None:
    @dataclasses.dataclass
    class Local:
        n: int

    forged = b'{"__cg__":"dc","c":"%s","v":{"n":1}}' % _name(Local).encode()
    with pytest.raises(SerdeError, match="not registered"):
        loads(forged)
    assert loads(dumps(Local(1))) == Local(1)
    assert loads(forged) == Local(1)


@pytest.mark.parametrize(
    "data",
    [
        b'{"__cg__":"dc","c":"os:system","v":{}}',
        b'{"__cg__":"pyd","c":"subprocess:Popen","v":{}}',
        b'{"__cg__":"enum","c":"builtins:eval","v":"1"}',
        b'{"__cg__":"reg","c":"os:system","v":"echo hi"}',
        b'{"__cg__":"dc","c":"no-colon","v":{}}',
        b'{"__cg__":"dc","c":5,"v":{}}',
    ],
)
def test_disallowed_classes_are_rejected(data: bytes) -> None:
    with pytest.raises(SerdeError):
        loads(data)


def test_allow_list_controls_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cg_probe_mod.py").write_text(
        "import dataclasses\nIMPORTED = True\n@dataclasses.dataclass\nclass Thing:\n    n: int\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = b'{"__cg__":"dc","c":"cg_probe_mod:Thing","v":{"n":3}}'
    with pytest.raises(SerdeError, match="allow_module"):
        loads(data)
    assert "cg_probe_mod" not in sys.modules

    allow_module("cg_probe_mod")
    thing = loads(data)
    assert type(thing).__name__ == "Thing" and thing.n == 3
    not_a_dataclass = b'{"__cg__":"dc","c":"cg_probe_mod:IMPORTED","v":{}}'
    with pytest.raises(SerdeError, match="not a dataclass"):
        loads(not_a_dataclass)


def test_tag_kind_must_match_class() -> None:
    dumps(Point(1))
    with pytest.raises(SerdeError, match="not a pydantic model"):
        loads(b'{"__cg__":"pyd","c":"%s","v":{}}' % _name(Point).encode())
    with pytest.raises(SerdeError, match="decode hook"):
        loads(b'{"__cg__":"reg","c":"%s","v":{}}' % _name(Point).encode())


def test_unknown_tag_is_rejected() -> None:
    with pytest.raises(SerdeError, match="unknown serde tag 'pickle'"):
        loads(b'{"__cg__":"pickle","v":"gASV"}')
    with pytest.raises(SerdeError, match="unknown serde tag"):
        loads(b'[{"__cg__":null}]')


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        ({"items": [1, 2, {"fn": lambda: 1}]}, "state['items'][2]['fn']", "function"),
        ({"t": (1, object())}, "state['t'][1]", "object"),
        ({"p": Point(1, (), [1, len])}, "state['p'].extra[1]", "builtin_function_or_method"),
        ({"s": {1, 2}, "m": {(1, 2): [object()]}}, "state['m'][(1, 2)][0]", "object"),
        ({"k": {object(): 1}}, "state['k']<key", "object"),
        (len, "state", "builtin_function_or_method"),
    ],
)
def test_not_serializable_names_the_path(value: Any, path: str, type_name: str) -> None:
    with pytest.raises(NotSerializableError) as caught:
        dumps(value, root="state")
    assert caught.value.path.startswith(path)
    assert caught.value.type_name == type_name
    assert str(caught.value).startswith(f"value at {path}")
    assert str(caught.value).endswith(f"of type {type_name} is not serializable")
    with pytest.raises(NotSerializableError):
        check_serializable(value)


def test_cycles_and_depth_raise_serde_error() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(SerdeError):
        dumps(cycle)
    deep: Any = []
    for _ in range(400):
        deep = [deep]
    with pytest.raises(SerdeError):
        dumps(deep)
    with pytest.raises(SerdeError):
        loads(b"[" * 5000 + b"]" * 5000)


@given(st.binary(max_size=200))
@settings(max_examples=200)
def test_arbitrary_bytes_never_escape_serde_error(data: bytes) -> None:
    with contextlib.suppress(SerdeError):
        loads(data)


tags = st.sampled_from(
    ["esc", "map", "tuple", "set", "frozenset", "bytes", "bytearray", "int", "float",
     "datetime", "date", "time", "timedelta", "uuid", "decimal", "enum", "dc", "pyd", "reg",
     "bogus"]
)  # fmt: skip
forged_tags = st.recursive(
    plain_json,
    lambda inner: st.fixed_dictionaries(
        {"__cg__": tags, "v": inner},
        optional={
            "c": st.sampled_from([_name(Point), _name(Color), "test.Money"]) | st.text(),
            "tz": st.text(),
            "x": inner,
            "s": inner,
        },
    ),
    max_leaves=10,
)


@given(forged_tags)
@settings(max_examples=300)
def test_forged_tags_never_escape_serde_error(value: Any) -> None:
    with contextlib.suppress(SerdeError):
        loads(orjson.dumps(value))


def test_loads_type_checks_its_input() -> None:
    with pytest.raises(SerdeError, match="expected bytes"):
        loads("[]")  # type: ignore[arg-type]
    assert loads(memoryview(b"[1]")) == [1]
    assert loads(bytearray(b'{"__cg__":"tuple","v":[1]}')) == (1,)


def test_serde_object_delegates() -> None:
    serde = Serde()
    assert serde.loads(serde.dumps((1, "a"))) == (1, "a")
    with pytest.raises(NotSerializableError, match=r"^value at x\[0\] "):
        serde.dumps([object()], root="x")
