"""Graphs and the Celery peer for `bench/distributed.py` (CELERYGRAPH_GRAPHS=bench.bench_graphs).

- `chain`: one node that loops on itself, one node per superstep, until `i == n`.
- `fanout`: one superstep of `n` Send tasks (trivial nodes), then the run ends.
- `slow`: one node that sleeps; it records its start and finish (node, pid, time) in Redis so
  the bench can tell when a node killed mid-run finished elsewhere.
- `park`: one node that counts itself in and then waits until the bench releases it
  (`bench/store_cost.py` measures idle cost with many nodes running).
- `talker` and `speaker`: one node streaming stamped `custom` chunks, and one streaming a
  fake chat model's tokens (`messages`), for the stream latency and throughput figures.
- The peer: a trivial task on a plain Celery app of its own (`make_peer_app`) with the private
  Redis as result backend. Celerygraph's own app keeps `task_ignore_result`; only the peer
  stores results. Worker processes that load this module also register the peer task with
  their (celerygraph) app, so the very same worker processes consume the peer's messages from
  the same node queue: the comparison runs on the same workers, broker and queue.
"""

from __future__ import annotations

import operator
import os
import threading
import time
from typing import Annotated, Any, TypedDict

import redis
from celery import Celery

from graphdef import END, START, Send, StateGraph, get_config, get_stream_writer
from graphdef.redis_client import connect

PEER_TASK = "celerygraph_bench.noop"

_client: redis.Redis | None = None


def store() -> redis.Redis:
    global _client
    if _client is None:
        _client = connect(os.environ["CELERYGRAPH_STORE_URL"])
    return _client


def record(kind: str, name: str) -> None:
    """Append `node|pid|time` to `bench:<kind>:<thread>` (kind: started or finished)."""
    thread_id = get_config()["configurable"]["thread_id"]
    store().rpush(f"bench:{kind}:{thread_id}", f"{name}|{os.getpid()}|{time.time()}")


# ---- (a) a chain of one-node supersteps --------------------------------------------------------


class Chain(TypedDict):
    i: int
    n: int


def _chain() -> Any:
    builder = StateGraph(Chain)
    builder.add_node("step", lambda s: {"i": s["i"] + 1})
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: "step" if s["i"] < s["n"] else END,
                                  ["step", END])
    return builder.compile()


chain = _chain()


# ---- (b) one superstep of n Send tasks ---------------------------------------------------------


class Fan(TypedDict):
    n: int
    done: Annotated[int, operator.add]


def _fanout() -> Any:
    builder = StateGraph(Fan)
    builder.add_node("work", lambda item: {"done": 1})
    builder.add_conditional_edges(
        START, lambda s: [Send("work", {"i": i}) for i in range(s["n"])], ["work"]
    )
    builder.add_edge("work", END)
    return builder.compile()


fanout = _fanout()


# ---- (c) a node to kill mid-run ----------------------------------------------------------------


class Slow(TypedDict, total=False):
    sleep: float
    log: Annotated[list, operator.add]


def slow_node(state: Slow) -> dict[str, Any]:
    record("started", "slow")
    time.sleep(state.get("sleep", 1.0))
    record("finished", "slow")
    return {"log": ["slow"]}


def _slow() -> Any:
    builder = StateGraph(Slow)
    builder.add_node("slow", slow_node)
    builder.add_edge(START, "slow")
    builder.add_edge("slow", END)
    return builder.compile()


slow = _slow()


# ---- a node that stays running until released -------------------------------------------------


class Park(TypedDict, total=False):
    tag: str
    timeout: float
    stamp: bool  # also note each start's wall-clock time (`bench/detection.py`)
    log: Annotated[list, operator.add]


RELEASE_CHANNEL = "bench:release"
_released: dict[str, threading.Event] = {}
_released_lock = threading.Lock()
_listening = False


def _release_event(tag: str) -> threading.Event:
    """The process's event for `tag`, set when the bench publishes `tag` on the channel.

    One subscription per process, not a blocked connection per node: redis-py pools 100
    connections by default, fewer than the nodes a wide threads pool parks.
    """
    global _listening
    with _released_lock:
        if not _listening:
            pubsub = store().pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(RELEASE_CHANNEL)
            # Read the confirmation, so no node counts itself in before the subscription holds.
            pubsub.get_message(ignore_subscribe_messages=False, timeout=10)
            threading.Thread(target=_listen, args=(pubsub,), daemon=True,
                             name="bench-release").start()
            _listening = True
        return _released.setdefault(tag, threading.Event())


