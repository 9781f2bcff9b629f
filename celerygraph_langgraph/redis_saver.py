"""A LangGraph ``BaseCheckpointSaver`` on plain Redis, with celerygraph's key layout and serde.

LangGraph's data model is not graphdef's (string channel versions from ``get_next_version``,
``task_path`` on writes, ``delete_for_runs``), so this saver does not go through
``graphdef.checkpoint.redis.RedisSaver``; it shares its conventions instead: every key of a
thread carries the thread's hash tag (``graphdef.checkpoint.keys``), so a thread lives in one
Redis Cluster slot and every transaction and script touches one slot; channel values are stored
once per (channel, version), so storage grows with what changed; values only pass through
``graphdef.serde`` (tagged JSON), never pickle.

Key layout (``P`` the prefix, ``T`` the thread's hash tag, ``N`` base64url of the namespace);
``lg`` keeps these rows apart from graphdef's own RedisSaver under the same prefix:

- ``P:{T}:lg:keys``            set of every other key of the thread (delete, copy)
- ``P:{T}:lg:nss``             set of the thread's namespaces
- ``P:{T}:lg:cps:N``           sorted set of checkpoint ids, all score 0 (ordered as text = age)
- ``P:{T}:lg:cp:N``            hash id -> checkpoint without values, plus its parent id
- ``P:{T}:lg:meta:N``          hash id -> metadata
- ``P:{T}:lg:refs:N``          hash id -> JSON list of the blob fields the checkpoint reads
- ``P:{T}:lg:blob:N``          hash ``<version>:<channel>`` -> value (empty: channel unset)
- ``P:{T}:lg:writes:N:<id>``   hash ``<task id>:<idx>`` -> pending write
- ``P:{T}:lg:run:<R>``         set of ``<N>|<id>`` checkpoints written by run ``R`` (base64url)
- ``P:lg:run:{<R>}``           set of the threads run ``R`` wrote to (for ``delete_for_runs``)

The async methods run the sync ones on a worker thread: one implementation, one set of
atomicity arguments, and redis-py's client is thread-safe.
"""

from __future__ import annotations

import asyncio
import builtins
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

import orjson
import redis
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)

from celerygraph_langgraph.list_deltas import CHAIN_LUA, LIVE_BASES_LUA, RecentLists, rebuild
from celerygraph_langgraph.serde_types import register_langgraph_types
from graphdef import serde
from graphdef.checkpoint.keys import (
    DEFAULT_PREFIX,
    b64,
    check_prefix,
    thread_prefix,
    threads_matching,
    unb64,
)
from graphdef.redis_client import connect

__all__ = ["LangGraphRedisSaver"]

_INDEX = "lg:keys"

