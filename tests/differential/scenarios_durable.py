"""Scenarios for durable execution: failure then resume per durability mode, SQLite across
processes, retry policies."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from .observe import Counts, history, normalize, outcome, snapshot
from .scenarios_graph import LogState, MapState, logger, silent, thread

DURABILITY_MODES = ("sync", "async", "exit")

TESTS_DIR = Path(__file__).resolve().parents[1]

CHILD_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from differential.apis import load_api
from differential.scenarios_durable import resume_sqlite_in_child
print(json.dumps(resume_sqlite_in_child(load_api(sys.argv[2]), sys.argv[3])))
"""


class Transient(Exception):
    """Raised by flaky nodes; retried by LangGraph's default ``retry_on``."""


# A failing task that runs beside others waits this long before raising, so that its
# siblings have finished. Without it, LangGraph once (in about 25 suite runs, "async" mode)
# did not keep the writes of a sibling that finished as the failure was raised, and re-ran
# that sibling on resume.
SIBLINGS_FINISH = 0.05


def flaky(
    counts: Counts,
    name: str,
    failures: int = 1,
    error: type[Exception] = Transient,
    delay: float = 0.0,
):
    """A ``logger``-like node whose first ``failures`` calls raise ``error`` after ``delay``."""

    def node(state):
        if counts.hit(name) <= failures:
            time.sleep(delay)
            raise error(name)
        return {"log": [name]}

    return node


def failure_then_resume(graph, graph_input, counts: Counts, durability: str) -> dict:
    """Invoke until the first failure, observe, resume with ``invoke(None)``, observe."""
    config = thread()
    failed = outcome(lambda: graph.invoke(graph_input, config, durability=durability))
    after_failure = {
        "state": snapshot(graph, config),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }
    resumed = outcome(lambda: graph.invoke(None, config, durability=durability))
    return {
        "failed": failed,
        "after_failure": after_failure,
        "resumed": resumed,
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def chain_failure_then_resume(api, durability: str) -> dict:
    counts = Counts()
    builder = api.StateGraph(LogState)
    builder.add_sequence(
        [
            ("a", logger(counts, "a")),
            ("b", logger(counts, "b")),
            ("c", flaky(counts, "c")),
            ("d", logger(counts, "d")),
        ]
    )
    builder.add_edge(api.START, "a")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    return failure_then_resume(graph, {"log": []}, counts, durability)


def scenario_resume_after_failure_sync(api, tmp_path):
    return chain_failure_then_resume(api, "sync")


def scenario_resume_after_failure_async(api, tmp_path):
    return chain_failure_then_resume(api, "async")


def scenario_resume_after_failure_exit(api, tmp_path):
    # LangGraph: "exit" saves only the checkpoint each invocation ends on (here the one before
    # the failed superstep, then the final one); the input checkpoint is never saved.
    return chain_failure_then_resume(api, "exit")


def parallel_branch_failure_then_resume(api, durability: str) -> dict:
    counts = Counts()
    builder = api.StateGraph(LogState)
    builder.add_node("ok", logger(counts, "ok"))
    builder.add_node("flaky", flaky(counts, "flaky", delay=SIBLINGS_FINISH))
    builder.add_node("join", logger(counts, "join"))
    builder.add_edge(api.START, "ok")
    builder.add_edge(api.START, "flaky")
    builder.add_edge(["ok", "flaky"], "join")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    return failure_then_resume(graph, {"log": []}, counts, durability)


def scenario_resume_failed_parallel_branch(api, tmp_path):
    # LangGraph: get_state applies the saved writes of finished tasks ("ok") to values and
    # leaves them out of next; the history entry of the same checkpoint shows neither.
    return {mode: parallel_branch_failure_then_resume(api, mode) for mode in DURABILITY_MODES}


def failed_send_then_resume(api, durability: str) -> dict:
    counts = Counts()

    def work(arg):
        item = arg["item"]
        if counts.hit(f"work{item}") == 1 and item == 3:
            time.sleep(SIBLINGS_FINISH)
            raise Transient(item)
        return {"results": [item * 10]}

    builder = api.StateGraph(MapState)
    builder.add_node("work", work)
    builder.add_node("collect", silent(counts, "collect"))
    builder.add_conditional_edges(
        api.START,
        lambda state: [api.Send("work", {"item": item}) for item in state["items"]],
        ["work"],
    )
    builder.add_edge("work", "collect")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    graph_input = {"items": [0, 1, 2, 3, 4], "results": []}
    return failure_then_resume(graph, graph_input, counts, durability)


def scenario_resume_failed_send(api, tmp_path):
    return {mode: failed_send_then_resume(api, mode) for mode in DURABILITY_MODES}


def sqlite_chain(api, saver, counts: Counts, failures: int):
    builder = api.StateGraph(LogState)
    builder.add_sequence(
        [
            ("a", logger(counts, "a")),
            ("b", flaky(counts, "b", failures)),
            ("c", logger(counts, "c")),
        ]
    )
    builder.add_edge(api.START, "a")
    return builder.compile(checkpointer=saver)


def resume_sqlite_in_child(api, path: str) -> dict:
    """Run in a fresh process: open the SQLite file, resume the failed thread, observe."""
    counts = Counts()
    graph = sqlite_chain(api, api.sqlite_saver(path), counts, failures=0)
    return normalize(
        {
            "resumed": graph.invoke(None, thread(), durability="sync"),
            "history": history(graph, thread()),
            "counts": counts.as_dict(),
        }
    )


def scenario_sqlite_resume_in_new_process(api, tmp_path):
    path = str(tmp_path / "checkpoints.sqlite")
    counts = Counts()
    graph = sqlite_chain(api, api.sqlite_saver(path), counts, failures=1)
    failed = outcome(lambda: graph.invoke({"log": []}, thread(), durability="sync"))
    child = subprocess.run(
        [sys.executable, "-c", CHILD_SCRIPT, str(TESTS_DIR), api.name, path],
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        "failed": failed,
        "parent_counts": counts.as_dict(),
        "child": json.loads(child.stdout),
        # The parent's saver reads what the child wrote to the same file.
        "parent_sees": snapshot(graph, thread()),
    }


def retry_policy(api, **kwargs):
    return api.RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False, **kwargs)


