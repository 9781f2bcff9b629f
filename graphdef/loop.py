"""The in-process run loop: load a checkpoint, run supersteps, save writes and checkpoints.

This is the I/O half of the engine; planning and applying writes live in `algo`. A run
is a generator of stream chunks `(namespace, mode, payload)`, so `invoke` and `stream`
share one code path; `arun` is the same run on an event loop, for the async API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import functools
import inspect
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from graphdef import algo, stream
from graphdef.algo import Node, NullTask, Task, Write
from graphdef.cache.base import BaseCache
from graphdef.cache.keys import CACHE_NS_WRITES, CacheKey, cache_key, identifier
from graphdef.channels import MISSING, STANDARD_CHANNELS, BaseChannel
from graphdef.checkpoint.base import (
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointTuple,
    empty_checkpoint,
    metadata_from_config,
)
from graphdef.constants import (
    ERROR,
    INPUT,
    INTERRUPT,
    NS_SEP,
    NULL_TASK_ID,
    PREVIOUS,
    PUSH,
    RESUME,
    RETURN,
)
from graphdef.errors import (
    EmptyInputError,
    GraphInterrupt,
    GraphRecursionError,
    revive_error,
)
from graphdef.executor import StepThreads, arun_step, run_step, step_threads
from graphdef.retry import arun_with_retry, run_with_retry
from graphdef.runtime import (
    RunScope,
    StreamSink,
    TaskRuntime,
    bind_runtime,
    current_runtime_or_none,
    reset_runtime,
)
from graphdef.store.base import BaseStore
from graphdef.stream_messages import StreamMessagesHandler
from graphdef.types import CachePolicy, Command, Interrupt, RetryPolicy
from graphdef.update import Resumable, resumable_interrupts

WRITES_IDX = {ERROR: -1, INTERRUPT: -3, RESUME: -4}

Chunk = tuple[tuple[str, ...], str, Any]


def error_record(exc: BaseException) -> dict[str, Any]:
    """What a failure is stored as: class name, message and plain args, never the object."""
    record: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if all(isinstance(a, str | int | float | bool) or a is None for a in exc.args):
        record["args"] = list(exc.args)
    return record


def command_writes(cmd: Command) -> list[Write]:
    """The writes a Command given as run input stands for, all owned by no task."""
    writes = algo.goto_writes(cmd)
    if cmd.resume is not None:
        writes.append((RESUME, cmd.resume))
    writes.extend(cmd.update_as_tuples())
    return writes


class LoopGraph(Protocol):
    """What a run needs of its compiled graph (a `graphdef.pregel.Pregel`), declared here so
    that the loop does not import the module that builds loops."""

    nodes: dict[str, Node]
    channel_specs: dict[str, BaseChannel]
    trigger_to_nodes: dict[str, list[str]]
    input_channels: str | list[str]
    output_channels: str | list[str]
    stream_channels: str | list[str]
    store: BaseStore | None
    cache: BaseCache[Any] | None
    cache_policy: CachePolicy[Any] | None
    context_schema: Any

    def map_input(self, value: Any) -> list[Write]: ...

    def task_update(self, task: Task, writes: list[Write], keys: str | list[str]) -> Any: ...

    def task_config(self, config: dict[str, Any], task: Task, step: int) -> dict[str, Any]: ...


class TaskCall(Protocol):
    """A `@task` function as the loop runs it (a `graphdef.func.TaskFunction`)."""

    name: str
    func: Callable[..., Any]
    retry_policy: Sequence[RetryPolicy]
    cache_policy: CachePolicy[Any] | None


class RunLoop:
    """One run of a compiled graph on one thread and namespace.

    In-process, `run()` drives it. A distributed driver or worker drives it from outside,
    a piece at a time: `load`, `enter` or `apply_null_writes`, then `prepare_step`,
    `run_planned`, `finish_step` and `close`; a worker runs one task with `plan_task` and
    `run_planned`. `resuming` and `resume_map` carry a resume across those processes.
    """

    def __init__(
        self,
        graph: LoopGraph,
        input: Any,
        config: dict[str, Any],
        *,
        checkpointer: BaseCheckpointSaver | None,
        durability: str,
        interrupt_before: Sequence[str] | str,
        interrupt_after: Sequence[str] | str,
        stream_modes: Sequence[str],
        stream_subgraphs: bool = False,
        output_keys: str | list[str] | None = None,
        sink: StreamSink | None = None,
        resuming: bool | None = None,
        resume_map: Mapping[str, Any] | None = None,
        store: Any = MISSING,
        messages: StreamMessagesHandler | None = None,
        context: Any = None,
    ) -> None:
        """`sink`: where a subgraph's chunks go, to the run streaming it with `subgraphs`.
        `resuming`: whether this run takes up a paused state; None lets its input decide
        (no input or a Command resumes). `resume_map`: answers to interrupts by id.
        `store`: what nodes get as `store`; by default the graph's, so a worker that loads
        a graph compiled with a store gives it to its nodes.
        `messages`: the `messages` stream handler of the run this one is a subgraph of.
        `context`: the run's `context=`, coerced to the graph's `context_schema`, for
        `Runtime.context`."""
        self.store: BaseStore | None = graph.store if store is MISSING else store
        self.context = coerce_context(graph.context_schema, context)
        self.graph = graph
        self.input = input
        self.config = config
        self.conf: dict[str, Any] = config.setdefault("configurable", {})
        self.checkpointer = checkpointer
        self.durability = durability
        self.interrupt_before = interrupt_before
        self.interrupt_after = interrupt_after
        self.stream_modes = stream_modes
        self.output_keys = graph.stream_channels if output_keys is None else output_keys
        self.output_key_set = frozenset(
            [self.output_keys] if isinstance(self.output_keys, str) else self.output_keys
        )
        self.ns: str = self.conf.get("checkpoint_ns", "")
        self.run_metadata = metadata_from_config(config)
        self.is_nested = bool(self.ns)
        self.parent_runtime = current_runtime_or_none() if self.is_nested else None
        self.chunks: deque[Chunk] = deque()
        self.sink = sink
        # Subgraphs stream into the run that asked for them, however deep they are.
        self.child_sink: StreamSink | None = sink
        if sink is None and stream_subgraphs:
            self.child_sink = self._collect
        if messages is None and sink is None and "messages" in stream_modes:
            messages = StreamMessagesHandler(self._emit_at, stream_subgraphs)
        self.messages = messages
        # Chunks that come while tasks run (tokens, custom writes, subgraphs' chunks) are
        # yielded as they come rather than after the step: `_wake` tells the consumer.
        self.live = sink is None and (
            stream_subgraphs or "messages" in stream_modes or "custom" in stream_modes
        )
        self._wake: Callable[[], None] | None = None
        # Told just before and just after a planned task's writes are saved (see
        # `SaveListener`): a distributed worker streams a task's closing chunks only once
        # its result is safe.
        self.save_listener: SaveListener | None = None
        self.wants_tasks = "tasks" in stream_modes or "debug" in stream_modes
        self.wants_checkpoints = "checkpoints" in stream_modes or "debug" in stream_modes
        self.resuming = resuming
        self.resume_map = resume_map
        self.tasks: dict[str, Task] = {}
        self.output: Any = None
        self.status = "pending"
        self.interrupts: list[Interrupt] = []
        # What `load` fills in; `loaded` tells `close` whether there is anything to save.
        self.loaded = False
        self.checkpoint_config: dict[str, Any] = {"configurable": {}}
        self.prev_checkpoint_config: dict[str, Any] | None = None
        self.checkpoint = Checkpoint(
            v=1, id="", ts="", channel_values={}, channel_versions={}, versions_seen={},
            updated_channels=None,
        )
        self.checkpoint_id_saved = ""
        self.metadata: dict[str, Any] = {}
        self.pending_writes: list[tuple[str, str, Any]] = []
        self.channels: dict[str, BaseChannel] = {}
        self.step = 0
        self.stop = 0
        self.previous_versions: dict[str, int] = {}
        # The checkpoint's values are the channels' at `previous_versions` once this loop
        # snapshotted them itself: from then on a put snapshots only what moved since.
        self.snapshotted = False
        # The channels that may hold a value an empty update would clear, when the loop can
        # tell (`algo.apply_writes`): those the last step returned; None after anything else.
        self.may_hold_values: set[str] | None = None
        self.tracks_values = False  # every channel is of a standard kind (set on load)
        self.updated_channels: set[str] | None = None
        self.is_replaying = False
        self.loaded_by_id = False
        self._put_futures: list[concurrent.futures.Future[Any]] = []
        self._saver_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.RLock()
        self._call_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._step_threads: StepThreads | None = None

    # ---- stream ---------------------------------------------------------------------------

    def emit(self, mode: str, payload: Any) -> None:
        """Queue a chunk, or hand it to the parent run when streaming subgraphs."""
        if mode not in self.stream_modes:
            return
        if self.sink is not None:
            self.sink(tuple(self.ns.split("|")), mode, payload)
        else:
            self._collect((), mode, payload)

    def _emit_at(self, ns: tuple[str, ...], mode: str, payload: Any) -> None:
        """Queue a chunk a task produced, under the namespace of the graph it runs in."""
        if self.sink is not None:
            self.sink(ns, mode, payload)
        else:
            self._collect(ns, mode, payload)

    def listen(self, wake: Callable[[], None] | None) -> None:
        """Have `wake` called (from whichever thread emitted) each time a chunk is queued,
        for a driver of the loop that ships chunks elsewhere (`drain_chunks`)."""
        self._wake = wake

    def drain_chunks(self) -> list[Chunk]:
        """Every chunk queued so far, in order, taken off the queue."""
        out: list[Chunk] = []
        while True:
            try:
                out.append(self.chunks.popleft())
            except IndexError:
                return out

    def _collect(self, ns: tuple[str, ...], mode: str, payload: Any) -> None:
        self.chunks.append((ns, mode, payload))
        if self._wake is not None:
            self._wake()

    def _emit_debuggable(self, mode: str, payload: dict[str, Any]) -> None:
        """Emit a `tasks` or `checkpoints` payload, and its `debug` wrapping if asked for."""
        self.emit(mode, payload)
        if "debug" in self.stream_modes:
            step = self.step - 1 if mode == "checkpoints" else self.step
            self.emit("debug", stream.debug(mode, step, payload))

    def _emit_checkpoint(self, tasks: Sequence[Task]) -> None:
        """The `checkpoints` payload of the checkpoint the step about to run starts from."""
        if not self.wants_checkpoints or self.checkpointer is None:
            return
        config = {"configurable": {**self.checkpoint_config["configurable"],
                                   "checkpoint_id": self.checkpoint["id"]}}
        self._emit_debuggable("checkpoints", stream.checkpoint(
            config, self.prev_checkpoint_config, self.channels, self.graph.stream_channels,
            self.metadata, tasks, self.pending_writes, self.output_keys,
        ))

    def _emit_task_result(self, task: Task, writes: list[Write],
                          error: BaseException | None = None) -> None:
        if self.wants_tasks and not task.node.hidden:
            self._emit_debuggable("tasks", stream.task_result(
                task, writes, self.graph.stream_channels, error))

    def _writer(self, task: Task) -> Callable[[Any], None]:
        """A task's `custom` stream writer: a no-op unless someone streams `custom`."""
        if "custom" not in self.stream_modes:
            return _drop
        ns = stream.namespace(task.checkpoint_ns)
        return lambda chunk: self._emit_at(ns, "custom", chunk)

    def _emit_values(self) -> None:
        if "values" in self.stream_modes:
            self.emit("values", algo.read_values(self.channels, self.output_keys))

    def _emit_updates(self, task: Task, writes: list[Write], cached: bool = False) -> None:
        """`cached`: the writes were not produced now (restored, or a cache hit), which
        LangGraph marks with `__metadata__`."""
        if task.node.hidden or not writes:
            return
        if writes[0][0] == INTERRUPT:
            interrupts = tuple(i for c, v in writes if c == INTERRUPT for i in v)
            self.emit("updates", {INTERRUPT: interrupts})
            if "values" in self.stream_modes:
                values = algo.read_values(self.channels, self.output_keys)
                if isinstance(values, dict):
                    self.emit("values", {**values, INTERRUPT: interrupts})
                else:
                    self.emit("values", {INTERRUPT: interrupts})
            return
        if writes[0][0] == ERROR or "updates" not in self.stream_modes:
            return
        payload = self.graph.task_update(task, writes, self.output_keys)
        update = {task.name: payload}
        if cached:
            update["__metadata__"] = {"cached": True}
        self.emit("updates", update)

    # ---- lifecycle ------------------------------------------------------------------------

    def run(self) -> Iterator[Chunk]:
        """Drive the run, yielding stream chunks as they are produced."""
        try:
            self.enter()
            yield from self._drain()
            while self.prepare_step():
                yield from self._drain()
                if self.live:
                    yield from self._run_tasks_live()
                else:
                    self.run_tasks()
                yield from self._drain()
                self.finish_step()
                yield from self._drain()
            self._check_steps_left()
        except GraphInterrupt as exc:
            self.close(exc)
            if self.is_nested:
                raise
            yield from self._drain()
            return
        except Exception as exc:
            self.close(exc)
            # What finished before the failure (a sibling task's update) is still shown.
            yield from self._drain()
            raise
        except BaseException as exc:
            self.close(exc)
            raise
        self.close(None)
        yield from self._drain()

    async def arun(self) -> AsyncIterator[Chunk]:
        """`run` on an event loop: async nodes are awaited, a step's tasks run concurrently
        on this loop, sync nodes in threads beside it."""
        try:
            self.enter()
            for chunk in self._drain():
                yield chunk
            while self.prepare_step():
                for chunk in self._drain():
                    yield chunk
                if self.live:
                    async for chunk in self._arun_tasks_live():
                        yield chunk
                else:
                    await self.arun_tasks()
                for chunk in self._drain():
                    yield chunk
                self.finish_step()
                for chunk in self._drain():
                    yield chunk
            self._check_steps_left()
        except GraphInterrupt as exc:
            self.close(exc)
            if self.is_nested:
                raise
            for chunk in self._drain():
                yield chunk
            return
        except Exception as exc:
            self.close(exc)
            for chunk in self._drain():
                yield chunk
            raise
        except BaseException as exc:
            self.close(exc)
            raise
        self.close(None)
        for chunk in self._drain():
            yield chunk

    def _check_steps_left(self) -> None:
        if self.status == "out_of_steps":
            raise GraphRecursionError(
                f"Recursion limit of {self.config['recursion_limit']} reached "
                "without hitting a stop condition. You can increase the limit by "
                "setting the `recursion_limit` config key."
            )

    def _drain(self) -> Iterator[Chunk]:
        while self.chunks:
            yield self.chunks.popleft()

    def _run_tasks_live(self) -> Iterator[Chunk]:
        """Run the step's tasks in a thread while this one yields their chunks as they come."""
        ready = threading.Event()
        done = threading.Event()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                self.run_tasks()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
                failure.append(exc)
            finally:
                done.set()
                ready.set()

        self._wake = ready.set
        worker = threading.Thread(
            target=contextvars.copy_context().run, args=(work,), name="graphdef-step",
            daemon=True,
        )
        worker.start()
        try:
            while not done.is_set():
                ready.wait()
                ready.clear()
                yield from self._drain()
        finally:
            worker.join()
            self._wake = None
        if failure:
            raise failure[0]

    async def _arun_tasks_live(self) -> AsyncIterator[Chunk]:
        """`_run_tasks_live` on an event loop; chunks may come from threads running sync
        nodes, so they wake the loop thread-safely."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop_thread = threading.get_ident()

        def wake() -> None:
            if threading.get_ident() == loop_thread:
                ready.set()
            else:
                loop.call_soon_threadsafe(ready.set)

        self._wake = wake
        step = asyncio.ensure_future(self.arun_tasks())
        try:
            while not step.done():
                waiter = asyncio.ensure_future(ready.wait())
                await asyncio.wait((step, waiter), return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                ready.clear()
                for chunk in self._drain():
                    yield chunk
        finally:
            if not step.done():
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)
            self._wake = None
        step.result()

    def enter(self) -> None:
        """Load the thread's checkpoint and take this run's input or command."""
        self.load()
        self._first()

    def load(self, checkpoint_id: str | None = None) -> None:
        """Load the checkpoint this run starts from: `checkpoint_id` (a worker loading the
        step it runs a task of: its nodes see the run's config, not the step's address),
        else the config's `checkpoint_id`, else the head."""
        saved: CheckpointTuple | None = None
        if checkpoint_id is None and not self.is_nested:
            checkpoint_id = self.conf.get("checkpoint_id")
        self.checkpoint_config = {
            "configurable": {
                "thread_id": self.conf.get("thread_id"),
                "checkpoint_ns": self.ns,
                **({"checkpoint_id": checkpoint_id} if checkpoint_id else {}),
            }
        }
        self.is_replaying = False
        if self.checkpointer is not None:
            saved = self.checkpointer.get_tuple(self.checkpoint_config)
        # Whether a newer checkpoint superseded an addressed one matters only when input is
        # taken (`_first`); a worker that loads to run one task skips the head lookup.
        self.loaded_by_id = saved is not None and (
            "checkpoint_id" in self.checkpoint_config["configurable"])
        if saved is None:
            saved = CheckpointTuple(
                self.checkpoint_config, empty_checkpoint(), {"step": -2}, None, []
            )
        else:
            self.checkpoint_config = saved.config
        self.prev_checkpoint_config = saved.parent_config
        self.checkpoint_id_saved = saved.checkpoint["id"]
        self.checkpoint = saved.checkpoint
        self.metadata = dict(saved.metadata)
        self.pending_writes = list(saved.pending_writes)
        self.channels = algo.channels_from_checkpoint(self.graph.channel_specs, self.checkpoint)
        self.may_hold_values = None
        self.tracks_values = all(type(c) in STANDARD_CHANNELS for c in self.channels.values())
        self.step = self.metadata["step"] + 1
        self.stop = self.step + self.config["recursion_limit"] + 1
        self.previous_versions = dict(self.checkpoint["channel_versions"])
        self.snapshotted = False
        stored_updated = self.checkpoint.get("updated_channels")
        self.updated_channels = set(stored_updated) if stored_updated else None
        self.loaded = True

    def _head_id(self) -> str | None:
        """The thread's newest checkpoint id."""
        assert self.checkpointer is not None
        return self.checkpointer.head(self.conf.get("thread_id"), self.ns)

    def _first(self) -> None:
        is_command = isinstance(self.input, Command)
        has_state = bool(self.checkpoint["channel_versions"])
        is_resuming = has_state and bool(
            (self.input is None or is_command) if self.resuming is None else self.resuming
        )
        addressed = "checkpoint_id" in self.checkpoint_config["configurable"] and bool(
            self.conf.get("checkpoint_id")
        )
        resuming_with_answer = (is_command and self.input.resume is not None) or bool(
            self.resuming
        )
        time_travel = addressed and not resuming_with_answer
        superseded = self.loaded_by_id and self._head_id() != self.checkpoint_id_saved
        self.is_replaying = time_travel or superseded
        if time_travel:
            self.pending_writes = [w for w in self.pending_writes if w[1] != RESUME]
        forks = is_resuming and time_travel and (
            self.metadata.get("source") not in ("update", "fork") or superseded
        )
        carried: list[tuple[str, str, Any]] = []
        if is_command:
            carried = self._accept_command(self.input, forks)
        self.apply_null_writes(carried)
        if is_resuming:
            self._mark_interrupt_seen()
            if forks:
                self.pending_writes = [w for w in self.pending_writes if w[1] != INTERRUPT]
                self._put_checkpoint({"source": "fork"})
            self._emit_values()
        elif self.input is not None and not is_command:
            input_writes = self.graph.map_input(self.input)
            if not input_writes:
                raise EmptyInputError(f"Received no input for {self.graph.input_channels}")
            discarded = algo.prepare_next_tasks(
                self.checkpoint, self.channels, self.graph.nodes, self.step,
                parent_ns=self.ns, updated_channels=self.updated_channels,
                trigger_to_nodes=self.graph.trigger_to_nodes,
            )
            self.updated_channels = algo.apply_writes(
                self.checkpoint, self.channels,
                [*discarded.values(), NullTask(INPUT, input_writes)],
                self.graph.trigger_to_nodes,
            )
            self.may_hold_values = None
            self._put_checkpoint({"source": "input"})
        elif not self.resuming:
            raise EmptyInputError(f"Received no input for {self.graph.input_channels}")
        self.resuming = is_resuming

    def _mark_interrupt_seen(self) -> None:
        """Record that the caller saw the paused state, so a breakpoint does not fire twice."""
        algo.mark_interrupt_seen(self.checkpoint, self.channels)

    def set_resuming(self, resuming: bool) -> None:
        """Take up the resume flag a run's start decided in another process. The start marked
        the paused state as seen only in its own memory: a resuming loop marks it again, or a
        static breakpoint would stop the resumed run a second time."""
        self.resuming = resuming
        if resuming:
            self._mark_interrupt_seen()

    def set_stop(self, stop: int) -> None:
        """Hold to the step limit the run's start set: a loop loaded at a later checkpoint
        would count the recursion limit from there."""
        self.stop = stop

    def apply_null_writes(self, carried: Sequence[tuple[str, str, Any]] = ()) -> None:
        """Apply writes that belong to no task (a Command's update, a resume) to the state."""
        null_writes = [w[1:] for w in (*self.pending_writes, *carried) if w[0] == NULL_TASK_ID]
        if null_writes:
            updated = algo.apply_writes(
                self.checkpoint, self.channels, [NullTask(INPUT, null_writes)],
                self.graph.trigger_to_nodes,
            )
            self.may_hold_values = None
            if self.updated_channels is not None:
                self.updated_channels |= updated

    def _accept_command(self, cmd: Command, forks: bool) -> list[tuple[str, str, Any]]:
        if cmd.resume is not None and self.checkpointer is None:
            raise RuntimeError("Cannot use Command(resume=...) without checkpointer")
        resume_is_map = False
        if cmd.resume is not None:
            resumable = self._resumable()
            pending = {i.id for i in resumable.interrupts}
            answers = algo.check_resume(cmd.resume, pending, self.conf.get("thread_id"))
            if answers is not None:
                resume_is_map = True
                self.resume_map = answers
        writes = [
            w for w in command_writes(cmd) if not (w[0] == RESUME and resume_is_map)
        ]
        if not writes and not resume_is_map:
            raise EmptyInputError("Received empty Command input")
        if forks:
            return [(NULL_TASK_ID, c, v) for c, v in writes]
        if writes:
            self.put_writes(NULL_TASK_ID, writes)
        return []

    # ---- supersteps -----------------------------------------------------------------------

    def prepare_step(self) -> bool:
        if self.step > self.stop:
            self.status = "out_of_steps"
            if self.wants_checkpoints:
                self._emit_checkpoint(list(self._plan().values()))
            return False
        self.tasks = self._plan()
        self._emit_checkpoint(list(self.tasks.values()))
        if not self.tasks:
            self.status = "done"
            return False
        if not self.is_replaying and self.pending_writes:
            statuses = algo.task_statuses(w for w in self.pending_writes if w[0] in self.tasks)
            for tid, status in statuses.items():
                if status.finished:
                    self.tasks[tid].writes.extend(status.output)
        if self.interrupt_before and algo.should_interrupt(
            self.checkpoint, self.interrupt_before, self.tasks.values()
        ):
            self.status = "interrupt_before"
            raise GraphInterrupt()
        if self.wants_tasks:
            for task in self.tasks.values():
                if not task.node.hidden:
                    self._emit_debuggable(
                        "tasks", stream.task_start(task, stream.config_metadata(self.config)))
        for task in self.tasks.values():
            if task.writes:
                self._emit_updates(task, task.writes, cached=True)
        self._match_cached_writes()
        return True

    def _plan(self) -> dict[str, Task]:
        return algo.prepare_next_tasks(
            self.checkpoint, self.channels, self.graph.nodes, self.step,
            parent_ns=self.ns, updated_channels=self.updated_channels,
            trigger_to_nodes=self.graph.trigger_to_nodes,
        )

    def _cache_key(self, task: Task) -> CacheKey | None:
        """Where a node's writes are cached: its function and name, and the key of its
        input; None when neither the node nor the graph has a cache policy."""
        policy = task.node.cache_policy or self.graph.cache_policy
        if self.graph.cache is None or policy is None or task.node.hidden:
            return None
        ns = (CACHE_NS_WRITES, task.node.cache_id, task.name)
        return cache_key(ns, policy.key_func, policy.ttl, task.input)

    def _call_cache_key(self, fn: TaskCall, args: tuple, kwargs: dict[str, Any]
                        ) -> CacheKey | None:
        """Where a `@task` call's result is cached: its function and its arguments' key."""
        policy = fn.cache_policy or self.graph.cache_policy
        if self.graph.cache is None or policy is None:
            return None
        return cache_key((CACHE_NS_WRITES, identifier(fn.func)), policy.key_func, policy.ttl,
                         *args, **kwargs)

    def _match_cached_writes(self) -> None:
        """Give tasks whose input was cached their cached writes: they do not run, and
        their writes are saved and streamed as a finished task's."""
        cache = self.graph.cache
        keys = {
            (key.ns, key.key): task
            for task in self.tasks.values()
            if not task.writes and (key := self._cache_key(task)) is not None
        }
        if cache is None or not keys:
            return
        for full_key, writes in cache.get(list(keys)).items():
            task = keys[full_key]
            task.writes.extend(writes)
            self.put_writes(task.id, task.writes, task, cached=True)

    def _cache_writes(self, key: CacheKey | None, writes: list[Write]) -> None:
        """Cache a finished task's writes under `key`, if it has one."""
        if key is not None and self.graph.cache is not None:
            self.graph.cache.set({(key.ns, key.key): (list(writes), key.ttl)})

    def run_tasks(self) -> None:
        todo = [t for t in self.tasks.values() if not t.writes]
        if not todo:
            return
        if len(todo) > 1 and self._step_threads is None:
            self._step_threads = StepThreads(step_threads(self.config.get("max_concurrency")))
        errors, interrupts = self.run_planned(todo, threads=self._step_threads)
        if errors:
            raise errors[0]
        if interrupts:
            raise GraphInterrupt(interrupts)

    async def arun_tasks(self) -> None:
        todo = [t for t in self.tasks.values() if not t.writes]
        if not todo:
            return
        errors, interrupts = await arun_step(
            todo, self.make_runtime, self.task_finished, self.channels,
            self.config.get("max_concurrency"))
        if errors:
            raise errors[0]
        if interrupts:
            raise GraphInterrupt(interrupts)

    def run_planned(
        self, tasks: Sequence[Task], before_save: Callable[[], None] | None = None,
        *, async_nodes: bool = False, threads: StepThreads | None = None,
    ) -> tuple[list[BaseException], list[Interrupt]]:
        """Run planned tasks side by side, saving each one's writes as it finishes; returns
        their failures and interrupts instead of raising them, for a caller that only
        reports them. `before_save` runs just before each save (a fault-injection point).

        `async_nodes`: the caller (a worker, a driver) has no event loop of its own to await
        async nodes and routes on, so a step with any runs on one made for it. The sync API
        leaves it off and refuses them, as LangGraph does. `threads`: for sync tasks, kept by
        a caller that runs many steps."""
        save = self.task_finished
        if before_save is not None:

            def save(task: Task, exc: BaseException | None) -> None:
                before_save()
                self.task_finished(task, exc)

        if async_nodes and any(t.node.needs_event_loop() for t in tasks):
            return asyncio.run(arun_step(tasks, self.make_runtime, save, self.channels))
        return run_step(tasks, self.make_runtime, save, self.channels, threads)

    def plan_task(self, task_id: str, path: Sequence[Any] | None = None) -> Task | None:
        """Plan only the step's task `task_id` and make it the loop's one task; None when the
        loaded checkpoint does not plan it. `path` finds it without planning its siblings."""
        if path is not None:
            task = algo.prepare_task(
                self.checkpoint, self.channels, self.graph.nodes, self.step, (path[0], path[1])
            )
        else:
            task = algo.prepare_next_tasks(
                self.checkpoint, self.channels, self.graph.nodes, self.step,
                updated_channels=self.updated_channels,
                trigger_to_nodes=self.graph.trigger_to_nodes,
            ).get(task_id)
        if task is None or task.id != task_id:
            return None
        self.tasks = {task.id: task}
        return task

    def task_status(self, task_id: str) -> algo.TaskStatus | None:
        """What a task's saved writes say (finished, paused, failed); None if it left none."""
        return algo.task_statuses(w for w in self.pending_writes if w[0] == task_id).get(task_id)

    def _resumable(self, history: BaseCheckpointSaver | None = None) -> Resumable:
        saver = history or self.checkpointer
        assert saver is not None
        loaded = CheckpointTuple(self.checkpoint_config, self.checkpoint, self.metadata,
                                 self.prev_checkpoint_config, self.pending_writes)
        return resumable_interrupts(self.graph, saver, loaded)

    def paused_before(self, task_id: str, history: BaseCheckpointSaver | None = None) -> bool:
        """Whether the step's task `task_id` paused before: on its own saved interrupt, or
        as the re-run of a node that paused before `update_state` edited the state ("edit,
        then approve"). Such a task takes an answer given without an interrupt id.
        `history`: the saver to read earlier checkpoints with, when the loop's own shows
        only this task's writes (a worker's)."""
        status = self.task_status(task_id)
        if status is not None and status.interrupts:
            return True
        if history is None and self.checkpointer is None:
            return False
        return task_id in self._resumable(history).reruns

    def replay_task_chunks(self, task: Task, status: algo.TaskStatus) -> None:
        """Emit the chunks a task's saving emitted (its `updates`, its `tasks` result) from
        what it saved: for a process that finds the task already ran and must stream what
        the process that ran it may have died before streaming."""
        if status.error is not None:
            self._emit_task_result(task, [], revive_error(status.error))
            return
        writes = list(status.output) if status.finished else [(INTERRUPT, status.interrupts)]
        self._emit_updates(task, writes)
        self._emit_task_result(task, writes)

    def drop_null_resume(self) -> None:
        """Forget a resume answer given without an interrupt id: a task that runs on its own
        loop (a worker's) and did not pause before must not take the one meant for the task
        that did."""
        self.pending_writes = [
            w for w in self.pending_writes if not (w[0] == NULL_TASK_ID and w[1] == RESUME)
        ]

    def make_runtime(self, task: Task) -> TaskRuntime:
        resume: list[Any] = []
        for tid, chan, value in self.pending_writes:
            if tid == task.id and chan == RESUME:
                resume = list(value) if isinstance(value, list) else [value]
        if self.resume_map:
            next_id = algo.interrupt_id(task.checkpoint_ns, len(resume))
            if next_id in self.resume_map:
                resume.append(self.resume_map[next_id])
        previous = self.channels.get(PREVIOUS)
        config = self.graph.task_config(self.config, task, self.step)
        # The subgraph a task runs records which checkpoint of each graph above it it ran
        # under (its checkpoints' `parents`), as LangGraph's `checkpoint_map`.
        config["configurable"]["checkpoint_map"] = {
            **(self.conf.get("checkpoint_map") or {}), self.ns: self.checkpoint["id"],
        }
        if self.messages is not None:
            config["callbacks"] = _with_handler(config.get("callbacks"), self.messages)
        return TaskRuntime(
            task=task,
            config=config,
            resume=resume,
            take_null_resume=self._take_null_resume,
            send=task.writes.extend,
            call=functools.partial(self.run_call, task),
            scope=RunScope(
                checkpointer=self.checkpointer, durability=self.durability,
                sink=self.child_sink, stream_modes=self.stream_modes,
                resuming=self.resuming, resume_map=self.resume_map, store=self.store,
                context=self.context,
                messages=self.messages,
            ),
            writer=self._writer(task),
            checkpoint_id=self.checkpoint["id"],
            previous=previous.get() if previous is not None and previous.is_available()
            else None,
            remaining_steps=self.stop - self.step,
        )

    def _take_null_resume(self) -> Any:
        with self._lock:
            for w in self.pending_writes:
                if w[0] == NULL_TASK_ID and w[1] == RESUME:
                    self.pending_writes.remove(w)
                    return w[2]
        if self.parent_runtime is not None:
            return self.parent_runtime.take_null_resume()
        return MISSING

    def task_finished(self, task: Task, exc: BaseException | None) -> None:
        """Save a task's writes the moment it finishes: the memo that spares it a re-run."""
        if exc is None:
            task.writes[:] = algo.finished_marker(task.writes)
            self.put_writes(task.id, task.writes, task)
            self._emit_task_result(task, task.writes)
            self._cache_writes(self._cache_key(task), task.writes)
        elif isinstance(exc, GraphInterrupt):
            if exc.interrupts:
                writes: list[Write] = [(INTERRUPT, list(exc.interrupts))]
                writes.extend(w for w in task.writes if w[0] == RESUME)
                self.put_writes(task.id, writes, task)
                self._emit_task_result(task, writes)
        else:
            self.put_writes(task.id, [(ERROR, error_record(exc))], task)
            self._emit_task_result(task, [], exc)

    def run_call(
        self, parent: Task, fn: TaskCall, args: tuple, kwargs: dict[str, Any]
    ) -> Future[Any]:
        """Run one `@task` call, or hand back its saved result if it already finished."""
        runtime = current_runtime_or_none()
        if runtime is None:
            raise RuntimeError("A task was called outside of a running graph")
        idx = next(runtime.call_counter)
        call_id = algo.task_id(
            self.checkpoint["id"], parent.checkpoint_ns, str(self.step), fn.name, PUSH,
            parent.id, str(idx),
        )
        try:
            aio_loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            aio_loop = None
        for tid, chan, value in self.pending_writes:
            if tid == call_id and chan == RETURN:
                done: Any = Future() if aio_loop is None else aio_loop.create_future()
                done.set_result(value)
                return done  # type: ignore[no-any-return]
        call = Task(
            id=call_id, name=fn.name, path=(PUSH, parent.path, idx, parent.id), input=args,
            triggers=(PUSH,), checkpoint_ns=f"{parent.checkpoint_ns}{NS_SEP}{fn.name}:{call_id}",
            node=Node(name=fn.name, triggers=[], reads=[], bound=lambda v, c: None),
        )
        key = self._call_cache_key(fn, args, kwargs)
        if key is not None and self.graph.cache is not None:
            hit = self.graph.cache.get([(key.ns, key.key)]).get((key.ns, key.key))
            if hit is not None:
                self.put_writes(call_id, hit, call, cached=True)
                found: Any = Future() if aio_loop is None else aio_loop.create_future()
                found.set_result(dict(hit).get(RETURN))
                return found  # type: ignore[no-any-return]
        call_runtime = TaskRuntime(
            task=call, config=runtime.config, resume=[],
            take_null_resume=runtime.take_null_resume, send=call.writes.extend,
            call=functools.partial(self.run_call, call), scope=runtime.scope,
            writer=self._writer(call),
            checkpoint_id=runtime.checkpoint_id, previous=runtime.previous,
        )
        if self.wants_tasks:
            self._emit_debuggable("tasks", stream.task_start(
                dataclasses.replace(call, input=(args, kwargs)), {}))
        if aio_loop is not None:
            return asyncio.ensure_future(  # type: ignore[return-value]
                self._arun_call(call, call_runtime, fn, args, kwargs, key))
        future: Future[Any] = Future()

        def run() -> None:
            token = bind_runtime(call_runtime)
            try:
                result = run_with_retry(lambda: fn.func(*args, **kwargs), fn.retry_policy)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller via the future
                future.set_exception(exc)
                return
            finally:
                reset_runtime(token)
            self.put_writes(call_id, [(RETURN, result)], call)
            self._emit_task_result(call, [(RETURN, result)])
            self._cache_writes(key, [(RETURN, result)])
            future.set_result(result)

        self.submit_call(run)
        return future

    async def _arun_call(
        self, call: Task, runtime: TaskRuntime, fn: TaskCall, args: tuple,
        kwargs: dict[str, Any], key: CacheKey | None,
    ) -> Any:
        """A `@task` call made on an event loop: awaited there if async, else in a thread;
        its result is cached under `key`, if it has one."""
        token = bind_runtime(runtime)
        try:
            if inspect.iscoroutinefunction(fn.func):
                result = await arun_with_retry(lambda: fn.func(*args, **kwargs), fn.retry_policy)
            else:
                context = contextvars.copy_context()
                result = await asyncio.get_running_loop().run_in_executor(
                    None, context.run, run_with_retry,
                    lambda: fn.func(*args, **kwargs), fn.retry_policy,
                )
        finally:
            reset_runtime(token)
        self.put_writes(call.id, [(RETURN, result)], call)
        self._emit_task_result(call, [(RETURN, result)])
        self._cache_writes(key, [(RETURN, result)])
        return result

    def submit_call(self, run: Callable[[], None]) -> None:
        """Run a `@task` call beside its caller, which waits on the call's future."""
        with self._lock:
            if self._call_pool is None:
                self._call_pool = concurrent.futures.ThreadPoolExecutor(16, "graphdef-task")
            self._call_pool.submit(contextvars.copy_context().run, run)

    def finish_step(self) -> None:
        tasks = list(self.tasks.values())
        self.updated_channels = algo.apply_writes(
            self.checkpoint, self.channels, tasks, self.graph.trigger_to_nodes,
            may_hold_values=self.may_hold_values,
        )
        self.may_hold_values = set(self.updated_channels) if (
            self.tracks_values and any(t.triggers for t in tasks)) else None
        if not self.updated_channels.isdisjoint(self.output_key_set):
            self._emit_values()
        self.pending_writes.clear()
        self.is_replaying = False
        self._put_checkpoint({"source": "loop"})
        if self.interrupt_after and algo.should_interrupt(
            self.checkpoint, self.interrupt_after, self.tasks.values()
        ):
            self.status = "interrupt_after"
            # No step runs from this checkpoint, so stream it here.
            if self.wants_checkpoints:
                self._emit_checkpoint(list(self._plan().values()))
            raise GraphInterrupt()
        self.resuming = None

    # ---- persistence ----------------------------------------------------------------------

    def put_writes(self, task_id: str, writes: list[Write], task: Task | None = None,
                   *, cached: bool = False) -> None:
        """`cached`: the writes came from the cache, not from running the task."""
        with self._lock:
            self._put_writes(task_id, writes, task, cached)

    def _put_writes(self, task_id: str, writes: list[Write], task: Task | None,
                    cached: bool = False) -> None:
        if all(c in WRITES_IDX for c, _ in writes):
            writes = list({c: (c, v) for c, v in writes}.values())
        if task_id == NULL_TASK_ID:
            self.pending_writes = [
                w for w in self.pending_writes if w[0] != task_id or w[1] not in WRITES_IDX
            ]
            writes = sorted(writes, key=lambda w: w[0] in WRITES_IDX)
            to_save = [w[1:] for w in self.pending_writes if w[0] == task_id] + list(writes)
        else:
            self.pending_writes = [w for w in self.pending_writes if w[0] != task_id]
            to_save = list(writes)
        self.pending_writes.extend((task_id, c, v) for c, v in writes)
        listener = self.save_listener if task_id in self.tasks else None
        if listener is not None:
            listener.saving(task_id)
        if self.durability != "exit" and self.checkpointer is not None:
            self.checkpointer.put_writes(
                self._writes_config(), to_save, task_id, task.path_key if task else ""
            )
        if listener is not None:
            listener.saved(task_id)
        if task is not None:
            self._emit_updates(task, list(writes), cached=cached)

    def _writes_config(self) -> dict[str, Any]:
        conf = dict(self.checkpoint_config["configurable"])
        conf.update(checkpoint_ns=self.ns, checkpoint_id=self.checkpoint["id"])
        return {"configurable": conf}

    def _put_checkpoint(self, metadata: dict[str, Any]) -> None:
        exiting = metadata is self.metadata
        if exiting and self.checkpoint["id"] == self.checkpoint_id_saved:
            return
        if not exiting:
            metadata["step"] = self.step
            # A subgraph's checkpoint names the checkpoints of the graphs above it that its
            # step runs under, by namespace ("" for the root).
            metadata["parents"] = dict(self.conf.get("checkpoint_map") or {}) if (
                self.is_nested) else {}
            self.metadata = {**metadata, **{k: v for k, v in self.run_metadata.items()
                                            if k not in metadata}}
        do_checkpoint = self.checkpointer is not None and (exiting or self.durability != "exit")
        versions = self.checkpoint["channel_versions"]
        # What moved since the last put: what it stores, and all its snapshot reads again.
        new_versions = {k: v for k, v in versions.items()
                        if v != self.previous_versions.get(k)} if do_checkpoint else {}
        self.checkpoint = algo.create_checkpoint(
            self.checkpoint,
            self.channels if do_checkpoint else None,
            self.updated_channels,
            checkpoint_id=self.checkpoint["id"] if exiting else None,
            changed=new_versions if self.snapshotted else None,
        )
        if do_checkpoint:
            assert self.checkpointer is not None
            self.snapshotted = True
            self.prev_checkpoint_config = (
                self.checkpoint_config
                if self.checkpoint_config["configurable"].get("checkpoint_id")
                else None
            )
            self.previous_versions = dict(versions)
            parent_config = {
                "configurable": {
                    **self.checkpoint_config["configurable"],
                    "checkpoint_ns": self.ns,
                }
            }
            self._save(parent_config, self.checkpoint, dict(self.metadata), new_versions)
            self.checkpoint_config = {
                "configurable": {**parent_config["configurable"],
                                 "checkpoint_id": self.checkpoint["id"]}
            }
        if not exiting:
            self.step += 1

    def _save(
        self, config: dict[str, Any], checkpoint: Checkpoint, metadata: dict[str, Any],
        new_versions: dict[str, int],
    ) -> None:
        """Write a checkpoint now (`sync`) or behind the next superstep (`async`), in order."""
        assert self.checkpointer is not None
        if self.durability != "async":
            self.checkpointer.put(config, checkpoint, metadata, new_versions)
            return
        # Saved behind the next superstep, which mutates versions in place: save a copy.
        ts = checkpoint["ts"]
        checkpoint = algo.create_checkpoint(
            checkpoint, None, checkpoint["updated_channels"], checkpoint_id=checkpoint["id"]
        )
        checkpoint["ts"] = ts
        if self._saver_pool is None:
            self._saver_pool = concurrent.futures.ThreadPoolExecutor(1, "graphdef-saver")
        self._put_futures.append(
            self._saver_pool.submit(self.checkpointer.put, config, checkpoint, metadata,
                                    new_versions)
        )

    def _flush_saves(self) -> None:
        futures, self._put_futures = self._put_futures, []
        try:
            for fut in futures:
                fut.result()
        finally:
            if self._saver_pool is not None:
                self._saver_pool.shutdown(wait=True)
                self._saver_pool = None

    def close(self, exc: BaseException | None) -> None:
        if not self.loaded:
            return
        try:
            if self.durability == "exit" and self.checkpointer is not None and (
                not self.is_nested or exc is not None
            ):
                self._put_checkpoint(self.metadata)
                self._put_exit_writes()
        finally:
            self._flush_saves()
            if self._call_pool is not None:
                self._call_pool.shutdown(wait=True)
            if self._step_threads is not None:
                self._step_threads.close()
        if isinstance(exc, GraphInterrupt) and not self.is_nested:
            self._finish_interrupted(exc)
        elif exc is None:
            self.output = algo.read_values(self.channels, self.graph.output_channels)

    def _put_exit_writes(self) -> None:
        assert self.checkpointer is not None
        by_task: dict[str, list[Write]] = {}
        for tid, chan, value in self.pending_writes:
            by_task.setdefault(tid, []).append((chan, value))
        for tid, writes in by_task.items():
            task = self.tasks.get(tid)
            self.checkpointer.put_writes(
                self._writes_config(), writes, tid, task.path_key if task else ""
            )

    def _finish_interrupted(self, exc: GraphInterrupt) -> None:
        """Show the state with the paused step's finished tasks applied, as LangGraph does."""
        interrupts: tuple[Interrupt, ...] = tuple(exc.interrupts)
        shown = self.channels
        finished = [t for t in self.tasks.values() if t.writes and not _is_control(t.writes)]
        if self.pending_writes and finished:
            shown = {k: c.copy() for k, c in self.channels.items()}
            updated = algo.apply_writes(
                algo.create_checkpoint(self.checkpoint, None, None),
                shown, finished, self.graph.trigger_to_nodes,
            )
            if not updated.isdisjoint(self.output_key_set):
                self.emit("values", algo.read_values(shown, self.output_keys))
        if not interrupts:
            self.emit("updates", {INTERRUPT: ()})
        values = algo.read_values(shown, self.graph.output_channels)
        self.interrupts = algo.pending_interrupts(self.pending_writes) if interrupts else []
        if self.interrupts:
            values = {**(values if isinstance(values, dict) else {}),
                      INTERRUPT: list(self.interrupts)}
        self.output = values


