"""Scenarios with node caches (`cache_policy`, `compile(cache=...)`) and deferred nodes
(`add_node(..., defer=True)`)."""

import operator
import time
from typing import Annotated, TypedDict

from .observe import Counts, history, snapshot, stream_steps
from .scenarios_graph import thread


class Job(TypedDict, total=False):
    name: str
    extra: str
    log: Annotated[list, operator.add]


def _cached_chain(api, counts, policy, cache=None, checkpointer=None):
    def work(state: Job):
        counts.hit("work")
        return {"log": [f"work {state['name']}"]}

    def after(state: Job):
        counts.hit("after")
        return {"log": ["after"]}

    builder = api.StateGraph(Job)
    builder.add_node("work", work, cache_policy=policy)
    builder.add_node("after", after)
    builder.add_edge(api.START, "work")
    builder.add_edge("work", "after")
    return builder.compile(cache=cache or api.InMemoryCache(), checkpointer=checkpointer)


def scenario_cache_hits_and_misses(api, tmp_path):
    counts = Counts()
    graph = _cached_chain(api, counts, api.CachePolicy())
    first = graph.invoke({"name": "a", "log": []})
    hit = stream_steps(graph, {"name": "a", "log": []})
    updates = list(graph.stream({"name": "a", "log": []}, stream_mode="updates"))
    miss = graph.invoke({"name": "b", "log": []})
    return {"first": first, "hit_steps": hit, "hit_updates": updates, "miss": miss,
            "counts": counts.as_dict()}


def scenario_cache_key_func(api, tmp_path):
    counts = Counts()
    graph = _cached_chain(api, counts, api.CachePolicy(key_func=lambda state: state["name"]))
    runs = [graph.invoke({"name": name, "extra": extra, "log": []})
            for name, extra in (("a", "x"), ("a", "y"), ("b", "x"), ("a", "z"))]
    return {"runs": runs, "counts": counts.as_dict()}


def scenario_cache_ttl_expiry(api, tmp_path):
    counts = Counts()
    graph = _cached_chain(api, counts, api.CachePolicy(ttl=1))
    first = graph.invoke({"name": "a", "log": []})
    within = graph.invoke({"name": "a", "log": []})
    counted_within = counts.as_dict()
    time.sleep(2.5)  # well past the one-second TTL; the run count is the observation
    after = graph.invoke({"name": "a", "log": []})
    return {"first": first, "within": within, "after": after,
            "counts_within_ttl": counted_within, "counts": counts.as_dict()}


def scenario_cache_across_threads_with_history(api, tmp_path):
    counts = Counts()
    graph = _cached_chain(api, counts, api.CachePolicy(), checkpointer=api.InMemorySaver())
    one = graph.invoke({"name": "a", "log": []}, thread("one"))
    two = graph.invoke({"name": "a", "log": []}, thread("two"))
    return {"one": one, "two": two, "counts": counts.as_dict(),
            "history_two": history(graph, thread("two")),
            "state_two": snapshot(graph, thread("two"))}


def scenario_cache_send_targets_and_routes(api, tmp_path):
    counts = Counts()

    def fan(state: Job):
        return [api.Send("square", {"n": n}) for n in (1, 2, 1, 3)]

    def square(packet):
        counts.hit(f"square {packet['n']}")
        return {"log": [packet["n"] ** 2]}

    def route(state: Job):
        return "tail" if state["log"] else api.END

    def tail(state: Job):
        counts.hit("tail")
        return {"log": ["tail"]}

    builder = api.StateGraph(Job)
    builder.add_node("square", square, cache_policy=api.CachePolicy())
    builder.add_node("tail", tail, cache_policy=api.CachePolicy(key_func=lambda s: "one"))
    builder.add_conditional_edges(api.START, fan, ["square"])
    builder.add_conditional_edges("square", route, ["tail", api.END])
    graph = builder.compile(cache=api.InMemoryCache())
    first = graph.invoke({"log": []})
    second = graph.invoke({"log": []})
    return {"first": sorted(map(str, first["log"])), "second": sorted(map(str, second["log"])),
            "counts": counts.as_dict()}