def single_node_graph(api, node, policy):
    builder = api.StateGraph(LogState)
    builder.add_node("node", node, retry_policy=policy)
    builder.add_edge(api.START, "node")
    return builder.compile(checkpointer=api.InMemorySaver())


def run_single_node(api, node, policy, counts: Counts) -> dict:
    graph = single_node_graph(api, node, policy)
    return {
        "invoke": outcome(lambda: graph.invoke({"log": []}, thread())),
        "state": snapshot(graph, thread()),
        "counts": counts.as_dict(),
    }


def scenario_retry_policy(api, tmp_path):
    policy = retry_policy(api)
    twice, always = Counts(), Counts()
    return {
        "fails_twice": run_single_node(api, flaky(twice, "node", failures=2), policy, twice),
        "always_fails": run_single_node(api, flaky(always, "node", failures=9), policy, always),
    }


def scenario_retry_on_predicate_and_types(api, tmp_path):
    def transient_key(error):
        return isinstance(error, KeyError) and error.args == ("node",)

    by_predicate, by_types, not_matched = Counts(), Counts(), Counts()
    return {
        "predicate": run_single_node(
            api,
            flaky(by_predicate, "node", failures=1, error=KeyError),
            retry_policy(api, retry_on=transient_key),
            by_predicate,
        ),
        "types": run_single_node(
            api,
            flaky(by_types, "node", failures=2, error=ValueError),
            retry_policy(api, retry_on=(KeyError, ValueError)),
            by_types,
        ),
        "not_matched": run_single_node(
            api,
            flaky(not_matched, "node", failures=1, error=IndexError),
            retry_policy(api, retry_on=transient_key),
            not_matched,
        ),
    }


def scenario_retry_default_retry_on(api, tmp_path):
    # LangGraph's default retry_on skips ValueError (and other programming errors) but retries
    # ConnectionError and exceptions of unknown kinds.
    observations = {}
    for error in (ValueError, ConnectionError, Transient):
        counts = Counts()
        node = flaky(counts, "node", failures=1, error=error)
        observations[error.__name__] = run_single_node(api, node, retry_policy(api), counts)
    return observations
