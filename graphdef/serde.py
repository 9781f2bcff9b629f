"""JSON serialization with tagged types, safe to decode from untrusted storage.

Checkpoints and task results cross process boundaries (SQLite files, Redis, the broker), so
decoding must never run code chosen by the data: there is no pickle, and a class is only
instantiated when this process registered it, encoded it itself, or its module was allowed.

Types JSON lacks are written as ``{"__cg__": <tag>, "v": ...}``; a user dict that itself has
a ``"__cg__"`` key is wrapped in an ``esc`` tag so it cannot be mistaken for one.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import importlib
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import orjson

from graphdef.errors import CeleryGraphError

__all__ = [
    "NotSerializableError",
    "Serde",
    "SerdeError",
    "SerializerProtocol",
    "ValueTooLargeError",
    "allow_module",
    "check_serializable",
    "dumps",
    "loads",
    "register",
]

TAG = "__cg__"
_TAG_BYTES = b'"__cg__"'
# orjson writes ints in [-2**63, 2**64): wider ones need a tag.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_NoneType = type(None)
_SCALARS = frozenset({str, int, bool, _NoneType})


class SerdeError(CeleryGraphError, ValueError):
    """Bytes that cannot be decoded, or a value that cannot be encoded."""


class NotSerializableError(SerdeError):
    """A value has no JSON form; ``path`` says where it sits inside the encoded object."""

    def __init__(self, path: str, type_name: str) -> None:
        self.path = path
        self.type_name = type_name
        super().__init__(f"value at {path} of type {type_name} is not serializable")


class ValueTooLargeError(SerdeError):
    """A value over the saver's size limit; stored values stay bounded per run."""

    def __init__(self, path: str, size: int, limit: int) -> None:
        self.path = path
        self.size = size
        self.limit = limit
        super().__init__(f"value at {path} is {size} bytes, over the limit of {limit} bytes")


class SerializerProtocol(Protocol):
    """What savers need from a serializer, so that users can wrap ours (e.g. to encrypt)."""

    def dumps(self, obj: Any, *, root: str = "value") -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class Serde:
    """The default serializer object handed to savers; the registry it uses is global."""

    def dumps(self, obj: Any, *, root: str = "value") -> bytes:
        return dumps(obj, root=root)

    def loads(self, data: bytes) -> Any:
        return loads(data)


# ---------------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class _Entry:
    cls: type
    name: str
    kind: str  # "dc" | "pyd" | "enum" | "reg"
    encode: Callable[[Any], Any] | None = None
    decode: Callable[[Any], Any] | None = None


_lock = threading.Lock()
_by_class: dict[type, _Entry] = {}
_by_name: dict[str, _Entry] = {}
# A tuple, replaced on change, so that readers never iterate while a writer mutates.
_allowed_modules: tuple[str, ...] = ("graphdef",)


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _pydantic_base() -> type | None:
    # Looked up lazily: a model instance can only exist once pydantic was imported, and
    # importing it ourselves would slow every process down.
    module = sys.modules.get("pydantic")
    return getattr(module, "BaseModel", None)


def _natural_kind(cls: type) -> str | None:
    if issubclass(cls, enum.Enum):
        return "enum"
    if dataclasses.is_dataclass(cls):
        return "dc"
    base = _pydantic_base()
    if base is not None and issubclass(cls, base):
        return "pyd"
    return None


def _add(entry: _Entry) -> _Entry:
    with _lock:
        _by_class[entry.cls] = entry
        _by_name[entry.name] = entry
    return entry


def register(
    cls: type,
    *,
    name: str | None = None,
    encode: Callable[[Any], Any] | None = None,
    decode: Callable[[Any], Any] | None = None,
) -> type:
    """Allow ``cls`` to be decoded in this process; returns ``cls`` so it works as a decorator.

    Dataclasses, pydantic models and enums need no hooks. Any other class needs ``encode``
    (instance -> serializable value) and ``decode`` (that value -> instance). ``name`` is the
    stable identifier written to storage; it defaults to ``module:qualname``, so set it when
    the class may move. The latest registration of a name wins.
    """
    if (encode is None) != (decode is None):
        raise TypeError("register() needs both encode and decode, or neither")
    if encode is not None:
        kind = "reg"
    else:
        kind = _natural_kind(cls)
        if kind is None:
            raise TypeError(
                f"{cls.__qualname__} is not a dataclass, pydantic model or enum; "
                "pass encode= and decode= to register it"
            )
    _add(_Entry(cls, name or _class_path(cls), kind, encode, decode))
    return cls