# KEYS cps, cp, meta, refs, blob, index; ARGV[1] the namespace's writes key prefix, ARGV[2..]
# checkpoint ids to drop. Drops them with their writes, then every blob no remaining
# checkpoint of the namespace reads, directly or as the base of a list delta
# (`list_deltas`), in one step: a put (a transaction) never sees half of it.
_DROP_LUA = """
local cps, cp, meta, refs, blob, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
for i = 2, #ARGV do
  local id = ARGV[i]
  redis.call('ZREM', cps, id)
  redis.call('HDEL', cp, id)
  redis.call('HDEL', meta, id)
  redis.call('HDEL', refs, id)
  redis.call('DEL', ARGV[1] .. id)
  redis.call('SREM', index, ARGV[1] .. id)
end
local live = {}
for _, row in ipairs(redis.call('HVALS', refs)) do
  for _, field in ipairs(cjson.decode(row)) do live[field] = true end
end
""" + LIVE_BASES_LUA + """
for _, field in ipairs(redis.call('HKEYS', blob)) do
  if not live[field] then redis.call('HDEL', blob, field) end
end
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LangGraphRedisSaver(BaseCheckpointSaver[str]):
    """Checkpoints of a LangGraph graph in Redis (``graph.compile(checkpointer=saver)``)."""

    def __init__(self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("LangGraphRedisSaver needs a client that returns bytes "
                             "(decode_responses=False): stored values are serde bytes")
        super().__init__()
        register_langgraph_types()
        self.client = client
        self.prefix = check_prefix(prefix)
        self._drop = client.register_script(_DROP_LUA)
        self._chains = client.register_script(CHAIN_LUA)
        self._recent = RecentLists()

    @classmethod
    def from_url(cls, url: str, *, prefix: str = DEFAULT_PREFIX) -> LangGraphRedisSaver:
        """A saver on its own client, for callers that only have a Redis URL."""
        return cls(connect(url), prefix=prefix)

    # ------------------------------------------------------------------------- keys

    def _key(self, thread_id: str, name: str) -> str:
        return f"{thread_prefix(self.prefix, thread_id)}lg:{name}"

    def _ns_keys(self, thread_id: str, ns: str) -> dict[str, str]:
        n = b64(ns)
        return {
            kind: self._key(thread_id, f"{kind}:{n}")
            for kind in ("cps", "cp", "meta", "refs", "blob", "writes")
        }

    def _run_key(self, run_id: str) -> str:
        return f"{self.prefix}:lg:run:{{{b64(run_id)}}}"

    # ------------------------------------------------------------------------- versions

    def get_next_version(self, current: str | int | None, channel: None) -> str:
        """LangGraph's own string form (as InMemorySaver): a zero-padded counter, so versions
        order as text, and a random tail so a fork's versions differ from the original's."""
        if current is None:
            counter = 0
        elif isinstance(current, int):
            counter = current
        else:
            counter = int(current.split(".")[0])
        return f"{counter + 1:032}.{random.random():016}"

    # ------------------------------------------------------------------------- writing

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store the checkpoint and only the values of the channels that changed; the rest
        the checkpoint reads from the blobs earlier checkpoints stored."""
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        keys = self._ns_keys(thread_id, ns)
        row = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        values = checkpoint["channel_values"]
        meta = get_serializable_checkpoint_metadata(config, metadata)
        blobs: dict[str, bytes] = {}
        bases: dict[str, str] = {}  # field -> the base field its delta record needs
        for channel, version in new_versions.items():
            field = f"{version}:{channel}"
            if channel not in values:
                self._recent.forget((thread_id, ns, channel))
                blobs[field] = b""
                continue
            blobs[field], base = self._recent.encode((thread_id, ns, channel), field,
                                                     values[channel])
            if base is not None:
                bases[field] = base
        refs = [
            f"{version}:{channel}" for channel, version in checkpoint["channel_versions"].items()
        ]
        encoded = (
            serde.dumps({"c": row, "p": conf.get("checkpoint_id")}),
            serde.dumps(meta),
            orjson.dumps(refs),
        )
        cid = checkpoint["id"]
        index = self._key(thread_id, _INDEX)
        run_id = meta.get("run_id")
        members = [keys[k] for k in ("cps", "cp", "meta", "refs", "blob")]
        members.append(self._key(thread_id, "nss"))
        run_set = self._key(thread_id, f"run:{b64(str(run_id))}") if run_id is not None else None
        if run_set is not None:
            members.append(run_set)
        while True:
            pipe = self.client.pipeline(transaction=True)
            try:
                if bases:
                    # A delta's base must still be stored when the delta lands (a prune
                    # may have dropped it since this process stored it): checked under
                    # WATCH, and stored whole if it is gone.
                    pipe.watch(keys["blob"])  # type: ignore[no-untyped-call]
                    found = pipe.hmget(keys["blob"], list(bases.values()))
                    for (field, _), present in zip(bases.items(), found, strict=True):
                        if present is None:
                            channel = field.split(":", 1)[1]
                            blobs[field] = self._recent.whole((thread_id, ns, channel),
                                                              field, values[channel])
                    pipe.multi()
                for field, blob in blobs.items():
                    pipe.hsetnx(keys["blob"], field, blob)
                pipe.hset(keys["cp"], cid, encoded[0])
                pipe.hset(keys["meta"], cid, encoded[1])
                pipe.hset(keys["refs"], cid, encoded[2])
                pipe.zadd(keys["cps"], {cid: 0})
                pipe.sadd(self._key(thread_id, "nss"), ns)
                if run_set is not None:
                    pipe.sadd(run_set, f"{b64(ns)}|{cid}")
                pipe.sadd(index, *members)
                pipe.execute()
                break
            except redis.WatchError:
                continue  # the namespace's blobs changed under the check: check again
            finally:
                pipe.reset()
        if run_id is not None:
            self.client.sadd(self._run_key(str(run_id)), thread_id)
        return self._config(thread_id, ns, cid)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Normal writes are first-writer-wins, as a retried task must not replace what the
        first run saved; special ones (error, interrupt, resume) overwrite, as LangGraph's."""
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        key = f"{self._ns_keys(thread_id, ns)['writes']}{conf['checkpoint_id']}"
        overwrite = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        records = []
        for idx, (channel, value) in enumerate(writes):
            slot = WRITES_IDX_MAP.get(channel, idx)
            records.append(
                (f"{task_id}:{slot}", serde.dumps([task_id, channel, value, task_path, slot]))
            )
        pipe = self.client.pipeline(transaction=True)
        for field, record in records:
            if overwrite:
                pipe.hset(key, field, record)
            else:
                pipe.hsetnx(key, field, record)
        pipe.sadd(self._key(thread_id, _INDEX), key)
        pipe.execute()

    # ------------------------------------------------------------------------- reading

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        cid = get_checkpoint_id(config)
        if cid is None:
            newest = self._ids(thread_id, ns, 0, 0)
            if not newest:
                return None
            cid = newest[0]
        return self._load(thread_id, ns, cid)

    def _ids(self, thread_id: str, ns: str, start: int, stop: int = -1) -> builtins.list[str]:
        """The namespace's checkpoint ids, newest first, from rank `start` to `stop`."""
        found = self.client.zrevrange(self._ns_keys(thread_id, ns)["cps"], start, stop)
        return [_text(cid) for cid in cast(list[bytes], found)]

    def _load(self, thread_id: str, ns: str, cid: str) -> CheckpointTuple | None:
        keys = self._ns_keys(thread_id, ns)
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(keys["cp"], cid)
        pipe.hget(keys["meta"], cid)
        pipe.hget(keys["refs"], cid)
        pipe.hgetall(f"{keys['writes']}{cid}")
        row, meta, refs, writes = pipe.execute()
        if row is None or meta is None or refs is None:
            return None
        fields = orjson.loads(refs)
        chains = cast(list[list[bytes | None]],
                      self._chains(keys=[keys["blob"]], args=fields) if fields else [])
        doc = serde.loads(row)
        checkpoint = doc["c"]
        values: dict[str, Any] = {}
        for field, chain in zip(fields, chains, strict=True):
            is_set, value = rebuild(chain, field)
            if is_set:
                values[field.split(":", 1)[1]] = value
        checkpoint["channel_values"] = values
        records = sorted(
            (serde.loads(record) for record in writes.values()),
            key=lambda r: writes_sort_key(r[3], r[0], r[4]),
        )
        parent = doc["p"]
        return CheckpointTuple(
            config=self._config(thread_id, ns, cid),
            checkpoint=checkpoint,
            metadata=serde.loads(meta),
            parent_config=self._config(thread_id, ns, parent) if parent else None,
            pending_writes=[(r[0], r[1], r[2]) for r in records],
        )

    @staticmethod
    def _config(thread_id: str, ns: str, cid: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Newest first per namespace; ``config`` without a thread lists every thread (a SCAN,
        for tools and tests rather than a hot path)."""
        conf = config["configurable"] if config else {}
        threads = [str(conf["thread_id"])] if "thread_id" in conf else sorted(self._threads())
        before_id = get_checkpoint_id(before) if before else None
        wanted = conf.get("checkpoint_id")
        left = limit
        for thread_id in threads:
            if "checkpoint_ns" in conf:
                namespaces = [conf["checkpoint_ns"]]
            else:
                namespaces = sorted(
                    _text(n) for n in self.client.smembers(self._key(thread_id, "nss"))
                )
            for ns in namespaces:
                for cid in self._ids(thread_id, ns, 0):
                    if (wanted and cid != wanted) or (before_id and cid >= before_id):
                        continue
                    found = self._load(thread_id, ns, cid)
                    if found is None:
                        continue
                    if filter and any(found.metadata.get(k) != v for k, v in filter.items()):
                        continue
                    if left is not None:
                        if left <= 0:
                            return
                        left -= 1
                    yield found

    def _threads(self) -> set[str]:
        pattern = f"{self.prefix}:{{*}}:{_INDEX}"
        keys = [_text(k) for k in self.client.scan_iter(match=pattern, count=1000)]
        return threads_matching(keys, self.prefix, f":{_INDEX}")

    # ------------------------------------------------------------------------- retention

    def delete_thread(self, thread_id: str) -> None:
        """Drops every key of the thread, and the thread from the indexes of its runs."""
        index = self._key(thread_id, _INDEX)
        keys = [_text(k) for k in self.client.smembers(index)]
        self.client.delete(index, *keys)
        for run_id in self._runs_of(thread_id, keys):
            self.client.srem(self._run_key(run_id), thread_id)

    def _runs_of(self, thread_id: str, keys: Sequence[str]) -> builtins.list[str]:
        """The run ids among a thread's keys (its ``lg:run:<R>`` sets)."""
        head = self._key(thread_id, "run:")
        return [unb64(key[len(head):]) for key in keys if key.startswith(head)]

    def _drop_ids(self, thread_id: str, ns: str, ids: Sequence[str]) -> None:
        keys = self._ns_keys(thread_id, ns)
        self._drop(
            keys=[*(keys[k] for k in ("cps", "cp", "meta", "refs", "blob")),
                  self._key(thread_id, _INDEX)],
            args=[keys["writes"], *ids],
        )

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Drops the checkpoints whose metadata names one of the runs, with their writes and
        the blobs nothing else refers to."""
        for run_id in run_ids:
            run_key = self._run_key(run_id)
            for thread in self.client.smembers(run_key):
                thread_id = _text(thread)
                run_set = self._key(thread_id, f"run:{b64(run_id)}")
                by_ns: dict[str, list[str]] = {}
                for member in self.client.smembers(run_set):
                    n, _, cid = _text(member).partition("|")
                    by_ns.setdefault(n, []).append(cid)
                for n, ids in by_ns.items():
                    ns = unb64(n)
                    self._drop_ids(thread_id, ns, ids)
                self.client.delete(run_set)
                self.client.srem(self._key(thread_id, _INDEX), run_set)
            self.client.delete(run_key)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Replaces the target thread by a copy of every key of the source (DUMP/RESTORE: the
        two threads live in different slots, so no one transaction can span them)."""
        self.delete_thread(target_thread_id)
        source = thread_prefix(self.prefix, source_thread_id)
        target = thread_prefix(self.prefix, target_thread_id)
        index = self._key(source_thread_id, _INDEX)
        keys = [_text(k) for k in self.client.smembers(index)]
        copied = []
        for key in keys:
            dumped = self.client.dump(key)
            if dumped is None:
                continue
            new_key = target + key[len(source):]
            self.client.restore(new_key, 0, dumped, replace=True)
            copied.append(new_key)
        for run_id in self._runs_of(source_thread_id, keys):
            self.client.sadd(self._run_key(run_id), target_thread_id)
        if copied:
            self.client.sadd(self._key(target_thread_id, _INDEX), *copied)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``keep_latest`` keeps each namespace's newest checkpoint with its writes and the
        blobs it reads; ``delete`` drops the threads."""
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}: keep_latest or delete")
        for thread_id in thread_ids:
            if strategy == "delete":
                self.delete_thread(thread_id)
                continue
            for n in self.client.smembers(self._key(thread_id, "nss")):
                ns = _text(n)
                ids = self._ids(thread_id, ns, 1)
                if ids:
                    self._drop_ids(thread_id, ns, ids)

    # ------------------------------------------------------------------------- async

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)
