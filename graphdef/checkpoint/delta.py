"""Channel value blobs, storing a grown list as the items appended to an earlier version.

A reducer channel such as ``Annotated[list, operator.add]`` grows by a few items per
superstep; storing the whole list at each version makes a thread's storage quadratic in its
length. So when a saver still remembers an earlier stored version of the channel and that
list is a prefix of the new one, it stores only ``{base, appended items}``.

The memory is a bounded per-saver cache, so a miss costs a full copy, never correctness. A
blob is identified by ``(version, digest)``: forks can give two different values the same
int version, and a delta names its base exactly, which the saver checks is still stored in
the same transaction that writes the delta (another process may have pruned it).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from graphdef.errors import CeleryGraphError
from graphdef.serde import NotSerializableError, SerializerProtocol, ValueTooLargeError

EMPTY, FULL, DELTA = "empty", "full", "delta"
KINDS = frozenset((EMPTY, FULL, DELTA))
BlobRef = tuple[int, str]  # (version, digest)


class CorruptStorageError(CeleryGraphError, LookupError):
    """Stored blobs do not rebuild a value: one is missing or malformed (storage was edited)."""


@dataclass(frozen=True, slots=True)
class Blob:
    channel: str
    version: int
    digest: str
    kind: str  # EMPTY (channel has no value), FULL, or DELTA
    data: bytes = b""
    base_version: int | None = None
    base_digest: str | None = None

    @property
    def ref(self) -> BlobRef:
        return (self.version, self.digest)

    @property
    def base(self) -> BlobRef | None:
        if self.base_version is None or self.base_digest is None:
            return None
        return (self.base_version, self.base_digest)


def _digest(kind: str, data: bytes, base: BlobRef | None = None) -> str:
    h = hashlib.blake2b(kind.encode() + b"\0", digest_size=8)
    if base is not None:
        h.update(f"{base[0]}:{base[1]}\0".encode())
    h.update(data)
    return h.hexdigest()


def value_root(channel: str) -> str:
    """How errors name a channel's value: ``state['items']``, or ``input`` for run input."""
    if channel == "__start__":
        return "input"
    return f"state[{channel!r}]"


class _Known(NamedTuple):
    """A stored list value, copied so that it shares nothing with the caller's objects."""

    version: int
    digest: str
    items: list
    size: int  # serialized bytes, a proxy for the memory the copy holds


@dataclass(frozen=True, slots=True)
class PendingBlob:
    """A channel value encoded for one put, before the saver has checked its base."""

    channel: str
    version: int
    digest: str
    blob: Blob | None  # None: the same value is already stored under (version, digest)
    value: Any
    known: _Known | None  # what the cache learns once this is stored

    @property
    def ref(self) -> BlobRef:
        return (self.version, self.digest)

    @property
    def requires(self) -> BlobRef | None:
        """The blob that must still be stored for this one to be readable."""
        if self.blob is None:
            return self.ref
        return self.blob.base


class ListCache:
    """LRU of the newest list value stored or read per (thread, namespace, channel).

    Bounded by entries and by the serialized size of the values it holds.
    """

    def __init__(self, max_entries: int = 4096, max_bytes: int = 32 * 2**20) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str, str], _Known] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> _Known | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str, str], entry: _Known, *, only_newer: bool = False) -> None:
        with self._lock:
            old = self._entries.get(key)
            if only_newer and old is not None and old.version >= entry.version:
                return
            if old is not None:
                self._bytes -= self._entries.pop(key).size
            if entry.size > self._max_bytes:
                return
            self._entries[key] = entry
            self._bytes += entry.size
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                self._bytes -= self._entries.popitem(last=False)[1].size

    def drop_thread(self, thread_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == thread_id]:
                self._bytes -= self._entries.pop(key).size


class DecodedCache:
    """LRU of decoded channel values by blob: a stored blob never changes, so a process that
    reads one again (every task of a superstep of many `Send`s reads the same list of them)
    decodes it once. Readers get their own outer list or dict; the items are shared, as
    parallel nodes share them in-process."""

    def __init__(self, max_entries: int = 64) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, str, BlobRef], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str, BlobRef]) -> tuple[bool, Any]:
        with self._lock:
            if key not in self._entries:
                return False, None
            self._entries.move_to_end(key)
            return True, _outer_copy(self._entries[key])

    def put(self, key: tuple[str, str, str, BlobRef], value: Any) -> None:
        with self._lock:
            self._entries[key] = _outer_copy(value)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def drop_thread(self, thread_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == thread_id]:
                del self._entries[key]


def _outer_copy(value: Any) -> Any:
    if type(value) is list:
        return list(value)
    if type(value) is dict:
        return dict(value)
    return value


