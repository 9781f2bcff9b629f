"""StateGraph: LangGraph's builder, compiled to graphdef's nodes and channels."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Hashable, Sequence
from typing import Any, get_type_hints

from graphdef import serde
from graphdef.algo import Node, TaskContext, Write, goto_writes
from graphdef.cache.base import BaseCache
from graphdef.cache.keys import identifier
from graphdef.channels import (
    BaseChannel,
    BinaryOperatorAggregate,
    EphemeralValue,
    LastValue,
    LastValueAfterFinish,
    NamedBarrierValue,
    NamedBarrierValueAfterFinish,
    Topic,
)
from graphdef.checkpoint.base import BaseCheckpointSaver
from graphdef.constants import BRANCH_TO, END, START, TASKS
from graphdef.errors import InvalidUpdateError, ParentCommand
from graphdef.inject import accepts_param, is_async_callable, with_injected
from graphdef.params import deprecated, refuse
from graphdef.pregel import Pregel
from graphdef.runtime import current_runtime, get_config
from graphdef.store.base import BaseStore
from graphdef.types import CachePolicy, Command, RetryPolicy, Send


def state_keys(schema: Any) -> dict[str, Any]:
    """Key -> annotation for a TypedDict, dataclass or pydantic model state schema."""
    if schema is None:
        return {}
    try:
        hints = get_type_hints(schema, include_extras=True)
    except Exception:
        hints = dict(getattr(schema, "__annotations__", {}))
    return {k: v for k, v in hints.items() if not k.startswith("_")}


def _reducer_channel(key: str, annotation: Any) -> BaseChannel:
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        for extra in extras:
            if callable(extra) and not isinstance(extra, type):
                return BinaryOperatorAggregate(key, extra, _initial_factory(base))
    return LastValue(key)


def _initial_factory(base: Any) -> Callable[[], Any]:
    origin = typing.get_origin(base) or base
    if origin in (Sequence, typing.Sequence) or origin is list:
        return list
    if isinstance(origin, type):
        return origin
    return list


def no_sync_function(name: str) -> Callable[..., Any]:
    """What a sync run calls in place of an async-only function: LangGraph's TypeError."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f'No synchronous function provided to "{name}".\nEither initialize with a '
            "synchronous function or invoke via the async API (ainvoke, astream, etc.)"
        )

    refuse.__name__ = name
    return refuse


def _pass_input(value: Any, config: dict[str, Any]) -> Any:
    return value


async def _apass_input(value: Any, config: dict[str, Any]) -> Any:
    """The start node under the async API: awaited on the loop, since a hop to a thread for
    a passthrough costs more than the node (and its executor more than a short run)."""
    return value


def bind_action(action: Callable[..., Any]) -> Callable[[Any, dict[str, Any]], Any]:
    """A node function called as the loop calls nodes, `(input, config)`, with the
    optional parameters it declares (`config`, `writer`) filled in."""
    wants_config = accepts_param(action, "config")
    wants_writer = accepts_param(action, "writer")
    if not (wants_config or wants_writer):
        return lambda value, config: action(value)

    def call(value: Any, config: dict[str, Any]) -> Any:
        kwargs: dict[str, Any] = {}
        if wants_config:
            kwargs["config"] = config
        if wants_writer:
            kwargs["writer"] = current_runtime().writer
        return action(value, **kwargs)

    return call


def find_subgraph(action: Any) -> Pregel | None:
    """The graph a node runs, if any: the node itself, or one its function closes over.

    Found so that `get_state(subgraphs=True)` can show a subgraph called inside a node.
    """
    if isinstance(action, Pregel):
        return action
    func = getattr(action, "__wrapped__", action)
    code = getattr(func, "__code__", None)
    if code is None:
        return None
    candidates = []
    for cell in getattr(func, "__closure__", None) or ():
        try:
            candidates.append(cell.cell_contents)
        except ValueError:
            continue
    namespace = getattr(func, "__globals__", {})
    candidates.extend(namespace[n] for n in code.co_names if n in namespace)
    return next(
        (c for c in candidates if isinstance(c, Pregel) and c.checkpointer is not False), None
    )


def _coerce(schema: Any) -> Callable[[Any], Any] | None:
    if dataclasses.is_dataclass(schema) or hasattr(schema, "model_fields"):
        return lambda value: schema(**value)
    return None


