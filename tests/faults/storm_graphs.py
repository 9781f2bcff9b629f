"""Graphs the fault storm runs (CELERYGRAPH_GRAPHS=tests.faults.storm_graphs).

Every node records each of its runs in Redis before doing anything else: a per-(thread, task
namespace) counter, plus a start record (pid, process group, time, and whether the task's
memo was already saved when it started) and, when the node gets to its end, a return record.
The harness attributes every extra run of a task to the fault that caused it from these.
Nodes sleep 20-300 ms so that kills land mid-node. Outputs depend only on the input: a
fault-free in-process run of the same graph objects gives the expected final state.

The records go through one idempotent Lua script and are retried across a Redis restart, so
the instrument itself neither fails a node nor counts a run twice. A reference run swaps the
Redis recorder for an in-memory one (`use_recorder`).
"""

from __future__ import annotations

import contextlib
import operator
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypedDict, TypeVar

import orjson
import redis

from graphdef import END, START, Send, StateGraph, get_config, interrupt
from graphdef.checkpoint.redis import RedisSaver
from graphdef.constants import CONTROL_WRITES, NS_END

T = TypeVar("T")
PREFIX = "storm"
RETRY_SECONDS = 60.0

# KEYS: seen set, counter hash, starts hash; ARGV: record id, counter field, start record.
_RECORD_START = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
end
return 1
"""


def key(thread_id: str, kind: str) -> str:
    return f"{PREFIX}:{{{thread_id}}}:{kind}"


def retrying(action: Callable[[], T]) -> T:
    """Run a Redis call, waiting out a Redis restart (the storm restarts it on purpose)."""
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        try:
            return action()
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class RedisRecorder:
    """What the nodes write on the workers: counters, start and return records."""

    sleeps = True

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._record = self.r.register_script(_RECORD_START)
        self.saver = RedisSaver(self.r)  # only for its key names

    def started(self, thread_id: str, ns: str, node: str) -> str:
        token = uuid.uuid4().hex
        memo = retrying(lambda: self.memo_saved(thread_id, ns.rsplit(NS_END, 1)[-1]))
        record = orjson.dumps({"ns": ns, "node": node, "pid": os.getpid(),
                               "pgid": os.getpgid(0), "t": time.time(), "memo": memo})
        retrying(lambda: self._record(
            keys=[key(thread_id, "seen"), key(thread_id, "runs"), key(thread_id, "starts")],
            args=[token, f"{node}|{ns}", record]))
        return token

    def returned(self, thread_id: str, token: str) -> None:
        retrying(lambda: self.r.hset(key(thread_id, "returns"), token, repr(time.time())))

    def memo_saved(self, thread_id: str, task_id: str) -> bool:
        """Whether the task's writes (not just an interrupt or error) are saved already."""
        index = self.saver._keys(thread_id, "").index
        writes = [k for k in self.r.smembers(index) if b":writes:" in k]
        suffix = f":{task_id}".encode()
        with self.r.pipeline(transaction=False) as pipe:
            for k in writes:
                pipe.hgetall(k)
            for fields in pipe.execute():
                for field, record in fields.items():
                    if not field.endswith(suffix):
                        continue
                    channel = orjson.loads(record[12:].split(b"\n", 1)[0])[0]
                    if channel not in CONTROL_WRITES:
                        return True
        return False


class MemoryRecorder:
    """The reference run's recorder: counts per (thread, node, task namespace); no sleeps."""

    sleeps = False

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, str, str], int] = {}

    def started(self, thread_id: str, ns: str, node: str) -> str:
        with self.lock:
            k = (thread_id, node, ns)
            self.counts[k] = self.counts.get(k, 0) + 1
        return ""

    def returned(self, thread_id: str, token: str) -> None:
        pass


_recorder: RedisRecorder | MemoryRecorder | None = None
_recorder_lock = threading.Lock()


def recorder() -> RedisRecorder | MemoryRecorder:
    global _recorder
    with _recorder_lock:
        if _recorder is None:
            _recorder = RedisRecorder(os.environ["CELERYGRAPH_STORE_URL"])
        return _recorder