def allow_module(prefix: str) -> None:
    """Let decoding import classes from ``prefix`` and its submodules (e.g. ``"myapp"``).

    Needed when a process decodes a dataclass it never encoded nor registered, typically a
    worker reading state written by another process.
    """
    global _allowed_modules
    with _lock:
        _allowed_modules = (*_allowed_modules, prefix)


def _module_allowed(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in _allowed_modules)


def _entry_for(cls: type) -> _Entry | None:
    entry = _by_class.get(cls)
    if entry is None:
        kind = _natural_kind(cls)
        if kind is not None:
            entry = _add(_Entry(cls, _class_path(cls), kind))
    return entry


def _resolve(name: Any, kind: str) -> _Entry:
    if not isinstance(name, str):
        raise SerdeError(f"malformed class name {name!r}")
    entry = _by_name.get(name) or _import_allowed(name)
    if kind == "reg" and entry.decode is None:
        raise SerdeError(f"{name!r} was not registered with a decode hook")
    if kind != "reg" and _natural_kind(entry.cls) != kind:
        raise SerdeError(f"{name!r} is not {_KIND_NAMES[kind]}")
    return entry


_KIND_NAMES = {"dc": "a dataclass", "pyd": "a pydantic model", "enum": "an enum"}


def _import_allowed(name: str) -> _Entry:
    module, _, qualname = name.partition(":")
    if not qualname or not _module_allowed(module):
        raise SerdeError(
            f"refusing to decode class {name!r}: it is not registered and its module is not "
            "allowed; call graphdef.serde.register(cls) or graphdef.serde.allow_module(...)"
        )
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise SerdeError(f"cannot find class {name!r}: {exc}") from exc
    kind = _natural_kind(obj) if isinstance(obj, type) else None
    if kind is None:
        raise SerdeError(f"{name!r} is not a dataclass, pydantic model or enum")
    return _by_class.get(obj) or _add(_Entry(obj, name, kind))


# ---------------------------------------------------------------------------------- encoding


class _Unencodable(Exception):
    """Raised at the offending value and annotated with its path while unwinding."""

    def __init__(self, obj: Any) -> None:
        self.type_name = type(obj).__name__
        self.current = obj
        self.segments: list[str] = []

    def locate(self, container: Any, children: Iterable[tuple[str, Any]]) -> None:
        # Encoding goes in order, so the first child identical to the failed one is it.
        for segment, child in children:
            if child is self.current:
                self.segments.append(segment)
                break
        self.current = container


def _is_plain(obj: dict | list) -> bool:
    """True when orjson alone round-trips ``obj`` (a dict or list) exactly.

    Scanning is several times cheaper than building the tagged copy, and typical state is
    plain JSON.
    """
    if type(obj) is dict:
        if TAG in obj:
            return False
        for key in obj:
            if type(key) is not str:
                return False
        items: Iterable[Any] = obj.values()
    else:
        items = obj
    for value in items:
        t = type(value)
        if t in _SCALARS:
            continue
        if t is dict or t is list:
            if not _is_plain(value):
                return False
        elif t is not float or value - value != 0:  # rejects nan and inf
            return False
    return True


def _enc(obj: Any) -> Any:
    t = type(obj)
    if t is str or t is bool or obj is None:
        return obj
    if t is int:
        return obj if _INT_MIN <= obj <= _INT_MAX else {TAG: "int", "v": hex(obj)}
    if t is float:
        return obj if obj - obj == 0 else {TAG: "float", "v": repr(obj)}
    if t is dict:
        return _enc_dict(obj)
    if t is list:
        return _enc_items(obj)
    encoder = _ENCODERS.get(t)
    if encoder is not None:
        return encoder(obj)
    entry = _entry_for(t)
    if entry is not None:
        return _enc_entry(entry, obj)
    return _enc_subclass(obj)


# Values that encode as themselves; checking inline saves a call per str in the tagged path.
_SELF_ENCODED = frozenset({str, bool, _NoneType})


class _NonStrKey(Exception):
    pass


def _non_str_key() -> str:
    raise _NonStrKey


def _enc_items(items: list | tuple) -> list:
    try:
        return [v if type(v) in _SELF_ENCODED else _enc(v) for v in items]
    except _Unencodable as exc:
        exc.locate(items, ((f"[{i}]", v) for i, v in enumerate(items)))
        raise


def _enc_dict(obj: dict) -> dict:
    try:
        try:
            out = {
                (k if type(k) is str else _non_str_key()): (
                    v if type(v) in _SELF_ENCODED else _enc(v)
                )
                for k, v in obj.items()
            }
        except _NonStrKey:
            return {TAG: "map", "v": [[_enc(k), _enc(v)] for k, v in obj.items()]}
        return {TAG: "esc", "v": out} if TAG in obj else out
    except _Unencodable as exc:
        exc.locate(obj, _dict_children(obj))
        raise