@dataclasses.dataclass
class _NodeSpec:
    action: Any
    retry_policy: Sequence[RetryPolicy]
    input_schema: Any
    queue: str | None
    metadata: dict[str, Any] | None
    ends: tuple[str, ...] | dict[str, str] = ()
    cache_policy: CachePolicy[Any] | None = None
    defer: bool = False


def _hinted_schema_and_ends(action: Any) -> tuple[Any, tuple[str, ...]]:
    """What LangGraph reads from a node's annotations: the first parameter's state class
    (a node's private input schema) and `-> Command[Literal[...]]` destinations."""
    if inspect.isfunction(action) or inspect.ismethod(action):
        target = action
    elif inspect.ismethod(getattr(action, "__call__", None)):  # noqa: B004 - a callable object
        target = action.__call__
    else:
        return None, ()
    try:
        hints = get_type_hints(target)
        params = list(inspect.signature(target).parameters)
    except (NameError, TypeError, ValueError):
        return None, ()
    schema = hints.get(params[0]) if params else None
    if not (isinstance(schema, type) and state_keys(schema)):
        schema = None
    ends: tuple[str, ...] = ()
    rtn = hints.get("return")
    candidates = (
        typing.get_args(rtn)
        if typing.get_origin(rtn) in (typing.Union, types.UnionType)
        else (rtn,)
    )
    for candidate in candidates:
        args = typing.get_args(candidate) if typing.get_origin(candidate) is Command else ()
        if args and typing.get_origin(args[0]) is typing.Literal:
            ends = tuple(typing.get_args(args[0]))
            break
    return schema, ends


@dataclasses.dataclass
class _Branch:
    path: Callable[..., Any]
    path_map: dict[Hashable, str] | None


