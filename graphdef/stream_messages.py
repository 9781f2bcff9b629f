"""`messages` stream mode: chat model tokens and the messages nodes return, as
`(message, metadata)` chunks.

Chat models report their tokens to LangChain callback handlers, so this is one: the run
puts it in every node's config (`callbacks`) and binds that config as LangChain's
current one, where a model called inside the node without a config finds it, as under
LangGraph. langchain-core is optional: without it there are no chat models to stream.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from graphdef.constants import NS_SEP, PUSH
from graphdef.errors import NotImplementedFeatureError
from graphdef.types import Command

try:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk
    from langchain_core.runnables.config import var_child_runnable_config
    from langchain_core.tracers._streaming import _StreamingCallbackHandler
except ImportError:  # pragma: no cover - exercised where langchain-core is absent
    HAVE_LANGCHAIN = False
    BaseCallbackHandler = _StreamingCallbackHandler = object  # type: ignore[assignment,misc]
    var_child_runnable_config = None  # type: ignore[assignment]
else:
    HAVE_LANGCHAIN = True

Emit = Callable[[tuple[str, ...], str, Any], None]
Meta = tuple[tuple[str, ...], dict[str, Any]]


def graph_namespace(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    """The namespace of the graph a task runs in: its checkpoint namespace without the
    task's own segment, and without one more per enclosing `@task` call, which runs in
    its caller's graph."""
    ns = tuple(str(metadata["langgraph_checkpoint_ns"]).split(NS_SEP))
    path = metadata.get("langgraph_path", ())
    drop = 1
    while len(path) == 4 and path[0] == PUSH and path[-1] is True:
        drop += 1
        path = path[1]
    return ns[:-drop]


class StreamMessagesHandler(BaseCallbackHandler, _StreamingCallbackHandler):  # type: ignore[misc]
    """Turns chat model callbacks and node outputs into `messages` chunks.

    Being a streaming handler makes a chat model's `invoke` stream its tokens, so they
    reach the caller while the model runs. Message ids seen in a node's input are not
    streamed again when the node returns them.
    """

    run_inline = True

    def __init__(self, emit: Emit, subgraphs: bool) -> None:
        if not HAVE_LANGCHAIN:
            raise NotImplementedFeatureError(
                "stream_mode='messages' needs langchain-core (pip install langchain-core)"
            )
        self.emit = emit
        self.subgraphs = subgraphs
        self.runs: dict[uuid.UUID, Meta] = {}
        self.seen: set[Any] = set()

    def _meta(self, metadata: dict[str, Any] | None) -> Meta | None:
        if not metadata or "langgraph_checkpoint_ns" not in metadata:
            return None
        ns = graph_namespace(metadata)
        if ns and not self.subgraphs:
            return None
        return ns, metadata

    def _emit(self, meta: Meta, message: Any, dedupe: bool = False) -> None:
        if dedupe and message.id in self.seen:
            return
        if message.id is None:
            message.id = str(uuid.uuid4())
        self.seen.add(message.id)
        self.emit(meta[0], "messages", (message, meta[1]))

    # ---- chat model callbacks -------------------------------------------------------------

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[Any]], *, run_id: uuid.UUID,
        tags: list[str] | None = None, metadata: dict[str, Any] | None = None, **kwargs: Any,
    ) -> None:
        if tags and "nostream" in tags:
            return
        if (meta := self._meta(metadata)) is not None:
            self.runs[run_id] = meta

    def on_llm_new_token(
        self, token: str, *, chunk: Any = None, run_id: uuid.UUID, **kwargs: Any
    ) -> None:
        if isinstance(chunk, ChatGenerationChunk) and (meta := self.runs.get(run_id)):
            self._emit(meta, chunk.message)

    def on_llm_end(self, response: Any, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        meta = self.runs.pop(run_id, None)
        if meta and response.generations and response.generations[0]:
            generation = response.generations[0][0]
            if isinstance(generation, ChatGeneration):
                self._emit(meta, generation.message, dedupe=True)

    def on_llm_error(self, error: BaseException, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self.runs.pop(run_id, None)

    def tap_output_iter(self, run_id: uuid.UUID, output: Iterator[Any]) -> Iterator[Any]:
        return output

    def tap_output_aiter(self, run_id: uuid.UUID, output: Any) -> Any:
        return output

    # ---- nodes ----------------------------------------------------------------------------

    def node_started(self, metadata: dict[str, Any], value: Any) -> None:
        """Remember the messages a node was given, so returning them streams nothing."""
        if self._meta(metadata) is None:
            return
        for item in _values(value):
            for message in _messages_in(item):
                if message.id is not None:
                    self.seen.add(message.id)

    def node_finished(self, metadata: dict[str, Any], output: Any) -> None:
        """Stream the new messages a node returned, once each, with the node's metadata as
        LangGraph's callback manager adds to it."""
        meta = self._meta(metadata)
        if meta is None:
            return
        meta = (meta[0], {"ls_integration": "langgraph", **meta[1]})
        outputs = output if isinstance(output, list | tuple) and any(
            isinstance(o, Command) for o in output) else [output]
        for item in outputs:
            update = item.update if isinstance(item, Command) else item
            if isinstance(update, BaseMessage) or (
                isinstance(update, Sequence) and not isinstance(update, str)
            ):
                candidates: Any = [update]
            else:
                candidates = _values(update)
            for value in candidates:
                for message in _messages_in(value):
                    self._emit(meta, message, dedupe=True)


def _values(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return list(obj.values())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    fields = getattr(type(obj), "model_fields", None)
    if fields:
        return [getattr(obj, k) for k in fields]
    return []


def _messages_in(value: Any) -> list[Any]:
    if isinstance(value, BaseMessage):
        return [value]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [item for item in value if isinstance(item, BaseMessage)]
    return []


def bind_langchain_config(config: dict[str, Any]) -> Any:
    """Make a node's config LangChain's current one, where a chat model called without a
    config finds the run's callbacks and metadata; returns what `reset_langchain_config`
    takes. A plain token rather than a context manager: it runs once per task."""
    if var_child_runnable_config is None:
        return None
    return var_child_runnable_config.set(config)  # type: ignore[arg-type]


def reset_langchain_config(token: Any) -> None:
    if token is not None:
        var_child_runnable_config.reset(token)