def _dict_children(obj: dict) -> Iterable[tuple[str, Any]]:
    for key, value in obj.items():
        yield f"<key {key!r}>", key
        yield f"[{key!r}]", value


def _enc_set(obj: set | frozenset) -> dict:
    try:
        # Sorted when possible so that equal sets encode to equal bytes.
        items = sorted(obj)
    except TypeError:
        items = list(obj)
    tag = "set" if type(obj) is set else "frozenset"
    try:
        return {TAG: tag, "v": [_enc(v) for v in items]}
    except _Unencodable as exc:
        exc.locate(obj, (("[*]", v) for v in items))
        raise


def _enc_datetime(obj: datetime) -> dict:
    out = {TAG: "datetime", "v": obj.isoformat()}
    if isinstance(obj.tzinfo, ZoneInfo):
        out["tz"] = obj.tzinfo.key
    return out


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    tuple: lambda o: {TAG: "tuple", "v": _enc_items(o)},
    set: _enc_set,
    frozenset: _enc_set,
    bytes: lambda o: {TAG: "bytes", "v": base64.b64encode(o).decode()},
    bytearray: lambda o: {TAG: "bytearray", "v": base64.b64encode(o).decode()},
    datetime: _enc_datetime,
    date: lambda o: {TAG: "date", "v": o.isoformat()},
    time: lambda o: {TAG: "time", "v": o.isoformat()},
    timedelta: lambda o: {TAG: "timedelta", "v": [o.days, o.seconds, o.microseconds]},
    uuid.UUID: lambda o: {TAG: "uuid", "v": str(o)},
    Decimal: lambda o: {TAG: "decimal", "v": str(o)},
}


def _enc_entry(entry: _Entry, obj: Any) -> dict:
    try:
        if entry.kind == "reg":
            assert entry.encode is not None
            return {TAG: "reg", "c": entry.name, "v": _enc(entry.encode(obj))}
        if entry.kind == "enum":
            return {TAG: "enum", "c": entry.name, "v": _enc(obj.value)}
        if entry.kind == "dc":
            names = [f.name for f in dataclasses.fields(obj)]
            return {TAG: "dc", "c": entry.name, "v": {n: _enc(getattr(obj, n)) for n in names}}
        return _enc_model(entry, obj)
    except _Unencodable as exc:
        if entry.kind == "reg":
            exc.current = obj
        else:
            exc.locate(obj, _attr_children(entry, obj))
        raise


def _attr_children(entry: _Entry, obj: Any) -> Iterable[tuple[str, Any]]:
    if entry.kind == "enum":
        yield ".value", obj.value
    elif entry.kind == "dc":
        for f in dataclasses.fields(obj):
            yield f".{f.name}", getattr(obj, f.name)
    else:
        for name in type(obj).model_fields:
            yield f".{name}", getattr(obj, name)
        for name, value in (obj.__pydantic_extra__ or {}).items():
            yield f".{name}", value


def _enc_model(entry: _Entry, obj: Any) -> dict:
    fields = type(obj).model_fields
    out: dict[str, Any] = {
        TAG: "pyd",
        "c": entry.name,
        "v": {n: _enc(getattr(obj, n)) for n in fields},
    }
    if obj.__pydantic_extra__:
        out["x"] = {k: _enc(v) for k, v in obj.__pydantic_extra__.items()}
    if obj.model_fields_set != set(fields):
        out["s"] = sorted(obj.model_fields_set)
    return out


def _enc_subclass(obj: Any) -> Any:
    # Subclasses of builtins (OrderedDict, namedtuple, pendulum datetimes...) keep their
    # base type's form, as with the json module; the subclass itself is not restored.
    if isinstance(obj, dict):
        return _enc_dict(obj)
    if isinstance(obj, list):
        return _enc_items(obj)
    for base in (str, int, float):
        if isinstance(obj, base):
            return _enc(base(obj))
    for base, encoder in _ENCODERS.items():
        if isinstance(obj, base):
            return encoder(obj)
    raise _Unencodable(obj)


def dumps(obj: Any, *, root: str = "value") -> bytes:
    """Encode ``obj``; ``root`` names it in error messages (``state['items'][2]``)."""
    try:
        if (type(obj) is dict or type(obj) is list) and _is_plain(obj):
            try:
                return orjson.dumps(obj)
            except orjson.JSONEncodeError:
                pass  # an int beyond 64 bits, or too deep: the tagged path tells which
        return orjson.dumps(_enc(obj))
    except _Unencodable as exc:
        path = root + "".join(reversed(exc.segments))
        raise NotSerializableError(path, exc.type_name) from None
    except RecursionError:
        raise SerdeError(f"{root} is nested too deeply or contains a cycle") from None
    except orjson.JSONEncodeError as exc:  # e.g. a lone surrogate in a str, or deep nesting
        raise SerdeError(f"{root} cannot be encoded: {exc}") from None