def scenario_cache_in_tasks_and_entrypoint(api, tmp_path):
    counts = Counts()

    @api.task(cache_policy=api.CachePolicy())
    def slow_double(n):
        counts.hit(f"double {n}")
        return n * 2

    @api.task
    def plain(n):
        counts.hit(f"plain {n}")
        return n + 1

    @api.entrypoint(checkpointer=api.InMemorySaver(), cache=api.InMemoryCache())
    def main(numbers):
        counts.hit("main")
        return [slow_double(n).result() + plain(n).result() for n in numbers]

    first = main.invoke([1, 2, 1], thread("a"))
    second = main.invoke([2, 3], thread("b"))
    return {"first": first, "second": second, "counts": counts.as_dict()}


def scenario_defer_fan_in_runs_once(api, tmp_path):
    counts = Counts()

    def fan(state: Job):
        return [api.Send("worker", {"n": n}) for n in range(4)]

    def worker(packet):
        counts.hit("worker")
        return {"log": [f"w{packet['n']}"]}

    def collect(state: Job):
        counts.hit("collect")
        return {"log": [f"collected {len(state['log'])}"]}

    builder = api.StateGraph(Job)
    builder.add_node("worker", worker)
    builder.add_node("collect", collect, defer=True)
    builder.add_conditional_edges(api.START, fan, ["worker"])
    builder.add_edge("worker", "collect")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    result = graph.invoke({"log": []}, thread())
    return {"result": sorted(result["log"]), "counts": counts.as_dict(),
            "history": [(source, step, nxt) for source, step, nxt, _ in
                        history(graph, thread())]}


def scenario_defer_with_conditional_edges(api, tmp_path):
    counts = Counts()

    def node(name):
        def run(state: Job):
            counts.hit(name)
            return {"log": [name]}
        return run

    def route(state: Job):
        return ["short", "long1"]

    builder = api.StateGraph(Job)
    for name in ("start", "short", "long1", "long2", "long3"):
        builder.add_node(name, node(name))
    builder.add_node("finish", node("finish"), defer=True)
    builder.add_edge(api.START, "start")
    builder.add_conditional_edges("start", route, ["short", "long1"])
    builder.add_edge("short", "finish")
    builder.add_edge("long1", "long2")
    builder.add_conditional_edges(
        "long2", lambda state: "long3" if "long3" not in state["log"] else "finish",
        ["long3", "finish"])
    builder.add_edge("long3", "finish")
    graph = builder.compile()
    steps = stream_steps(graph, {"log": []})
    return {"steps": steps, "counts": counts.as_dict()}


def scenario_defer_join_edge(api, tmp_path):
    counts = Counts()

    def node(name):
        def run(state: Job):
            counts.hit(name)
            return {"log": [name]}
        return run

    builder = api.StateGraph(Job)
    for name in ("a", "b", "b2"):
        builder.add_node(name, node(name))
    builder.add_node("join", node("join"), defer=True)
    builder.add_edge(api.START, "a")
    builder.add_edge(api.START, "b")
    builder.add_edge("b", "b2")
    builder.add_edge(["a", "b2"], "join")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    result = graph.invoke({"log": []}, thread())
    return {"result": result, "counts": counts.as_dict(), "history": history(graph, thread())}


def scenario_cache_clear(api, tmp_path):
    counts = Counts()
    cache = api.InMemoryCache()

    @api.task(cache_policy=api.CachePolicy())
    def fetch(n, store):  # an injected parameter: the task keeps its own cache entries
        counts.hit(f"fetch {n}")
        return n

    @api.task(cache_policy=api.CachePolicy())
    def other(n, store):
        counts.hit(f"other {n}")
        return -n

    @api.entrypoint(cache=cache, store=api.InMemoryStore())
    def main(n):
        return [fetch(n).result(), other(n).result()]

    graph = _cached_chain(api, counts, api.CachePolicy(), cache=cache)
    runs = [main.invoke(1), main.invoke(1), graph.invoke({"name": "a", "log": []})]
    fetch.clear_cache(cache)
    graph.clear_cache(["work"])
    runs += [main.invoke(1), graph.invoke({"name": "a", "log": []})]
    graph.clear_cache()
    runs.append(graph.invoke({"name": "a", "log": []}))
    return {"runs": runs, "counts": counts.as_dict()}