@contextlib.contextmanager
def use_recorder(rec: MemoryRecorder) -> Iterator[MemoryRecorder]:
    global _recorder
    with _recorder_lock:
        previous, _recorder = _recorder, rec
    try:
        yield rec
    finally:
        with _recorder_lock:
            _recorder = previous


@contextlib.contextmanager
def counted(name: str, seed: int, salt: object = "") -> Iterator[None]:
    """Record this run of the current task, sleep a little, record its return."""
    conf = get_config()["configurable"]
    thread_id = conf["thread_id"]
    rec = recorder()
    token = rec.started(thread_id, conf["checkpoint_ns"], name)
    try:
        if rec.sleeps:
            time.sleep(random.Random(f"{seed}:{name}:{salt}").uniform(0.02, 0.3))
        yield
    finally:
        rec.returned(thread_id, token)


def value(seed: int, name: str) -> int:
    return random.Random(f"value:{seed}:{name}").randrange(1000)


class State(TypedDict, total=False):
    seed: int
    n: int
    log: Annotated[list, operator.add]
    total: Annotated[int, operator.add]
    answer: str


def step(name: str) -> Callable[[State], dict[str, Any]]:
    def node(state: State) -> dict[str, Any]:
        seed = state["seed"]
        with counted(name, seed):
            return {"log": [f"{name}:{len(state.get('log', []))}"], "total": value(seed, name)}

    node.__name__ = name
    return node


# ---- a chain with parallel branches of different lengths, a join and a branch ------------


def _pipeline() -> Any:
    builder = StateGraph(State)
    for name in ("prep", "left", "left2", "mid", "right", "join", "odd", "even", "post"):
        builder.add_node(name, step(name))
    builder.add_edge(START, "prep")
    for name in ("left", "mid", "right"):
        builder.add_edge("prep", name)
    builder.add_edge("left", "left2")
    builder.add_edge(["left2", "mid", "right"], "join")
    builder.add_conditional_edges("join", lambda s: "odd" if s["seed"] % 2 else "even",
                                  ["odd", "even"])
    builder.add_edge("odd", "post")
    builder.add_edge("even", "post")
    builder.add_edge("post", END)
    return builder.compile()


pipeline = _pipeline()


# ---- a Send fan-out and its reduction -------------------------------------------------------


def work(item: dict[str, Any]) -> dict[str, Any]:
    seed, i = item["seed"], item["i"]
    with counted("work", seed, i):
        return {"log": [f"work:{i}"], "total": value(seed, f"work{i}")}


def reduce_node(state: State) -> dict[str, Any]:
    with counted("reduce", state["seed"]):
        return {"log": [f"reduce:{len(state['log'])}:{state['total']}"]}


def _fanout() -> Any:
    builder = StateGraph(State)
    builder.add_node("plan", step("plan"))
    builder.add_node("work", work)
    builder.add_node("reduce", reduce_node)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges(
        "plan",
        lambda s: [Send("work", {"seed": s["seed"], "i": i}) for i in range(s.get("n", 10))],
        ["work"],
    )
    builder.add_edge("work", "reduce")
    builder.add_edge("reduce", END)
    return builder.compile()


fanout = _fanout()


# ---- an interrupt the harness answers ------------------------------------------------------


def ask(state: State) -> dict[str, Any]:
    with counted("ask", state["seed"]):
        answer = interrupt({"question": "approve?", "total": state.get("total", 0)})
        return {"log": [f"ask:{answer}"], "answer": answer}


def _approval() -> Any:
    builder = StateGraph(State)
    builder.add_node("prepare", step("prepare"))
    builder.add_node("ask", ask)
    builder.add_node("finish", step("finish"))
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "ask")
    builder.add_edge("ask", "finish")
    builder.add_edge("finish", END)
    return builder.compile()


approval = _approval()


def _ask_first() -> Any:
    """An interrupt in the first superstep (tests/faults/test_regressions.py)."""
    builder = StateGraph(State)
    builder.add_node("ask", ask)
    builder.add_node("finish", step("finish"))
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "finish")
    builder.add_edge("finish", END)
    return builder.compile()


ask_first = _ask_first()

GRAPHS = {"pipeline": pipeline, "fanout": fanout, "approval": approval}


def answer_for(seed: int) -> str:
    """The answer the harness resumes an approval run with."""
    return f"yes-{seed}"