def check_serializable(obj: Any, root: str = "state") -> None:
    """Raise ``NotSerializableError`` if ``obj`` cannot be stored, before anything is written."""
    dumps(obj, root=root)


# ---------------------------------------------------------------------------------- decoding


def _dec(obj: Any) -> Any:
    t = type(obj)
    if t is dict:
        if TAG in obj:
            return _dec_tagged(obj)
        return {k: _dec(v) if type(v) in _CONTAINERS else v for k, v in obj.items()}
    if t is list:
        return [_dec(v) if type(v) in _CONTAINERS else v for v in obj]
    return obj


_CONTAINERS = frozenset({dict, list})


def _dec_tagged(obj: dict) -> Any:
    tag = obj[TAG]
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        raise SerdeError(f"unknown serde tag {tag!r}")
    try:
        return decoder(obj)
    except SerdeError:
        raise
    except Exception as exc:
        raise SerdeError(f"malformed {tag!r} value: {exc}") from exc


def _typed(obj: dict, expected: type) -> Any:
    value = obj["v"]
    if not isinstance(value, expected):
        raise SerdeError(f"malformed {obj[TAG]!r} value: expected {expected.__name__}")
    return value


def _dec_list(obj: dict) -> list:
    return _dec(_typed(obj, list))


def _dec_datetime(obj: dict) -> datetime:
    value = datetime.fromisoformat(_typed(obj, str))
    zone = obj.get("tz")
    return value.astimezone(ZoneInfo(zone)) if zone is not None else value


def _dec_map(obj: dict) -> dict:
    out = {}
    for pair in _typed(obj, list):
        key, value = pair
        out[_dec(key)] = _dec(value)
    return out


def _dec_dataclass(obj: dict) -> Any:
    cls = _resolve(obj.get("c"), "dc").cls
    values = _typed(obj, dict)
    # Bypasses __init__ (like pickle) so __post_init__ does not transform values twice.
    instance = cls.__new__(cls)
    for f in dataclasses.fields(cls):
        if f.name in values:
            value = _dec(values[f.name])
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            raise SerdeError(f"{obj['c']!r} value lacks field {f.name!r}")
        object.__setattr__(instance, f.name, value)
    return instance


def _dec_model(obj: dict) -> Any:
    cls: Any = _resolve(obj.get("c"), "pyd").cls
    values = {k: _dec(v) for k, v in _typed(obj, dict).items()}
    values.update({k: _dec(v) for k, v in obj.get("x", {}).items()})
    fields_set = set(obj["s"]) if "s" in obj else None
    return cls.model_construct(_fields_set=fields_set, **values)


_DECODERS: dict[str, Callable[[dict], Any]] = {
    "esc": lambda o: {k: _dec(v) for k, v in _typed(o, dict).items()},
    "map": _dec_map,
    "tuple": lambda o: tuple(_dec_list(o)),
    "set": lambda o: set(_dec_list(o)),
    "frozenset": lambda o: frozenset(_dec_list(o)),
    "bytes": lambda o: base64.b64decode(_typed(o, str), validate=True),
    "bytearray": lambda o: bytearray(base64.b64decode(_typed(o, str), validate=True)),
    "int": lambda o: int(_typed(o, str), 16),
    "float": lambda o: float(_typed(o, str)),
    "datetime": _dec_datetime,
    "date": lambda o: date.fromisoformat(_typed(o, str)),
    "time": lambda o: time.fromisoformat(_typed(o, str)),
    "timedelta": lambda o: timedelta(*_typed(o, list)),
    "uuid": lambda o: uuid.UUID(_typed(o, str)),
    "decimal": lambda o: Decimal(_typed(o, str)),
    "enum": lambda o: _resolve(o.get("c"), "enum").cls(_dec(o["v"])),
    "dc": _dec_dataclass,
    "pyd": _dec_model,
    "reg": lambda o: _resolve(o.get("c"), "reg").decode(_dec(o["v"])),  # type: ignore[misc]
}


def loads(data: bytes) -> Any:
    """Decode bytes from ``dumps``; anything else raises ``SerdeError``, never runs code."""
    if isinstance(data, memoryview):
        data = data.tobytes()
    elif not isinstance(data, bytes | bytearray):
        raise SerdeError(f"expected bytes, got {type(data).__name__}")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SerdeError(f"malformed serialized data: {exc}") from None
    if _TAG_BYTES not in data:
        return value
    try:
        return _dec(value)
    except RecursionError:
        raise SerdeError("serialized data is nested too deeply") from None
