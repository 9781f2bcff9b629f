"""A compiled graph: the callable surface (`invoke`, `stream`, their async twins, batches,
state and history) over the loop."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from graphdef import algo
from graphdef.algo import Node, NullTask, Task, Write
from graphdef.cache.base import BaseCache
from graphdef.cache.keys import CACHE_NS_WRITES
from graphdef.channels import BaseChannel
from graphdef.checkpoint.base import BaseCheckpointSaver, CheckpointTuple, with_checkpoint_map
from graphdef.constants import INPUT, NS_END, NS_SEP, NULL_TASK_ID, RETURN, START
from graphdef.errors import InvalidUpdateError, NotImplementedFeatureError
from graphdef.loop import RunLoop
from graphdef.mermaid import GraphView
from graphdef.runtime import RunScope, TaskRuntime, current_runtime_or_none
from graphdef.store.base import BaseStore
from graphdef.stream import check_modes, config_metadata, langgraph_path
from graphdef.types import CachePolicy, PregelTask, StateSnapshot
from graphdef.update import update_state

# LangGraph 1.x's default: a loop ends by its own condition, not by this limit.
DEFAULT_RECURSION_LIMIT = 10007
DURABILITY_MODES = ("sync", "async", "exit")
# What LangGraph's run methods accept that graphdef does not implement, with the value
# that means "not used": anything else raises rather than being ignored.
UNSUPPORTED_RUN_ARGS: dict[str, Any] = {
    "print_mode": (), "output_keys": None, "control": None, "debug": None, "version": "v1",
}


def reject_unsupported(kwargs: dict[str, Any]) -> None:
    """Raise for a run argument graphdef does not implement, naming it."""
    for name, value in kwargs.items():
        if name not in UNSUPPORTED_RUN_ARGS:
            raise TypeError(f"Unexpected keyword argument {name!r}")
        if value != UNSUPPORTED_RUN_ARGS[name] and not (name == "debug" and value is False):
            raise NotImplementedFeatureError(
                f"{name}={value!r} is not supported by graphdef"
            )


def merge_configs(base: dict[str, Any] | None, override: dict[str, Any] | None
                  ) -> dict[str, Any]:
    """`override` over `base`, merging `configurable` and `metadata` key by key and
    concatenating `tags`, as LangChain merges a bound config with a call's."""
    merged = dict(base or {})
    for key, value in (override or {}).items():
        if key in ("configurable", "metadata") and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **(value or {})}
        elif key == "tags" and merged.get(key):
            merged[key] = [*merged[key], *(value or [])]
        else:
            merged[key] = value
    return merged