class StateGraph:
    """Nodes that read and update a shared state, connected by edges (LangGraph's API)."""

    def __init__(
        self,
        state_schema: Any,
        context_schema: Any = None,
        *,
        input_schema: Any = None,
        output_schema: Any = None,
        **kwargs: Any,
    ) -> None:
        """`context_schema`: the type of `invoke(..., context=...)`, which nodes read as
        `runtime.context`; a dict given as context is made into it if it is a dataclass
        or pydantic model. `config_schema`, `input`, `output`: LangGraph's deprecated names."""
        given = deprecated("StateGraph", kwargs, {"config_schema": "context_schema",
                                                  "input": "input_schema",
                                                  "output": "output_schema"},
                           {"context_schema": context_schema, "input_schema": input_schema,
                            "output_schema": output_schema})
        context_schema, input_schema = given["context_schema"], given["input_schema"]
        output_schema = given["output_schema"]
        self.state_schema = state_schema
        self.context_schema = context_schema
        self.input_schema = input_schema or state_schema
        self.output_schema = output_schema or state_schema
        self.nodes: dict[str, _NodeSpec] = {}
        self.edges: set[tuple[str, str]] = set()
        self.waiting_edges: list[tuple[tuple[str, ...], str]] = []
        self.branches: dict[str, list[_Branch]] = {}
        self.schemas: dict[str, Any] = {}
        self.compiled = False

    # ---- building -------------------------------------------------------------------------

    def add_node(
        self,
        node: str | Callable[..., Any],
        action: Any = None,
        *,
        defer: bool = False,
        metadata: dict[str, Any] | None = None,
        input_schema: Any = None,
        retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
        cache_policy: CachePolicy[Any] | None = None,
        error_handler: Any = None,
        destinations: Any = None,
        timeout: Any = None,
        trace_policy: Any = None,
        queue: str | None = None,
        **kwargs: Any,
    ) -> StateGraph:
        """LangGraph's `add_node`; `queue` (ours) routes the node to a Celery queue.

        `defer`: run the node once, after all other pending work (a fan-in after a `Send`
        fan-out runs once, not per branch). `cache_policy`: with `compile(cache=...)`, a
        later run with an equal input reuses the node's cached writes instead of running
        it. `error_handler`, `timeout` and `trace_policy` raise NotImplementedFeatureError.
        """
        refuse("add_node", error_handler=error_handler, timeout=timeout,
               trace_policy=trace_policy)
        given = deprecated("add_node", kwargs, {"retry": "retry_policy", "input": "input_schema"},
                           {"retry_policy": retry_policy, "input_schema": input_schema})
        retry_policy, input_schema = given["retry_policy"], given["input_schema"]
        if not isinstance(node, str):
            action = node
            node = getattr(action, "name", None) or getattr(action, "__name__", None)
            if not isinstance(node, str):
                raise ValueError("Node name could not be inferred; pass it as the first argument")
        if action is None:
            raise ValueError(f"Node {node!r} needs an action")
        if node in self.nodes:
            raise ValueError(f"Node `{node}` already present.")
        if node in (START, END):
            raise ValueError(f"Node `{node}` is reserved.")
        for ch in ("|", ":"):
            if ch in node:
                raise ValueError(f"'{ch}' is a reserved character, not allowed in node names.")
        if isinstance(retry_policy, RetryPolicy):
            policies: Sequence[RetryPolicy] = (retry_policy,)
        else:
            policies = tuple(retry_policy or ())
        hinted_schema, ends = _hinted_schema_and_ends(action)
        if destinations is not None:
            ends = dict(destinations) if isinstance(destinations, dict) else tuple(destinations)
        self.nodes[node] = _NodeSpec(
            action, policies, input_schema or hinted_schema, queue, metadata, ends,
            cache_policy, defer,
        )
        return self

    def add_edge(self, start_key: str | list[str], end_key: str) -> StateGraph:
        if isinstance(start_key, str):
            if start_key == END:
                raise ValueError("END cannot be a start node")
            if end_key == START:
                raise ValueError("START cannot be an end node")
            self.edges.add((start_key, end_key))
        else:
            for start in start_key:
                if start == END:
                    raise ValueError("END cannot be a start node")
            self.waiting_edges.append((tuple(start_key), end_key))
        return self

    def add_conditional_edges(
        self,
        source: str,
        path: Callable[..., Any],
        path_map: dict[Hashable, str] | list[str] | None = None,
    ) -> StateGraph:
        if isinstance(path_map, list):
            path_map = {name: name for name in path_map}
        self.branches.setdefault(source, []).append(_Branch(path, path_map))
        return self

    def add_sequence(self, nodes: Sequence[Callable[..., Any] | tuple[str, Any]]) -> StateGraph:
        if not nodes:
            raise ValueError("Sequence requires at least one node.")
        previous: str | None = None
        for item in nodes:
            if isinstance(item, tuple) and len(item) == 2:
                name, action = item
            else:
                action = item
                name = getattr(action, "name", None) or action.__name__
            self.add_node(name, action)
            if previous is not None:
                self.add_edge(previous, name)
            previous = name
        return self

    def set_entry_point(self, key: str) -> StateGraph:
        return self.add_edge(START, key)

    def set_conditional_entry_point(
        self, path: Callable[..., Any], path_map: dict[Hashable, str] | list[str] | None = None
    ) -> StateGraph:
        return self.add_conditional_edges(START, path, path_map)

    def set_finish_point(self, key: str) -> StateGraph:
        return self.add_edge(key, END)

    # ---- validation -----------------------------------------------------------------------

    def validate(self, interrupt: Sequence[str] = ()) -> None:
        known = set(self.nodes)
        sources = {s for s, _ in self.edges} | {s for ss, _ in self.waiting_edges for s in ss}
        sources |= set(self.branches)
        for source in sources:
            if source != START and source not in known:
                raise ValueError(f"Found edge starting at unknown node '{source}'")
        if START not in sources:
            raise ValueError(
                "Graph must have an entrypoint: add at least one edge from START to another node"
            )
        targets = {e for _, e in self.edges} | {e for _, e in self.waiting_edges}
        targets |= {e for spec in self.nodes.values() for e in spec.ends}
        for target in targets:
            if target != END and target not in known:
                raise ValueError(f"Found edge ending at unknown node `{target}`")
        for branches in self.branches.values():
            for branch in branches:
                for dest in (branch.path_map or {}).values():
                    if dest != END and dest not in known:
                        raise ValueError(f"At conditional edge, unknown destination node `{dest}`")
        for name in interrupt:
            if name != "*" and name not in known:
                raise ValueError(f"Interrupt node `{name}` not found")

    # ---- compiling ------------------------------------------------------------------------

    def compile(
        self,
        checkpointer: BaseCheckpointSaver | None | bool = None,
        *,
        cache: BaseCache[Any] | None = None,
        store: BaseStore | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        debug: bool = False,
        name: str | None = None,
        transformers: Sequence[Callable[..., Any]] | None = None,
        routes: dict[str, str] | None = None,
    ) -> CompiledStateGraph:
        """Compile; `routes` ({node: queue}) sends nodes to Celery queues when distributed.
        `store` is what nodes get as `store` and from `get_store()`, `cache` where nodes
        with a `cache_policy` keep their writes; distributed, workers use both as they
        are, so give them ones every process reaches (`RedisStore`, `RedisCache`).
        `debug=True` and `transformers` raise NotImplementedFeatureError."""
        refuse("compile", debug=debug, transformers=transformers)
        interrupt_before = interrupt_before or ()
        interrupt_after = interrupt_after or ()
        # The context too: a distributed run's context is decoded by workers.
        for schema in (self.state_schema, self.input_schema, self.output_schema,
                       self.context_schema, *(n.input_schema for n in self.nodes.values())):
            if dataclasses.is_dataclass(schema) or hasattr(schema, "model_fields"):
                serde.register(schema)
        self.validate(
            [*([] if isinstance(interrupt_before, str) else interrupt_before),
             *([] if isinstance(interrupt_after, str) else interrupt_after)]
        )
        for node in routes or {}:
            if node not in self.nodes:
                raise ValueError(f"routes name unknown node {node!r}")
        self.compiled = True
        compiled = CompiledStateGraph(
            self, checkpointer, interrupt_before, interrupt_after, name, store, cache
        )
        for node, queue in (routes or {}).items():
            compiled.nodes[node].queue = queue
        return compiled


