"""Scenarios that use a store from nodes, routes, subgraphs, tasks and entrypoints.

No `from __future__ import annotations` here: LangGraph injects `store` only when the
parameter's annotation is the `BaseStore` class itself (or missing), so the annotations
must stay objects.
"""

import operator
from typing import Annotated, Optional, TypedDict

from .observe import Counts, outcome
from .scenarios_graph import thread


class Memo(TypedDict):
    user: str
    facts: list
    found: Annotated[list, operator.add]


def items(found):
    """What a search or get shows, without timestamps (they differ run to run)."""
    if found is None:
        return None
    if not isinstance(found, list):
        return (found.namespace, found.key, found.value)
    return [(i.namespace, i.key, i.value,
             None if i.score is None else round(i.score, 6)) for i in found]


def scenario_store_param_in_nodes(api, tmp_path):
    store = api.InMemoryStore()

    def remember(state: Memo, store: api.BaseStore):
        for i, fact in enumerate(state["facts"]):
            store.put(("memories", state["user"]), f"fact-{i}", {"text": fact, "n": i})
        return {"found": ["remembered"]}

    def recall(state: Memo, *, store):  # unannotated: injected too
        ns = ("memories", state["user"])
        return {"found": [items(store.search(ns)),
                          items(store.search(ns, filter={"n": {"$gte": 1}})),
                          items(store.get(ns, "fact-0")),
                          items(store.get(ns, "missing"))]}

    builder = api.StateGraph(Memo)
    builder.add_node("remember", remember)
    builder.add_node("recall", recall)
    builder.add_edge(api.START, "remember")
    builder.add_edge("remember", "recall")
    graph = builder.compile(store=store)
    result = graph.invoke({"user": "ada", "facts": ["likes tea", "has a cat", "codes"],
                           "found": []})
    return {"result": result, "outside": items(store.search(("memories",)))}


def scenario_store_get_store_and_route(api, tmp_path):
    store = api.InMemoryStore()
    store.put(("settings",), "mode", {"route": "fast"})

    def start(state: Memo):
        api.get_store().put(("seen", state["user"]), "start", {"ok": True})
        return {"found": ["start"]}

    def route(state: Memo, store: api.BaseStore):
        return store.get(("settings",), "mode").value["route"]

    def fast(state: Memo):
        return {"found": ["fast", items(api.get_store().search(("seen",)))]}

    def slow(state: Memo):
        return {"found": ["slow"]}

    builder = api.StateGraph(Memo)
    for name, fn in (("start", start), ("fast", fast), ("slow", slow)):
        builder.add_node(name, fn)
    builder.add_edge(api.START, "start")
    builder.add_conditional_edges("start", route, ["fast", "slow"])
    graph = builder.compile(store=store)
    first = graph.invoke({"user": "bo", "facts": [], "found": []})
    store.put(("settings",), "mode", {"route": "slow"})
    second = graph.invoke({"user": "cy", "facts": [], "found": []})
    return {"first": first, "second": second,
            "namespaces": store.list_namespaces(),
            "depth1": store.list_namespaces(max_depth=1),
            "suffix": store.list_namespaces(suffix=("cy",))}


def scenario_store_in_tasks_and_entrypoint(api, tmp_path):
    store = api.InMemoryStore()
    counts = Counts()

    @api.task
    def save(user, score, store: api.BaseStore):
        counts.hit("save")
        store.put(("scores", user), "latest", {"score": score, "user": user})
        return score

    @api.task
    def best():
        return items(api.get_store().search(("scores",), filter={"score": {"$gt": 5}}))

    @api.entrypoint(checkpointer=api.InMemorySaver(), store=store)
    def main(scores, *, store: api.BaseStore):
        counts.hit("main")
        saved = [save(user, score).result() for user, score in scores]
        return {"saved": saved, "best": best().result(),
                "count": len(store.search(("scores",)))}

    return {
        "result": main.invoke([["ann", 3], ["ben", 9], ["cat", 7]], thread()),
        "counts": counts.as_dict(),
    }


def scenario_store_shared_across_threads(api, tmp_path):
    store = api.InMemoryStore()

    def visit(state: Memo, store: api.BaseStore):
        ns = ("visits", state["user"])
        before = store.get(ns, "count")
        count = (before.value["n"] if before else 0) + 1
        store.put(ns, "count", {"n": count})
        return {"found": [count]}

    builder = api.StateGraph(Memo)
    builder.add_node("visit", visit)
    builder.add_edge(api.START, "visit")
    graph = builder.compile(checkpointer=api.InMemorySaver(), store=store)
    runs = [
        graph.invoke({"user": user, "facts": [], "found": []}, thread(name))
        for name, user in (("t1", "ada"), ("t2", "ada"), ("t3", "bo"), ("t1", "ada"))
    ]
    return {"runs": runs, "all": items(store.search(("visits",))),
            "namespaces": store.list_namespaces(prefix=("visits",))}