def _listen(pubsub: Any) -> None:
    for message in pubsub.listen():
        if message["type"] == "message":
            tag = message["data"].decode()
            with _released_lock:
                _released.setdefault(tag, threading.Event()).set()


def park_node(state: Park) -> dict[str, Any]:
    """Count in, then wait in the process until the bench publishes the run's tag.

    Waiting costs Redis nothing here, so what the bench counts meanwhile is the engine's
    idle cost alone.
    """
    tag = state["tag"]
    released = _release_event(tag)
    if state.get("stamp"):
        store().rpush(f"bench:starts:{tag}", time.time())
    store().incr(f"bench:parked:{tag}")
    released.wait(state.get("timeout", 60.0))
    return {"log": ["park"]}


def _park() -> Any:
    builder = StateGraph(Park)
    # A queue of its own, served by a threads pool wide enough to hold every parked node.
    builder.add_node("park", park_node, queue="park")
    builder.add_edge(START, "park")
    builder.add_edge("park", END)
    return builder.compile()


park = _park()


# ---- the bare Celery peer ----------------------------------------------------------------------


def noop(i: int = 0) -> int:
    return i


def make_peer_app(broker_url: str, backend_url: str, queue: str = "nodes") -> Celery:
    """A plain Celery app with a result backend, its one task sent to celerygraph's node queue.

    Delivery settings match celerygraph's app (late acks, JSON only), so the peer pays for
    the same guarantees on the wire; the workers' prefetch of one applies to both.
    """
    peer = Celery("celerygraph-bench-peer", broker=broker_url, backend=backend_url)
    peer.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"],
        task_acks_late=True, task_reject_on_worker_lost=True, task_default_queue=queue,
        broker_connection_retry_on_startup=True, task_ignore_result=False,
    )
    peer.task(name=PEER_TASK, shared=False, lazy=False)(noop)
    return peer


def _serve_peer_in_this_worker() -> None:
    """Let the celerygraph worker process that loads this module run the peer task too."""
    import worker

    app = worker.app
    settings = app.settings
    peer = make_peer_app(settings.broker_url, settings.store_url, settings.node_queue)
    app.tasks.register(peer.tasks[PEER_TASK])


if __name__ in (m.strip() for m in os.environ.get("CELERYGRAPH_GRAPHS", "").split(",")):
    _serve_peer_in_this_worker()


class Pipeline(TypedDict, total=False):
    steps: Annotated[list, operator.add]


def io_step(name: str) -> Any:
    def node(state: Pipeline) -> dict[str, Any]:
        time.sleep(0.05)  # waiting on I/O: a call to another service
        return {"steps": [name]}

    node.__name__ = name
    return node


def _io_pipeline() -> Any:
    """Five nodes in a row, each waiting 50 ms on I/O (`bench/scale_out.py`)."""
    builder = StateGraph(Pipeline)
    names = [f"io{i}" for i in range(5)]
    for name in names:
        builder.add_node(name, io_step(name))
    builder.add_edge(START, names[0])
    for a, b in zip(names, names[1:], strict=False):
        builder.add_edge(a, b)
    builder.add_edge(names[-1], END)
    return builder.compile()


io_pipeline = _io_pipeline()


class Talk(TypedDict, total=False):
    n: int
    gap: float


def say(state: Talk) -> dict[str, Any]:
    """`n` custom chunks, `gap` seconds apart, each stamped with the time its writer was
    called: the producer's receipt time minus the stamp is the chunk's latency."""
    writer = get_stream_writer()
    for i in range(state["n"]):
        writer({"i": i, "t": time.time()})
        if state.get("gap"):
            time.sleep(state["gap"])
    return {}


def speak(state: Talk) -> dict[str, Any]:
    """A chat model streaming `n` words: `messages` mode streams each token as it comes."""
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    model = GenericFakeChatModel(messages=iter([AIMessage(" ".join(["tok"] * state["n"]))]))
    for _ in model.stream("go"):
        pass
    return {}


def _one_node(name: str, fn: Any) -> Any:
    builder = StateGraph(Talk)
    builder.add_node(name, fn)
    builder.add_edge(START, name)
    return builder.compile()


talker = _one_node("say", say)
speaker = _one_node("speak", speak)