class CompiledStateGraph(Pregel):
    """A StateGraph turned into nodes and channels; runnable and usable as a subgraph."""

    def __init__(
        self,
        builder: StateGraph,
        checkpointer: BaseCheckpointSaver | None | bool,
        interrupt_before: Sequence[str] | str,
        interrupt_after: Sequence[str] | str,
        name: str | None,
        store: BaseStore | None = None,
        cache: BaseCache[Any] | None = None,
    ) -> None:
        self.builder = builder
        keys: dict[str, Any] = {}
        for schema in (builder.state_schema, builder.input_schema, builder.output_schema,
                       *(n.input_schema for n in builder.nodes.values())):
            for k, annotation in state_keys(schema).items():
                keys.setdefault(k, annotation)
        channels: dict[str, BaseChannel] = {k: _reducer_channel(k, a) for k, a in keys.items()}
        channels[START] = EphemeralValue(START)
        channels[TASKS] = Topic(TASKS)
        self.state_key_set = frozenset(keys)
        self.input_keys = list(state_keys(builder.input_schema))
        nodes: dict[str, Node] = {START: self._start_node()}
        for name_, spec in builder.nodes.items():
            branch = BRANCH_TO.format(name_)
            channels[branch] = LastValueAfterFinish(branch) if spec.defer else EphemeralValue(
                branch)
            nodes[name_] = self._make_node(name_, spec)
        for start, end in sorted(builder.edges):
            if end != END:
                nodes[start].writers.append(_static_write(BRANCH_TO.format(end)))
        for starts, end in builder.waiting_edges:
            if end == END:
                continue
            chan = f"join:{'+'.join(starts)}:{end}"
            barrier = (NamedBarrierValueAfterFinish if builder.nodes[end].defer
                       else NamedBarrierValue)
            channels[chan] = barrier(chan, frozenset(starts))
            nodes[end].triggers.append(chan)
            for start in starts:
                nodes[start].writers.append(_static_write(chan, start))
        for source, branches in builder.branches.items():
            for branch in branches:
                nodes[source].writers.append(self._branch_writer(branch))
        super().__init__(
            nodes=nodes,
            channels=channels,
            input_channels=START,
            output_channels=list(state_keys(builder.output_schema)),
            stream_channels=list(keys),
            checkpointer=checkpointer,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            name=name or "LangGraph",
            store=store,
            cache=cache,
            context_schema=builder.context_schema,
        )
        self.stream_mode = "updates"

    def _start_node(self) -> Node:
        input_keys = frozenset(self.input_keys)
        return Node(
            name=START,
            triggers=[START],
            reads=START,
            bound=_pass_input,
            abound=_apass_input,
            writers=[self._updates_writer(input_keys)],
            hidden=True,
        )

    def _make_node(self, name: str, spec: _NodeSpec) -> Node:
        action = spec.action if isinstance(spec.action, Pregel) else with_injected(spec.action)
        schema = spec.input_schema or self.builder.state_schema
        subgraph = find_subgraph(action)
        abound = None
        is_async = False
        if isinstance(action, Pregel):
            bound: Callable[[Any, dict[str, Any]], Any] = action.run_as_subgraph
            abound = action.arun_as_subgraph
        elif is_async_callable(action):
            bound = no_sync_function(name)
            abound = bind_action(action)
            is_async = True
        else:
            bound = bind_action(action)
        return Node(
            name=name,
            triggers=[BRANCH_TO.format(name)],
            reads=list(state_keys(schema)),
            bound=bound,
            abound=abound,
            is_async=is_async,
            writers=[self._updates_writer(self.state_key_set)],
            mapper=_coerce(schema),
            retry_policy=spec.retry_policy,
            subgraph=subgraph,
            queue=spec.queue,
            cache_policy=spec.cache_policy,
            cache_id=identifier(spec.action),
        )

    def _updates_writer(self, allowed: frozenset[str]) -> Callable[[Any, TaskContext], list[Write]]:
        def write(output: Any, context: TaskContext) -> list[Write]:
            return _state_updates(output, allowed, context.task.name) + _control_writes(output)

        return write

    def _branch_writer(self, branch: _Branch) -> Callable[[Any, TaskContext], list[Write]]:
        reads = list(state_keys(self.builder.state_schema))
        mapper = _coerce(self.builder.state_schema)
        path_accepts_config = accepts_param(branch.path, "config")
        path = with_injected(branch.path)
        nodes = self.builder.nodes

        def route(context: TaskContext) -> Any:
            state = context.read_fresh(reads)
            if mapper is not None:
                state = mapper(state)
            if path_accepts_config:
                return path(state, config=get_config())
            return path(state)

        def writes_for(result: Any) -> list[Write]:
            results = result if isinstance(result, list | tuple) else [result]
            writes: list[Write] = []
            for item in results:
                if isinstance(item, Send):
                    writes.append((TASKS, item))
                    continue
                dest = branch.path_map[item] if branch.path_map is not None else item
                if dest == END:
                    continue
                if dest not in nodes:
                    raise InvalidUpdateError(f"Conditional edge returned unknown node {dest!r}")
                writes.append((BRANCH_TO.format(dest), None))
            return writes

        if is_async_callable(branch.path):

            async def awrite(output: Any, context: TaskContext) -> list[Write]:
                return writes_for(await route(context))

            awrite.__name__ = getattr(branch.path, "__name__", "branch")
            return awrite

        def write(output: Any, context: TaskContext) -> list[Write]:
            return writes_for(route(context))

        return write


