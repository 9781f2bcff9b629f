"""The checkpoint saver contract that the runner, the scheduler and every backend share.

A checkpoint row holds versions, not values: each channel value is stored once per version
as a blob (see ``delta``), and the row records which blob each channel refers to. Savers
encode everything a call will store before touching storage, so a value the serde rejects
leaves storage exactly as it was.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

import orjson

from graphdef.checkpoint.delta import (
    Blob,
    BlobCodec,
    BlobRef,
    CorruptStorageError,
    PendingBlob,
    value_root,
)
from graphdef.checkpoint.ids import new_checkpoint_id
from graphdef.serde import Serde, SerializerProtocol

Config = dict[str, Any]


class Checkpoint(TypedDict):
    v: int
    id: str
    ts: str
    channel_values: dict[str, Any]
    channel_versions: dict[str, int]
    versions_seen: dict[str, dict[str, int]]
    updated_channels: list[str] | None


class CheckpointMetadata(TypedDict, total=False):
    source: str  # "input" | "loop" | "update" | "fork"
    step: int
    parents: dict[str, str]


PendingWrite = tuple[str, str, Any]  # (task_id, channel, value)


@dataclass(frozen=True)
class CheckpointTuple:
    config: Config
    checkpoint: Checkpoint
    metadata: CheckpointMetadata
    parent_config: Config | None
    pending_writes: list[PendingWrite]


ERROR = "__error__"
SCHEDULED = "__scheduled__"
INTERRUPT = "__interrupt__"
RESUME = "__resume__"
# Special writes get fixed negative indexes so a retry overwrites them instead of adding.
WRITES_IDX_MAP = {ERROR: -1, SCHEDULED: -2, INTERRUPT: -3, RESUME: -4}


def empty_checkpoint() -> Checkpoint:
    return Checkpoint(
        v=1,
        id=new_checkpoint_id(),
        ts=datetime.now(UTC).isoformat(),
        channel_values={},
        channel_versions={},
        versions_seen={},
        updated_channels=None,
    )


def checkpoint_config(thread_id: str, ns: str, checkpoint_id: str) -> Config:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


@dataclass(frozen=True)
class Target:
    """The (thread, namespace, checkpoint id) a config points at."""

    thread_id: str
    ns: str
    checkpoint_id: str | None

    @classmethod
    def of(cls, config: Config) -> Target:
        configurable = config.get("configurable") or {}
        thread_id = configurable.get("thread_id")
        if thread_id is None:
            raise ValueError("config['configurable']['thread_id'] is required")
        return cls(
            str(thread_id),
            configurable.get("checkpoint_ns") or "",
            configurable.get("checkpoint_id"),
        )


@dataclass(frozen=True)
class StoredCheckpoint:
    """One checkpoint row as a backend stores it (all payloads already serialized)."""

    thread_id: str
    ns: str
    checkpoint_id: str
    parent_id: str | None
    checkpoint: bytes
    metadata: bytes
    refs: bytes  # channel -> [version, digest] of the blob holding its value


StoredWrite = tuple[str, int, str, bytes]  # (task_id, idx, channel, data)


@dataclass(frozen=True)
class PreparedPut:
    """Everything ``put`` stores, encoded; only the channel refs wait for the transaction."""

    target: Target
    checkpoint_id: str
    checkpoint: bytes
    metadata: bytes
    blobs: list[PendingBlob]
    channel_versions: dict[str, int]

    def refs(
        self,
        blobs: Sequence[PendingBlob],
        parent_refs: Mapping[str, BlobRef],
        latest: Callable[[str, int], str | None],
    ) -> dict[str, BlobRef]:
        """Which blob each channel's current version is: written now, the parent's, or else
        the newest stored blob of that version (a put whose parent was never saved)."""
        versions = self.channel_versions
        # Most channels did not change since the parent: take its refs wholesale, then the
        # blobs written now, and look up only what is left.
        refs = {c: ref for c, ref in parent_refs.items() if versions.get(c) == ref[0]}
        for blob in blobs:
            if versions.get(blob.channel) == blob.version:
                refs[blob.channel] = blob.ref
        if len(refs) < len(versions):  # refs holds channels of `versions` only
            for channel, version in versions.items():
                if channel not in refs:
                    digest = latest(channel, version)
                    if digest is not None:
                        refs[channel] = (version, digest)
        return refs


class BaseCheckpointSaver(ABC):
    """Stores checkpoints, their channel values and the pending writes of their tasks."""

    serde: SerializerProtocol

    def __init__(self, *, serde: SerializerProtocol | None = None) -> None:
        self.serde = serde or Serde()
        self.codec = BlobCodec(self.serde)

    @abstractmethod
    def get_tuple(self, config: Config) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or the newest of its thread and namespace."""

    def head(self, thread_id: str, ns: str = "") -> str | None:
        """Id of the newest checkpoint of the thread's namespace, or None; a backend that
        can answer without loading the checkpoint overrides this."""
        latest = self.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}})
        return latest.checkpoint["id"] if latest is not None else None

    def get(self, config: Config) -> Checkpoint | None:
        found = self.get_tuple(config)
        return None if found is None else found.checkpoint

    @abstractmethod
    def list(
        self,
        config: Config | None,
        *,
        filter: dict[str, Any] | None = None,
        before: Config | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Newest first. ``config`` None means all threads; a ``checkpoint_ns`` key restricts
        to that namespace; a ``checkpoint_id`` to that checkpoint. ``filter`` matches
        metadata keys by equality; ``before`` keeps checkpoints strictly older than it."""

    @abstractmethod
    def put(
        self,
        config: Config,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: dict[str, int],
    ) -> Config:
        """Store ``checkpoint`` as a child of the checkpoint ``config`` names (if any), with
        values only for the channels in ``new_versions``; returns the new checkpoint's config."""

    @abstractmethod
    def put_writes(
        self,
        config: Config,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Save a task's writes against the checkpoint ``config`` names. Normal writes keep the
        first value stored (a re-run task must not change a finished superstep); special
        writes (``WRITES_IDX_MAP``) are overwritten."""

    @abstractmethod
    def delete_thread(self, thread_id: str) -> None:
        """Remove every namespace, checkpoint, blob and write of the thread."""

    @abstractmethod
    def prune(self, thread_id: str, *, keep_last: int) -> None:
        """Keep the newest ``keep_last`` (>= 1) checkpoints per namespace, their writes and the
        blobs they need; drop the rest of the thread's history."""

    @abstractmethod
    def stored_bytes(self, thread_id: str | None = None) -> int:
        """Bytes of serialized payload stored (for one thread or all), for storage budgets."""

    def get_next_version(self, current: int | None) -> int:
        return 1 if current is None else current + 1

    # ------------------------------------------------------------------ helpers for backends

    # The checkpoint row and refs are our own bookkeeping (ids, int versions, channel names),
    # plain JSON by construction: orjson handles them directly, no tag walk over user data.
    def _prepare_put(
        self,
        config: Config,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: Mapping[str, int],
    ) -> PreparedPut:
        target = Target.of(config)
        values = checkpoint.get("channel_values") or {}
        blobs = [
            self.codec.prepare(
                target.thread_id,
                target.ns,
                channel,
                version,
                values.get(channel),
                channel in values,
            )
            for channel, version in new_versions.items()
        ]
        # The id is the row's key in every backend; `_to_tuple` puts it back.
        row = {k: v for k, v in checkpoint.items() if k not in ("channel_values", "id")}
        return PreparedPut(
            target=target,
            checkpoint_id=checkpoint["id"],
            checkpoint=orjson.dumps(row),
            metadata=self.serde.dumps(dict(metadata or {}), root="metadata"),
            blobs=blobs,
            channel_versions=dict(checkpoint.get("channel_versions") or {}),
        )

    @property
    def max_value_bytes(self) -> int | None:
        """Largest channel value or task write this saver stores; bigger ones fail first."""
        return self.codec.max_value_bytes

    @max_value_bytes.setter
    def max_value_bytes(self, limit: int | None) -> None:
        self.codec.max_value_bytes = limit

    def _prepare_writes_for(
        self, config: Config, writes: Sequence[tuple[str, Any]]
    ) -> tuple[Target, list[tuple[int, str, bytes]]]:
        """The checkpoint `put_writes` targets, and its writes encoded (validated first)."""
        target = Target.of(config)
        if target.checkpoint_id is None:
            raise ValueError("put_writes needs a config with a checkpoint_id")
        return target, self._prepare_writes(writes)

    def _prepare_writes(self, writes: Sequence[tuple[str, Any]]) -> list[tuple[int, str, bytes]]:
        prepared = []
        for i, (channel, value) in enumerate(writes):
            data = self.serde.dumps(value, root=value_root(channel))
            self.codec.check_size(value_root(channel), len(data))
            prepared.append((WRITES_IDX_MAP.get(channel, i), channel, data))
        return prepared

    def _encode_refs(self, refs: Mapping[str, BlobRef]) -> bytes:
        return orjson.dumps(refs)  # a ref's (version, digest) tuple is written as a list

    def _decode_refs(self, data: bytes) -> dict[str, BlobRef]:
        """The channel refs of a stored checkpoint row; CorruptStorageError if malformed.

        Each put reads its parent's refs, and a chain's parent is the row the last put
        wrote: a process decodes a row's refs once (the caller gets its own dict)."""
        return dict(_parse_refs(data))

    def _decode_checkpoint(self, data: bytes) -> dict[str, Any]:
        """A stored checkpoint row (everything but the values); CorruptStorageError if it is
        not a JSON object."""
        checkpoint = load_json(data, "checkpoint row")
        if not isinstance(checkpoint, dict):
            raise CorruptStorageError(
                f"checkpoint row is not an object: {type(checkpoint).__name__}"
            )
        return checkpoint

    def _decode_metadata(self, data: Any) -> CheckpointMetadata:
        """Stored checkpoint metadata: SerdeError if it does not decode, CorruptStorageError
        if it is not a dict (savers only ever store dicts)."""
        metadata = self.serde.loads(data)
        if not isinstance(metadata, dict):
            raise CorruptStorageError(
                f"checkpoint metadata is not a dict: {type(metadata).__name__}"
            )
        return metadata  # type: ignore[return-value]

    def _to_tuple(
        self,
        row: StoredCheckpoint,
        metadata: CheckpointMetadata,
        lookup: Callable[[str, BlobRef], Blob | None],
        writes: Sequence[StoredWrite],
    ) -> CheckpointTuple:
        """Rebuild a checkpoint from its row; ``writes`` come in insertion order."""
        checkpoint = self._decode_checkpoint(row.checkpoint)
        checkpoint["id"] = row.checkpoint_id
        refs = self._decode_refs(row.refs)
        if "channel_versions" not in checkpoint:
            # A backend may leave out versions its refs repeat exactly (see SqliteSaver.put).
            checkpoint["channel_versions"] = {channel: ref[0] for channel, ref in refs.items()}
        values: dict[str, Any] = {}
        for channel, head in refs.items():
            present, value = self.codec.read(
                row.thread_id, row.ns, channel, head, lambda ref, c=channel: lookup(c, ref)
            )
            if present:
                values[channel] = value
        checkpoint["channel_values"] = values
        parent = None
        if row.parent_id is not None:
            parent = checkpoint_config(row.thread_id, row.ns, row.parent_id)
        return CheckpointTuple(
            config=checkpoint_config(row.thread_id, row.ns, row.checkpoint_id),
            checkpoint=checkpoint,
            metadata=metadata,
            parent_config=parent,
            pending_writes=self._pending_writes(writes),
        )

    def _pending_writes(self, writes: Sequence[StoredWrite]) -> list[PendingWrite]:
        # Grouped by task in the order tasks first wrote, then by index: deterministic, and
        # independent of which write of a task an upsert touched last.
        for task_id, idx, channel, _ in writes:
            if not (isinstance(task_id, str) and is_version(idx) and isinstance(channel, str)):
                raise CorruptStorageError(
                    f"malformed pending write: task {task_id!r}, index {idx!r}, channel {channel!r}"
                )
        first_seen: dict[str, int] = {}
        for position, (task_id, *_rest) in enumerate(writes):
            first_seen.setdefault(task_id, position)
        ordered = sorted(writes, key=lambda w: (first_seen[w[0]], w[1]))
        return [(task_id, channel, self.serde.loads(data)) for task_id, _, channel, data in ordered]


def load_json(data: Any, what: str) -> Any:
    """``orjson.loads`` of one of the savers' own records; CorruptStorageError naming
    ``what`` when it is not JSON."""
    try:
        return orjson.loads(data)
    except (TypeError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise CorruptStorageError(f"{what} is not valid JSON: {exc}") from None


def is_version(value: Any) -> bool:
    """Whether a stored version (or write index) is an int (JSON true is not)."""
    return type(value) is int


# Config keys that address a checkpoint or describe a task, never copied into metadata.
EXCLUDED_METADATA_KEYS = frozenset((
    "thread_id", "checkpoint_id", "checkpoint_ns", "checkpoint_map", "langgraph_step",
    "langgraph_node", "langgraph_triggers", "langgraph_path", "langgraph_checkpoint_ns",
))


def metadata_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """What of a run's config LangGraph records in each checkpoint's metadata, so that
    `get_state_history(filter=...)` finds a run by its tags: `metadata` and `configurable`
    entries whose values are str, int, float or bool, except addressing keys and private
    (`__`) ones; a `metadata` entry wins over a `configurable` one of the same name."""
    out: dict[str, Any] = {}
    for source in (config.get("metadata"), config.get("configurable")):
        for key, value in (source or {}).items():
            if key in out or key in EXCLUDED_METADATA_KEYS or key.startswith("__"):
                continue
            if isinstance(value, str):
                out[key] = value.replace("\u0000", "")
            elif isinstance(value, int | float | bool):
                out[key] = value
    return out


def with_checkpoint_map(config: Config | None, metadata: Mapping[str, Any] | None
                        ) -> Config | None:
    """A subgraph checkpoint's config as LangGraph shows it: with `checkpoint_map`, the
    checkpoint id of each graph above it (its metadata's `parents`) and its own."""
    parents = (metadata or {}).get("parents")
    if config is None or not parents:
        return config
    conf = config["configurable"]
    return {**config, "configurable": {
        **conf, "checkpoint_map": {**parents, conf["checkpoint_ns"]: conf["checkpoint_id"]}}}


def metadata_matches(metadata: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:
    missing = object()
    return not filter or all(metadata.get(k, missing) == v for k, v in filter.items())


def list_bounds(
    config: Config | None, before: Config | None
) -> tuple[str | None, str | None, str | None, str | None]:
    """``(thread_id, ns, checkpoint_id, before_id)`` restrictions of a ``list`` call; None
    means unrestricted (``ns`` only restricts when the config has a ``checkpoint_ns`` key)."""
    configurable = (config or {}).get("configurable") or {}
    thread_id = configurable.get("thread_id")
    ns = configurable.get("checkpoint_ns")
    before_id = ((before or {}).get("configurable") or {}).get("checkpoint_id")
    return (
        None if thread_id is None else str(thread_id),
        ns,
        configurable.get("checkpoint_id"),
        before_id,
    )


@functools.lru_cache(maxsize=1024)
def _parse_refs(data: bytes) -> dict[str, BlobRef]:
    doc = load_json(data, "channel refs of a checkpoint row")
    if not isinstance(doc, dict):
        raise CorruptStorageError(
            f"channel refs of a checkpoint row are not an object: {type(doc).__name__}"
        )
    refs: dict[str, BlobRef] = {}
    for channel, ref in doc.items():
        if not (
            isinstance(ref, list)
            and len(ref) == 2
            and is_version(ref[0])
            and isinstance(ref[1], str)
        ):
            raise CorruptStorageError(
                f"malformed channel ref {ref!r} for channel {channel!r} of a checkpoint row"
            )
        refs[channel] = (ref[0], ref[1])
    return refs