class SaveListener(Protocol):
    """Told around the save of a planned task's writes (its memo)."""

    def saving(self, task_id: str) -> None: ...

    def saved(self, task_id: str) -> None: ...


def coerce_context(schema: Any, context: Any) -> Any:
    """A `context=` dict made into the graph's dataclass or pydantic `context_schema`, as
    LangGraph does; anything else is passed as it is."""
    if context is None or schema is None or not isinstance(context, dict):
        return context
    if dataclasses.is_dataclass(schema) or hasattr(schema, "model_fields"):
        return schema(**context)
    return context


def _is_control(writes: list[Write]) -> bool:
    return all(c in (INTERRUPT, RESUME, ERROR, RETURN, PUSH) for c, _ in writes)


def _drop(chunk: Any) -> None:
    """The `custom` writer of a run nobody streams `custom` from."""


def _with_handler(callbacks: Any, handler: Any) -> Any:
    """A node's callbacks with the run's `messages` handler added: a list as LangGraph
    users pass one, or LangChain's callback manager."""
    if callbacks is None:
        return [handler]
    if isinstance(callbacks, list):
        # A subgraph's node config comes from its parent node's, which has it already.
        return callbacks if handler in callbacks else [*callbacks, handler]
    if handler in callbacks.handlers:
        return callbacks
    manager = callbacks.copy()
    manager.add_handler(handler, inherit=True)
    return manager