def _static_write(channel: str, value: Any = None) -> Callable[[Any, TaskContext], list[Write]]:
    def write(output: Any, context: TaskContext) -> list[Write]:
        return [(channel, value)]

    return write


def _state_updates(output: Any, allowed: frozenset[str], node: str) -> list[Write]:
    if output is None:
        return []
    if isinstance(output, Command):
        return _checked(output.update_as_tuples() if output.graph != Command.PARENT else [],
                        allowed, node)
    if isinstance(output, list | tuple) and any(isinstance(i, Command) for i in output):
        writes: list[Write] = []
        for item in output:
            writes.extend(_state_updates(item, allowed, node))
        return writes
    if isinstance(output, dict):
        return _checked(list(output.items()), allowed, node)
    fields = getattr(type(output), "__dataclass_fields__", None) or getattr(
        type(output), "model_fields", None
    )
    if fields:
        return [(k, getattr(output, k)) for k in fields if k in allowed]
    raise InvalidUpdateError(f"Expected dict, got {output!r}")


def _checked(writes: list[Write], allowed: frozenset[str], node: str) -> list[Write]:
    """Keys outside the state are dropped, as LangGraph drops them (a subgraph's own keys)."""
    return [(k, v) for k, v in writes if k in allowed]


def _control_writes(output: Any) -> list[Write]:
    commands = [output] if isinstance(output, Command) else (
        [c for c in output if isinstance(c, Command)] if isinstance(output, list | tuple) else []
    )
    if isinstance(output, Send):
        return [(TASKS, output)]
    writes: list[Write] = []
    for cmd in commands:
        if cmd.graph == Command.PARENT:
            raise ParentCommand(cmd)
        writes.extend(goto_writes(cmd))
    return writes