def scenario_store_reaches_subgraphs(api, tmp_path):
    store = api.InMemoryStore()

    def inner(state: Memo, store: api.BaseStore):
        store.put(("sub", state["user"]), "note", {"from": "inner"})
        return {"found": [items(api.get_store().get(("sub", state["user"]), "note"))]}

    sub_builder = api.StateGraph(Memo)
    sub_builder.add_node("inner", inner)
    sub_builder.add_edge(api.START, "inner")
    subgraph = sub_builder.compile()

    def outer(state: Memo, store: api.BaseStore):
        return {"found": [items(store.search(("sub",)))]}

    builder = api.StateGraph(Memo)
    builder.add_node("child", subgraph)
    builder.add_node("outer", outer)
    builder.add_edge(api.START, "child")
    builder.add_edge("child", "outer")
    graph = builder.compile(checkpointer=api.InMemorySaver(), store=store)
    return {"result": graph.invoke({"user": "dee", "facts": [], "found": []}, thread())}


VOCABULARY = ("tea", "cat", "code", "rain")


def embed(texts):
    return [[float(t.count(w)) for w in VOCABULARY] + [0.5] for t in texts]


def scenario_store_similarity_search(api, tmp_path):
    store = api.InMemoryStore(index={"dims": 5, "embed": embed, "fields": ["text"]})

    def remember(state: Memo, store: api.BaseStore):
        for i, fact in enumerate(state["facts"]):
            store.put(("mem", state["user"]), str(i), {"text": fact, "i": i})
        store.put(("mem", state["user"]), "raw", {"text": "cat"}, index=False)
        return {}

    def ask(state: Memo, store: api.BaseStore):
        ns = ("mem", state["user"])
        return {"found": [items(store.search(ns, query="cat cat")),
                          items(store.search(ns, query="tea", limit=2)),
                          items(store.search(ns, query="code", filter={"i": {"$ne": 2}})),
                          items(store.search(ns, query="rain", offset=1, limit=2))]}

    builder = api.StateGraph(Memo)
    builder.add_node("remember", remember)
    builder.add_node("ask", ask)
    builder.add_edge(api.START, "remember")
    builder.add_edge("remember", "ask")
    graph = builder.compile(store=store)
    facts = ["tea and cat", "code code", "rain tea", "cat cat cat"]
    return {"result": graph.invoke({"user": "eve", "facts": facts, "found": []})}


def scenario_store_none_and_errors(api, tmp_path):
    def optional(state: Memo, store: Optional[api.BaseStore] = None):  # noqa: UP045
        return {"found": [store is None, api.get_store() is None]}

    builder = api.StateGraph(Memo)
    builder.add_node("optional", optional)
    builder.add_edge(api.START, "optional")
    no_store = builder.compile()

    store = api.InMemoryStore()

    def bad(state: Memo, store: api.BaseStore):
        store.put(("a.b",), "k", {"v": 1})
        return {}

    bad_builder = api.StateGraph(Memo)
    bad_builder.add_node("bad", bad)
    bad_builder.add_edge(api.START, "bad")
    return {
        "no_store": no_store.invoke({"user": "x", "facts": [], "found": []}),
        "bad_namespace": outcome(lambda: bad_builder.compile(store=store).invoke(
            {"user": "x", "facts": [], "found": []})),
        "root_langgraph": outcome(lambda: store.put(("langgraph",), "k", {"v": 1})),
        "empty": outcome(lambda: store.put((), "k", {"v": 1})),
    }


def scenario_store_interrupt_and_resume(api, tmp_path):
    store = api.InMemoryStore()
    counts = Counts()

    def draft(state: Memo, store: api.BaseStore):
        counts.hit("draft")
        store.put(("drafts", state["user"]), "d1", {"text": "hello", "status": "draft"})
        answer = api.interrupt("approve?")
        store.put(("drafts", state["user"]), "d1", {"text": "hello", "status": answer})
        return {"found": [answer]}

    def report(state: Memo, store: api.BaseStore):
        ns = ("drafts", state["user"])
        found = items(store.search(ns, filter={"status": "approved"}))
        store.delete(ns, "d1")
        return {"found": [found, items(store.get(ns, "d1"))]}

    builder = api.StateGraph(Memo)
    builder.add_node("draft", draft)
    builder.add_node("report", report)
    builder.add_edge(api.START, "draft")
    builder.add_edge("draft", "report")
    graph = builder.compile(checkpointer=api.InMemorySaver(), store=store)
    config = thread()
    first = graph.invoke({"user": "fay", "facts": [], "found": []}, config)
    paused = items(store.search(("drafts",)))
    resumed = graph.invoke(api.Command(resume="approved"), config)
    return {"first": first, "paused": paused, "resumed": resumed,
            "counts": counts.as_dict()}