class BlobCodec:
    """Turns channel values into blobs and back, choosing deltas from the cache."""

    def __init__(self, serde: SerializerProtocol, cache: ListCache | None = None) -> None:
        self.serde = serde
        self.cache = cache or ListCache()
        self.decoded = DecodedCache()
        # Bytes one channel value may take (a list counts all its items); None: no limit.
        self.max_value_bytes: int | None = None

    def check_size(self, root: str, size: int) -> None:
        if self.max_value_bytes is not None and size > self.max_value_bytes:
            raise ValueTooLargeError(root, size, self.max_value_bytes)

    def prepare(
        self, thread_id: str, ns: str, channel: str, version: int, value: Any, present: bool
    ) -> PendingBlob:
        if not present:
            digest = _digest(EMPTY, b"")
            blob = Blob(channel, version, digest, EMPTY)
            return PendingBlob(channel, version, digest, blob, None, None)
        if type(value) is list:
            known = self.cache.get((thread_id, ns, channel))
            if known is not None and known.items and len(value) >= len(known.items):
                size = len(known.items)
                # Equality, not identity: the cached copy is independent, so an element the
                # caller mutated in place shows up as a difference and forces a full copy.
                if value[:size] == known.items:
                    if known.version != version:
                        return self._delta(channel, version, value, known)
                    if len(value) == size:
                        return PendingBlob(channel, version, known.digest, None, value, None)
        return self.full(channel, version, value)

    def full(self, channel: str, version: int, value: Any) -> PendingBlob:
        data = self.serde.dumps(value, root=value_root(channel))
        self.check_size(value_root(channel), len(data))
        digest = _digest(FULL, data)
        known = None
        if type(value) is list:
            known = _Known(version, digest, self.serde.loads(data), len(data))
        return PendingBlob(
            channel, version, digest, Blob(channel, version, digest, FULL, data), value, known
        )

    def _delta(self, channel: str, version: int, value: list, known: _Known) -> PendingBlob:
        try:
            data = self.serde.dumps(value[len(known.items) :], root=value_root(channel))
        except NotSerializableError:
            return self.full(channel, version, value)  # so the error's list index is right
        base = (known.version, known.digest)
        digest = _digest(DELTA, data, base)
        blob = Blob(channel, version, digest, DELTA, data, *base)
        self.check_size(value_root(channel), known.size + len(data))
        items = known.items + self.serde.loads(data)
        learned = _Known(version, digest, items, known.size + len(data))
        return PendingBlob(channel, version, digest, blob, value, learned)

    def without_base(self, pending: PendingBlob) -> PendingBlob:
        """The full form of ``pending``, for when the blob it relies on is gone."""
        return self.full(pending.channel, pending.version, pending.value)

    def remember(self, thread_id: str, ns: str, pending: PendingBlob) -> None:
        """Call once ``pending`` is durably stored."""
        if pending.known is not None:
            self.cache.put((thread_id, ns, pending.channel), pending.known)

    def read(
        self,
        thread_id: str,
        ns: str,
        channel: str,
        head: BlobRef,
        lookup: Callable[[BlobRef], Blob | None],
    ) -> tuple[bool, Any]:
        """``(present, value)`` of the blob ``head`` of ``channel``, following delta bases."""
        known, value = self.decoded.get((thread_id, ns, channel, head))
        if known:
            return True, value
        chain = [self._fetch(channel, head, lookup)]
        seen = {head}
        while chain[-1].kind == DELTA:
            base = chain[-1].base
            if base is None or base in seen:
                raise CorruptStorageError(f"corrupt delta chain for channel {channel!r}")
            seen.add(base)
            chain.append(self._fetch(channel, base, lookup))
        if chain[-1].kind == EMPTY:
            if len(chain) > 1:
                raise CorruptStorageError(f"delta on an empty value for channel {channel!r}")
            return False, None
        value = self._build(chain)
        if type(value) is list:
            key = (thread_id, ns, channel)
            known = self.cache.get(key)
            if known is None or known.version < head[0]:
                # A second decode gives the cache a copy that the caller cannot mutate.
                size = sum(len(blob.data) for blob in chain)
                self.cache.put(key, _Known(*head, self._build(chain), size), only_newer=True)
        self.decoded.put((thread_id, ns, channel, head), value)
        return True, value

    @staticmethod
    def _fetch(channel: str, ref: BlobRef, lookup: Callable[[BlobRef], Blob | None]) -> Blob:
        blob = lookup(ref)
        if blob is None:
            raise CorruptStorageError(f"value blob {ref} of channel {channel!r} is not stored")
        if blob.kind not in KINDS:
            raise CorruptStorageError(
                f"value blob {ref} of channel {channel!r} has an unknown kind {blob.kind!r}"
            )
        if not isinstance(blob.data, bytes | str):
            raise CorruptStorageError(
                f"value blob {ref} of channel {channel!r} holds {type(blob.data).__name__},"
                " not serialized bytes"
            )
        return blob

    def _build(self, chain: list[Blob]) -> Any:
        value = self.serde.loads(chain[-1].data)
        if len(chain) > 1 and type(value) is not list:
            raise CorruptStorageError(f"delta on a non-list value for channel {chain[0].channel!r}")
        for blob in reversed(chain[:-1]):
            items = self.serde.loads(blob.data)
            if type(items) is not list:
                raise CorruptStorageError(f"malformed delta for channel {blob.channel!r}")
            value.extend(items)
        return value

    def forget_thread(self, thread_id: str) -> None:
        self.cache.drop_thread(thread_id)
        self.decoded.drop_thread(thread_id)


BlobKey = tuple[str, str, int, str]  # (namespace, channel, version, digest)


def live_blobs(heads: Iterable[BlobKey], bases: Mapping[BlobKey, BlobRef | None]) -> set[BlobKey]:
    """Blobs that kept checkpoints refer to, plus every delta base needed to rebuild them."""
    live: set[BlobKey] = set()
    stack = list(heads)
    while stack:
        key = stack.pop()
        if key in live:
            continue
        live.add(key)
        base = bases.get(key)
        if base is not None:
            stack.append((key[0], key[1], *base))
    return live