class Pregel:
    """A graph compiled to nodes and channels, runnable in-process with durable checkpoints."""

    def __init__(
        self,
        *,
        nodes: dict[str, Node],
        channels: dict[str, BaseChannel],
        input_channels: str | list[str],
        output_channels: str | list[str],
        stream_channels: str | list[str] | None = None,
        checkpointer: BaseCheckpointSaver | None | bool = None,
        interrupt_before: Sequence[str] | str = (),
        interrupt_after: Sequence[str] | str = (),
        name: str = "LangGraph",
        store: BaseStore | None = None,
        cache: BaseCache[Any] | None = None,
        cache_policy: CachePolicy[Any] | None = None,
        context_schema: Any = None,
    ) -> None:
        """`cache_policy`: for nodes and `@task` calls without one of their own (an
        entrypoint's); `context_schema`: what a `context=` dict is made into."""
        self.nodes = nodes
        self.store = store
        self.cache = cache
        self.cache_policy = cache_policy
        self.context_schema = context_schema
        self.channel_specs = channels
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.stream_channels = stream_channels if stream_channels is not None else output_channels
        self.checkpointer = checkpointer
        self.interrupt_before = interrupt_before
        self.interrupt_after = interrupt_after
        self.name = name
        self.config: dict[str, Any] | None = None
        # What `stream` yields when no mode is given: LangGraph's StateGraph and
        # entrypoint graphs stream updates, a bare Pregel values.
        self.stream_mode: str = "values"
        trigger_to_nodes: dict[str, list[str]] = {}
        for node in nodes.values():
            for chan in node.triggers:
                trigger_to_nodes.setdefault(chan, []).append(node.name)
        self.trigger_to_nodes = trigger_to_nodes

    # ---- hooks the loop calls -------------------------------------------------------------

    def map_input(self, value: Any) -> list[Write]:
        return [(START, value)] if value is not None else []

    def task_update(self, task: Task, writes: list[Write], keys: str | list[str]) -> Any:
        """The `updates` stream payload for one finished task (LangGraph's shape)."""
        for chan, value in writes:
            if chan == RETURN:
                return value
        if isinstance(keys, str):
            values = [v for c, v in writes if c == keys]
            return values[0] if values else None
        wanted = frozenset(keys)
        own = [(c, v) for c, v in writes if c in wanted]
        if not own:
            return None
        counts = Counter(c for c, _ in own)
        if any(n > 1 for n in counts.values()):
            return [{c: v} for c, v in own]
        return dict(own)

    def task_config(self, config: dict[str, Any], task: Task, step: int) -> dict[str, Any]:
        """A node's config: the run's, addressed to the task, with LangGraph's metadata keys
        (which LangChain callbacks and tracers read)."""
        conf = config["configurable"]
        child = {k: v for k, v in conf.items() if k != "checkpoint_id"}
        child["checkpoint_ns"] = task.checkpoint_ns
        metadata = config_metadata(config)
        metadata.update(
            langgraph_step=step,
            langgraph_node=task.name,
            langgraph_triggers=task.triggers,
            langgraph_path=langgraph_path(task.path),
            langgraph_checkpoint_ns=task.checkpoint_ns,
        )
        return {**config, "configurable": child, "metadata": metadata}

    # ---- running --------------------------------------------------------------------------

    def _resolve(
        self, config: dict[str, Any] | None, checkpointer: BaseCheckpointSaver | None
    ) -> tuple[dict[str, Any], RunScope]:
        """The run's config, and the scope it runs in: a subgraph's is its parent task's,
        with the saver this graph has of its own, if any."""
        config = merge_configs(self.config, config)
        conf = dict(config.get("configurable") or {})
        runtime = current_runtime_or_none()
        if runtime is not None and not conf.get("thread_id"):
            conf = self._inherit_from_caller(runtime, conf)
        config["configurable"] = conf
        config.setdefault("recursion_limit", DEFAULT_RECURSION_LIMIT)
        nested = bool(conf.get("checkpoint_ns"))
        scope = runtime.scope if nested and runtime is not None else RunScope()
        if self.checkpointer is False:
            saver = None
        elif isinstance(self.checkpointer, BaseCheckpointSaver):
            saver = self.checkpointer
        else:
            saver = checkpointer if checkpointer is not None else scope.checkpointer
        if saver is not None and not conf.get("thread_id"):
            raise ValueError(
                "Checkpointer requires one or more of the following 'configurable' keys: "
                "thread_id, checkpoint_ns, checkpoint_id"
            )
        store = scope.store if nested and runtime is not None else self.store
        return config, dataclasses.replace(scope, checkpointer=saver, store=store)

    @staticmethod
    def _inherit_from_caller(runtime: TaskRuntime, conf: dict[str, Any]) -> dict[str, Any]:
        """A graph invoked inside a node without a config runs as that node's subgraph."""
        inherited = dict(runtime.config["configurable"])
        idx = next(runtime.subgraph_counter)
        if idx:
            inherited["checkpoint_ns"] = f"{inherited['checkpoint_ns']}{NS_SEP}{idx}"
        return {**inherited, **conf}

    def stream(
        self,
        input: Any,
        config: dict[str, Any] | None = None,
        *,
        stream_mode: str | Sequence[str] | None = None,
        durability: str | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        subgraphs: bool = False,
        checkpointer: BaseCheckpointSaver | None = None,
        context: Any = None,
        **unsupported: Any,
    ) -> Iterator[Any]:
        """Run the graph, yielding chunks in the requested mode(s), as LangGraph does.

        `checkpointer`: the saver for a graph compiled without one of its own, as a parent
        graph's is for its subgraphs (`celerygraph run` passes its SQLite file's).
        `context`: the run's `Runtime.context` (not saved: pass it again on resume).
        """
        reject_unsupported(unsupported)
        stream_mode = self.stream_mode if stream_mode is None else stream_mode
        modes = check_modes(stream_mode)
        loop = self._loop(
            input, config, modes, durability, interrupt_before, interrupt_after, subgraphs,
            output_keys=self.stream_channels, checkpointer=checkpointer, context=context,
        )
        shape = _chunk_shape(stream_mode, subgraphs)
        for chunk in loop.run():
            yield shape(chunk)

    async def astream(
        self,
        input: Any,
        config: dict[str, Any] | None = None,
        *,
        stream_mode: str | Sequence[str] | None = None,
        durability: str | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        subgraphs: bool = False,
        checkpointer: BaseCheckpointSaver | None = None,
        context: Any = None,
        **unsupported: Any,
    ) -> AsyncIterator[Any]:
        """`stream` on the caller's event loop: async nodes are awaited and a step's tasks
        run concurrently on it."""
        reject_unsupported(unsupported)
        stream_mode = self.stream_mode if stream_mode is None else stream_mode
        modes = check_modes(stream_mode)
        loop = self._loop(
            input, config, modes, durability, interrupt_before, interrupt_after, subgraphs,
            output_keys=self.stream_channels, checkpointer=checkpointer, context=context,
        )
        shape = _chunk_shape(stream_mode, subgraphs)
        async for chunk in loop.arun():
            yield shape(chunk)

    def invoke(
        self,
        input: Any,
        config: dict[str, Any] | None = None,
        *,
        stream_mode: str = "values",
        durability: str | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        checkpointer: BaseCheckpointSaver | None = None,
        context: Any = None,
        **unsupported: Any,
    ) -> Any:
        """Run to completion or to the next interrupt and return the output.

        `checkpointer`, `context`: as for `stream`.
        """
        reject_unsupported(unsupported)
        if stream_mode != "values":
            return list(
                self.stream(
                    input, config, stream_mode=stream_mode, durability=durability,
                    interrupt_before=interrupt_before, interrupt_after=interrupt_after,
                    checkpointer=checkpointer, context=context,
                )
            )
        loop = self._loop(
            input, config, ["values"], durability, interrupt_before, interrupt_after,
            output_keys=self.output_channels, checkpointer=checkpointer, context=context,
        )
        for _ in loop.run():
            pass
        return loop.output

    async def ainvoke(
        self,
        input: Any,
        config: dict[str, Any] | None = None,
        *,
        stream_mode: str = "values",
        durability: str | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        checkpointer: BaseCheckpointSaver | None = None,
        context: Any = None,
        **unsupported: Any,
    ) -> Any:
        """`invoke` on the caller's event loop; see `astream`."""
        reject_unsupported(unsupported)
        if stream_mode != "values":
            return [
                chunk async for chunk in self.astream(
                    input, config, stream_mode=stream_mode, durability=durability,
                    interrupt_before=interrupt_before, interrupt_after=interrupt_after,
                    checkpointer=checkpointer, context=context,
                )
            ]
        loop = self._loop(
            input, config, ["values"], durability, interrupt_before, interrupt_after,
            output_keys=self.output_channels, checkpointer=checkpointer, context=context,
        )
        async for _ in loop.arun():
            pass
        return loop.output

    def batch(
        self,
        inputs: Sequence[Any],
        config: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """`invoke` on each input, side by side (at most `max_concurrency` of the config at
        once), outputs in input order; with `return_exceptions`, a failure is its output."""
        return batch_calls(self.invoke, inputs, config, return_exceptions=return_exceptions,
                           default_workers=len(inputs), **kwargs)

    async def abatch(
        self,
        inputs: Sequence[Any],
        config: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """`ainvoke` on each input concurrently on this event loop; see `batch`."""
        configs = _batch_configs(config, len(inputs))
        limit = (configs[0] or {}).get("max_concurrency") if configs else None
        gate = asyncio.Semaphore(limit) if limit else None

        async def one(value: Any, cfg: dict[str, Any] | None) -> Any:
            try:
                if gate is None:
                    return await self.ainvoke(value, cfg, **kwargs)
                async with gate:
                    return await self.ainvoke(value, cfg, **kwargs)
            except Exception as exc:
                if return_exceptions:
                    return exc
                raise

        return list(await asyncio.gather(
            *(one(v, c) for v, c in zip(inputs, configs, strict=True))))

    def with_config(self, config: dict[str, Any] | None = None, **kwargs: Any) -> Pregel:
        """A copy of this graph whose runs start from `config` (merged under each call's)."""
        bound = copy.copy(self)
        bound.config = merge_configs(self.config, merge_configs(config, kwargs))
        return bound

    def _loop(
        self,
        input: Any,
        config: dict[str, Any] | None,
        modes: list[str],
        durability: str | None,
        interrupt_before: Sequence[str] | str | None,
        interrupt_after: Sequence[str] | str | None,
        subgraphs: bool = False,
        output_keys: str | list[str] | None = None,
        checkpointer: BaseCheckpointSaver | None = None,
        context: Any = None,
    ) -> RunLoop:
        config, scope = self._resolve(config, checkpointer)
        mode = durability or scope.durability
        if mode not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {DURABILITY_MODES}, got {mode!r}")
        return RunLoop(
            self,
            input,
            config,
            checkpointer=scope.checkpointer,
            durability=mode,
            interrupt_before=self.interrupt_before if interrupt_before is None
            else interrupt_before,
            interrupt_after=self.interrupt_after if interrupt_after is None else interrupt_after,
            # A subgraph streamed with its parent emits what the parent asked for.
            stream_modes=scope.stream_modes if scope.sink is not None else modes,
            stream_subgraphs=subgraphs,
            output_keys=self.stream_channels if output_keys is None else output_keys,
            sink=scope.sink,
            resuming=scope.resuming,
            resume_map=scope.resume_map,
            store=scope.store,
            messages=scope.messages,
            # A subgraph runs with its parent's context unless given one (LangGraph's merge).
            context=scope.context if context is None else context,
        )

    def run_as_subgraph(self, input: Any, config: dict[str, Any]) -> Any:
        """Called as a parent's node: checkpoints under the task's namespace, resumes there."""
        loop = self._loop(input, config, ["values"], None, None, None,
                          output_keys=self.output_channels)
        for _ in loop.run():
            pass
        return loop.output

    async def arun_as_subgraph(self, input: Any, config: dict[str, Any]) -> Any:
        """`run_as_subgraph` for a parent run on an event loop."""
        loop = self._loop(input, config, ["values"], None, None, None,
                          output_keys=self.output_channels)
        async for _ in loop.arun():
            pass
        return loop.output

    # ---- state ----------------------------------------------------------------------------

    def _saver(self, checkpointer: BaseCheckpointSaver | None = None) -> BaseCheckpointSaver:
        saver = checkpointer if checkpointer is not None else (
            self.checkpointer if isinstance(self.checkpointer, BaseCheckpointSaver) else None
        )
        if saver is None:
            raise ValueError("No checkpointer set")
        return saver

    def _state_config(self, config: dict[str, Any]) -> dict[str, Any]:
        conf = dict(config.get("configurable") or {})
        conf.setdefault("checkpoint_ns", "")
        return {"configurable": conf}

    def _subgraph_for(self, config: dict[str, Any], *, for_update: bool = False
                      ) -> Pregel | None:
        """The subgraph a state method's namespaced config addresses (a config from
        `get_state().tasks[i].state`), so that its own nodes and channels read and write its
        checkpoints. None for this graph's own namespace, or, for a read, a namespace naming
        no subgraph it declares (one a tool invokes): that read uses this graph's channels.

        An update to such a namespace raises: this graph's nodes would write the wrong state
        into it.
        """
        ns = (config.get("configurable") or {}).get("checkpoint_ns") or ""
        names = [part.split(NS_END)[0] for part in ns.split(NS_SEP) if part and
                 not part.isdigit()]
        graph: Pregel = self
        for name in names:
            node = graph.nodes.get(name)
            if node is None or not isinstance(node.subgraph, Pregel):
                if for_update:
                    raise ValueError(f"Subgraph {NS_SEP.join(names)} not found")
                return None
            graph = node.subgraph
        return graph if names else None

    def get_state(
        self,
        config: dict[str, Any],
        *,
        subgraphs: bool = False,
        checkpointer: BaseCheckpointSaver | None = None,
    ) -> StateSnapshot:
        """The thread's state: at its head (with finished tasks applied) or at `checkpoint_id`.
        A config with a subgraph's `checkpoint_ns` reads that subgraph's state.

        `checkpointer`: read with this saver rather than the graph's own, as a producer
        reads a thread that workers checkpoint.
        """
        saver = self._saver(checkpointer)
        graph = self._subgraph_for(config) or self
        return graph._state_here(self._state_config(config), saver, subgraphs)

    def _state_here(self, cfg: dict[str, Any], saver: BaseCheckpointSaver, recurse: bool
                    ) -> StateSnapshot:
        """`get_state` of this graph's own namespace `cfg`, with no subgraph lookup: a
        subgraph's own node names must not be read as a deeper namespace."""
        saved = saver.get_tuple(cfg)
        live = not cfg["configurable"].get("checkpoint_id")
        return self._snapshot(cfg, saved, saver, live=live, recurse=recurse)

    def get_state_history(
        self,
        config: dict[str, Any],
        *,
        filter: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        limit: int | None = None,
        checkpointer: BaseCheckpointSaver | None = None,
    ) -> Iterator[StateSnapshot]:
        """Every checkpoint of the thread's namespace, newest first, with the nodes of the
        subgraph that namespace belongs to; `checkpointer` as for `get_state`."""
        saver = self._saver(checkpointer)
        graph = self._subgraph_for(config) or self
        cfg = self._state_config(config)
        for saved in list(saver.list(cfg, filter=filter, before=before, limit=limit)):
            yield graph._snapshot(saved.config, saved, saver, live=False, recurse=False)

    def _snapshot(
        self,
        config: dict[str, Any],
        saved: CheckpointTuple | None,
        saver: BaseCheckpointSaver,
        *,
        live: bool,
        recurse: bool,
    ) -> StateSnapshot:
        if saved is None:
            return StateSnapshot({}, (), config, None, None, None, (), ())
        checkpoint = saved.checkpoint
        channels = algo.channels_from_checkpoint(self.channel_specs, checkpoint)
        step = saved.metadata.get("step", -1) + 1
        parent_ns = saved.config["configurable"].get("checkpoint_ns", "")
        tasks = algo.prepare_next_tasks(checkpoint, channels, self.nodes, step, parent_ns=parent_ns)
        null_writes = [w[1:] for w in saved.pending_writes if w[0] == NULL_TASK_ID]
        if null_writes:
            algo.apply_writes(
                algo.create_checkpoint(checkpoint, None, None), channels,
                [NullTask(INPUT, null_writes)], self.trigger_to_nodes,
            )
        statuses = algo.task_statuses(saved.pending_writes)
        if live:
            for tid, status in statuses.items():
                if tid in tasks:
                    tasks[tid].writes.extend(status.output)
            done = [t for t in tasks.values() if t.writes]
            if done:
                algo.apply_writes(
                    algo.create_checkpoint(checkpoint, None, None), channels, done,
                    self.trigger_to_nodes,
                )
        snapshot_tasks = []
        for task in tasks.values():
            status = statuses.get(task.id, algo.TaskStatus())
            interrupts = () if (live and status.finished) else tuple(status.interrupts)
            state = None
            if task.node.subgraph is not None:
                sub_cfg = {
                    "configurable": {
                        "thread_id": saved.config["configurable"]["thread_id"],
                        "checkpoint_ns": task.checkpoint_ns,
                    }
                }
                state = task.node.subgraph._state_here(
                    sub_cfg, saver, True
                ) if recurse else sub_cfg
            snapshot_tasks.append(
                PregelTask(
                    task.id, task.name, task.path, status.error, interrupts, state,
                    self.task_update(task, status.output, self.stream_channels)
                    if status.finished else None,
                )
            )
        return StateSnapshot(
            values=algo.read_values(channels, self.stream_channels),
            next=tuple(t.name for t in tasks.values() if not t.writes),
            config=with_checkpoint_map(saved.config, saved.metadata),
            metadata=saved.metadata,
            created_at=checkpoint["ts"],
            parent_config=with_checkpoint_map(saved.parent_config, saved.metadata),
            tasks=tuple(snapshot_tasks),
            interrupts=tuple(i for t in snapshot_tasks for i in t.interrupts),
        )

    def update_state(
        self,
        config: dict[str, Any],
        values: Any,
        as_node: str | None = None,
        *,
        checkpointer: BaseCheckpointSaver | None = None,
    ) -> dict[str, Any]:
        """Write `values` as if node `as_node` had returned them; a new checkpoint, a fork.
        A config with a subgraph's `checkpoint_ns` updates that subgraph with its nodes.
        `checkpointer` as for `get_state`."""
        saver = self._saver(checkpointer)
        graph = self._subgraph_for(config, for_update=True) or self
        return update_state(graph, saver, merge_configs(self.config, config), values, as_node)

    async def aget_state(self, config: dict[str, Any], *, subgraphs: bool = False) -> StateSnapshot:
        """`get_state`; graphdef's savers answer in-process, so it does not wait on I/O."""
        return self.get_state(config, subgraphs=subgraphs)

    async def aget_state_history(
        self,
        config: dict[str, Any],
        *,
        filter: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[StateSnapshot]:
        """`get_state_history` as an async iterator."""
        for snapshot in self.get_state_history(config, filter=filter, before=before,
                                               limit=limit):
            yield snapshot

    async def aupdate_state(
        self, config: dict[str, Any], values: Any, as_node: str | None = None
    ) -> dict[str, Any]:
        """`update_state`; see `aget_state`."""
        return self.update_state(config, values, as_node)

    def clear_cache(self, nodes: Sequence[str] | None = None) -> None:
        """Forget the cached writes of `nodes` (all by default), as LangGraph's does."""
        if self.cache is None:
            raise ValueError("No cache is set for this graph. Cannot clear cache.")
        self.cache.clear([(CACHE_NS_WRITES, self.nodes[n].cache_id, n)
                          for n in nodes or self.nodes if n in self.nodes])

    async def aclear_cache(self, nodes: Sequence[str] | None = None) -> None:
        self.clear_cache(nodes)

    def get_graph(self) -> GraphView:
        return GraphView.from_pregel(self)


def validate_update_keys(graph: Pregel, writes: list[Write]) -> None:
    """Reject writes to keys the state does not have: a clear error, nothing stored."""
    for chan, _ in writes:
        if chan not in graph.channel_specs:
            raise InvalidUpdateError(f"Unknown state key {chan!r} in update")


def _chunk_shape(stream_mode: str | Sequence[str], subgraphs: bool) -> Any:
    """How a chunk is yielded: LangGraph's shape for one mode or a list, with or without
    subgraph namespaces."""
    single = isinstance(stream_mode, str)
    if single:
        return (lambda c: (c[0], c[2])) if subgraphs else (lambda c: c[2])
    return (lambda c: c) if subgraphs else (lambda c: (c[1], c[2]))


def batch_calls(
    invoke: Callable[..., Any],
    inputs: Sequence[Any],
    config: dict[str, Any] | Sequence[dict[str, Any]] | None,
    *,
    return_exceptions: bool,
    default_workers: int,
    **kwargs: Any,
) -> list[Any]:
    """`invoke(input, config, **kwargs)` on each input in threads, outputs in input order:
    at most the config's `max_concurrency` at once, else `default_workers`; with
    `return_exceptions`, a failure is its output. `batch` of a local graph and of a
    cluster graph alike."""
    configs = _batch_configs(config, len(inputs))
    if not inputs:
        return []

    def one(pair: tuple[Any, dict[str, Any] | None]) -> Any:
        try:
            return invoke(pair[0], pair[1], **kwargs)
        except Exception as exc:
            if return_exceptions:
                return exc
            raise

    workers = (configs[0] or {}).get("max_concurrency") or default_workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, zip(inputs, configs, strict=True)))


def _batch_configs(
    config: dict[str, Any] | Sequence[dict[str, Any]] | None, count: int
) -> list[dict[str, Any] | None]:
    if isinstance(config, Sequence):
        if len(config) != count:
            raise ValueError("batch needs one config per input, or a single config")
        return list(config)
    return [config] * count
