"""Scenarios for a subgraph's own state (read and edited through its config, nested
snapshots, checkpoint `parents`), run metadata in checkpoint metadata, and human review
"edit, then approve" (update_state on an interrupted thread, then Command(resume=...))."""

from __future__ import annotations

import asyncio
from typing import Any

from .observe import Counts, history, outcome, snapshot
from .scenarios_graph import LogState, chain_builder, logger, thread
from .scenarios_interrupt import asking_chain


def reviewed(api, counts: Counts, name: str):
    """A node that asks for a verdict and logs it with the state it saw."""

    def node(state):
        counts.hit(name)
        verdict = api.interrupt(f"{name}?")
        return {"log": [f"{name}: {verdict} on {list(state['log'])}"]}

    return node


def sub_builder(api, counts: Counts):
    """s1 -> s2 (asks) -> s3."""
    builder = api.StateGraph(LogState)
    builder.add_sequence(
        [("s1", logger(counts, "s1")), ("s2", reviewed(api, counts, "s2")),
         ("s3", logger(counts, "s3"))]
    )
    builder.add_edge(api.START, "s1")
    return builder


def parent_with_subgraph(api, counts: Counts, variant: str = "as_node", saver: Any = None):
    """p1 -> sub (the subgraph, as a node or invoked inside one) -> p2."""
    subgraph = sub_builder(api, counts).compile()

    def call_subgraph(state):
        counts.hit("parent_node")
        return {"log": subgraph.invoke({"log": list(state["log"])})["log"]}

    builder = api.StateGraph(LogState)
    builder.add_sequence(
        [("p1", logger(counts, "p1")),
         ("sub", subgraph if variant == "as_node" else call_subgraph),
         ("p2", logger(counts, "p2"))]
    )
    builder.add_edge(api.START, "p1")
    return builder.compile(checkpointer=saver if saver is not None else api.InMemorySaver())


def ns_names(ns: str) -> list[str]:
    """A checkpoint namespace without its task ids: the path of node names."""
    return [part.split(":")[0] for part in ns.split("|")] if ns else []


def sub_config(graph, config) -> dict[str, Any]:
    """The config `get_state(...).tasks[0].state` hands out for the paused subgraph."""
    return graph.get_state(config).tasks[0].state


def task_view(state) -> list[tuple[Any, ...]]:
    return [(t.name, [i.value for i in t.interrupts]) for t in state.tasks]


def sub_view(state) -> dict[str, Any]:
    return {
        "next": tuple(state.next),
        "values": state.values,
        "tasks": task_view(state),
        "interrupts": [i.value for i in state.interrupts],
        "source": (state.metadata or {}).get("source"),
        "step": (state.metadata or {}).get("step"),
        "ns": ns_names(state.config["configurable"]["checkpoint_ns"]),
        "config_keys": sorted(state.config["configurable"]),
        "checkpoint_map_ns": [ns_names(ns) for ns in
                              state.config["configurable"].get("checkpoint_map", {})],
    }


def scenario_subgraph_get_state_via_its_config(api, tmp_path):
    observations = {}
    for variant in ("as_node", "called_in_node"):
        counts = Counts()
        graph = parent_with_subgraph(api, counts, variant)
        config = thread()
        graph.invoke({"log": []}, config)
        cfg = sub_config(graph, config)
        observations[variant] = {
            "task_state_keys": sorted(cfg["configurable"]),
            "task_state_ns": ns_names(cfg["configurable"]["checkpoint_ns"]),
            "sub": sub_view(graph.get_state(cfg)),
            "sub_history": history(graph, cfg),
            "root": snapshot(graph, config),
            "async_sub": sub_view(asyncio.run(graph.aget_state(cfg))),
            "counts": counts.as_dict(),
        }
    return observations


def scenario_subgraph_update_as_node_via_its_config(api, tmp_path):
    counts = Counts()
    graph = parent_with_subgraph(api, counts)
    config = thread()
    graph.invoke({"log": []}, config)
    cfg = sub_config(graph, config)
    updated = graph.update_state(cfg, {"log": ["s2 by hand"]}, as_node="s2")
    return {
        "updated_ns": ns_names(updated["configurable"]["checkpoint_ns"]),
        "updated_keys": sorted(updated["configurable"]),
        "sub": sub_view(graph.get_state(cfg)),
        "sub_history": history(graph, cfg),
        "root": snapshot(graph, config),
        "unknown_node": outcome(lambda: graph.update_state(cfg, {"log": ["x"]}, as_node="p1")),
        "resumed": graph.invoke(api.Command(resume="unused"), config),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def scenario_subgraph_edit_then_resume(api, tmp_path):
    # A plain update on the subgraph's config (as s1, the node that ran last) keeps s2
    # next; the resume re-runs s2 on the edited state and hands it the answer.
    observations = {}
    for variant in ("as_node", "called_in_node"):
        counts = Counts()
        graph = parent_with_subgraph(api, counts, variant)
        config = thread()
        graph.invoke({"log": []}, config)
        cfg = sub_config(graph, config)
        graph.update_state(cfg, {"log": ["edited"]})
        observations[variant] = {
            "sub": sub_view(graph.get_state(cfg)),
            "root": snapshot(graph, config),
            "resumed": graph.invoke(api.Command(resume="approved"), config),
            "history": history(graph, config),
            "counts": counts.as_dict(),
        }
    return observations


def scenario_subgraph_edit_then_resume_sqlite(api, tmp_path):
    counts = Counts()
    graph = parent_with_subgraph(api, counts, saver=api.sqlite_saver(str(tmp_path / "s.db")))
    config = thread()
    graph.invoke({"log": []}, config)
    cfg = sub_config(graph, config)
    graph.update_state(cfg, {"log": ["edited"]})
    return {
        "sub": sub_view(graph.get_state(cfg)),
        "resumed": graph.invoke(api.Command(resume="ok"), config),
        "counts": counts.as_dict(),
    }


def scenario_async_subgraph_edit_then_resume(api, tmp_path):
    counts = Counts()
    graph = parent_with_subgraph(api, counts)
    config = thread()

    async def go() -> dict[str, Any]:
        await graph.ainvoke({"log": []}, config)
        cfg = (await graph.aget_state(config)).tasks[0].state
        await graph.aupdate_state(cfg, {"log": ["edited"]})
        view = sub_view(await graph.aget_state(cfg))
        history = [s.metadata["source"] async for s in graph.aget_state_history(cfg)]
        resumed = await graph.ainvoke(api.Command(resume="ok"), config)
        return {"sub": view, "sub_history": history, "resumed": resumed}

    return asyncio.run(go()) | {"counts": counts.as_dict()}


def three_levels(api, counts: Counts):
    """root: r1 -> mid (a subgraph node: m1 -> leaf (a subgraph node: l1 -> l2 asks))."""
    leaf = api.StateGraph(LogState)
    leaf.add_sequence([("l1", logger(counts, "l1")), ("l2", reviewed(api, counts, "l2"))])
    leaf.add_edge(api.START, "l1")
    mid = api.StateGraph(LogState)
    mid.add_sequence([("m1", logger(counts, "m1")), ("leaf", leaf.compile())])
    mid.add_edge(api.START, "m1")
    root = api.StateGraph(LogState)
    root.add_sequence([("r1", logger(counts, "r1")), ("mid", mid.compile())])
    root.add_edge(api.START, "r1")
    return root.compile(checkpointer=api.InMemorySaver())


def nested_view(state) -> dict[str, Any]:
    view = sub_view(state)
    view["children"] = [
        nested_view(t.state) if hasattr(t.state, "next") else t.state for t in state.tasks
    ]
    return view


def scenario_get_state_subgraphs_nested(api, tmp_path):
    counts = Counts()
    graph = three_levels(api, counts)
    config = thread()
    graph.invoke({"log": []}, config)
    state = graph.get_state(config, subgraphs=True)
    leaf_state = state.tasks[0].state.tasks[0].state
    leaf_cfg = leaf_state.config
    mid_cfg = state.tasks[0].state.config
    return {
        "nested": nested_view(state),
        # The leaf read again through its own config, without a checkpoint id.
        "leaf": sub_view(graph.get_state({"configurable": {
            "thread_id": "t", "checkpoint_ns": leaf_cfg["configurable"]["checkpoint_ns"]}})),
        "mid_with_subgraphs": nested_view(graph.get_state(
            {"configurable": {"thread_id": "t",
                              "checkpoint_ns": mid_cfg["configurable"]["checkpoint_ns"]}},
            subgraphs=True)),
        "leaf_history": history(graph, leaf_cfg),
        "resumed": graph.invoke(api.Command(resume="fine"), config),
        "counts": counts.as_dict(),
    }


def scenario_history_filtered_by_run_metadata(api, tmp_path):
    counts = Counts()
    graph = asking_chain(api, counts, "name?")
    first = {
        "configurable": {"thread_id": "t", "user_id": "ada", "attempt": 1, "score": 0.5,
                         "dry_run": False, "options": {"a": 1}, "__hidden": "x"},
        "metadata": {"run_tag": "first", "tags_list": ["x"]},
    }
    second = {
        "configurable": {"thread_id": "t", "user_id": "ada", "attempt": 2},
        "metadata": {"run_tag": "second"},
    }
    graph.invoke({"log": []}, first)
    graph.invoke(api.Command(resume="bob"), second)
    plain = thread()

    def steps(filter: dict[str, Any]) -> list[Any]:
        return [s.metadata["step"] for s in graph.get_state_history(plain, filter=filter)]

    return {
        "metadata": [
            {k: v for k, v in s.metadata.items() if k != "parents"}
            for s in graph.get_state_history(plain)
        ],
        "by_tag": steps({"run_tag": "first"}),
        "by_second_tag": steps({"run_tag": "second"}),
        "by_user": steps({"user_id": "ada"}),
        "by_attempt": steps({"attempt": 2}),
        "by_float_and_bool": steps({"score": 0.5, "dry_run": False}),
        "by_source_and_tag": steps({"source": "loop", "run_tag": "second"}),
        "by_unknown": steps({"run_tag": "nope"}),
        "by_dict_value": steps({"options": {"a": 1}}),
        "by_hidden": steps({"__hidden": "x"}),
        "counts": counts.as_dict(),
    }


def scenario_history_filtered_by_one_runs_metadata(api, tmp_path):
    counts = Counts()
    graph = chain_builder(api, counts).compile(checkpointer=api.InMemorySaver())
    config = {"configurable": {"thread_id": "t", "tenant": "acme", "retries": 2},
              "metadata": {"run_tag": "nightly"}}
    graph.invoke({"log": []}, config)
    plain = thread()
    return {
        "metadata": [{k: v for k, v in s.metadata.items() if k != "parents"}
                     for s in graph.get_state_history(plain)],
        "by_tenant": [s.metadata["step"] for s in graph.get_state_history(
            plain, filter={"tenant": "acme", "run_tag": "nightly"})],
        "by_other": [s.metadata["step"] for s in graph.get_state_history(
            plain, filter={"retries": 3})],
        "counts": counts.as_dict(),
    }


def scenario_update_state_metadata_from_its_config(api, tmp_path):
    counts = Counts()
    graph = asking_chain(api, counts, "name?")
    config = thread()
    graph.invoke({"log": []}, config)
    graph.update_state(
        {"configurable": {"thread_id": "t", "editor": "eve"}, "metadata": {"why": "typo"}},
        {"log": ["fixed"]},
    )
    head = graph.get_state(config)
    return {
        "metadata": {k: v for k, v in head.metadata.items() if k != "parents"},
        "by_editor": [s.metadata["step"] for s in graph.get_state_history(
            config, filter={"editor": "eve"})],
        "counts": counts.as_dict(),
    }


def scenario_metadata_parents(api, tmp_path):
    counts = Counts()
    graph = three_levels(api, counts)
    config = thread()
    graph.invoke({"log": []}, config)
    root_ids = {s.config["configurable"]["checkpoint_id"]: s.next
                for s in graph.get_state_history(config)}
    mid_cfg = graph.get_state(config, subgraphs=True).tasks[0].state.config
    mid_ids = {s.config["configurable"]["checkpoint_id"]: s.next
               for s in graph.get_state_history(mid_cfg)}
    leaf_cfg = graph.get_state(config, subgraphs=True).tasks[0].state.tasks[0].state.config

    def parents_view(cfg, known: dict[str, dict[str, Any]]) -> list[Any]:
        out = []
        for s in graph.get_state_history(cfg):
            parents = s.metadata["parents"]
            out.append({
                ns_names(ns)[-1] if ns else "": known[ns].get(parent_id, "unknown")
                for ns, parent_id in parents.items()
            })
        return out

    known = {"": root_ids, mid_cfg["configurable"]["checkpoint_ns"]: mid_ids}
    return {
        "root": [s.metadata["parents"] for s in graph.get_state_history(config)],
        "mid": parents_view(mid_cfg, known),
        "leaf": parents_view(leaf_cfg, known),
        "counts": counts.as_dict(),
    }


def scenario_edit_then_resume_root(api, tmp_path):
    observations = {}
    for variant in ("once", "twice", "resume_map_old_id", "then_none"):
        counts = Counts()
        builder = api.StateGraph(LogState)
        builder.add_sequence(
            [("before", logger(counts, "before")), ("ask", reviewed(api, counts, "ask")),
             ("after", logger(counts, "after"))]
        )
        builder.add_edge(api.START, "before")
        graph = builder.compile(checkpointer=api.InMemorySaver())
        config = thread(variant)
        graph.invoke({"log": []}, config)
        old = graph.get_state(config).interrupts
        graph.update_state(config, {"log": ["edited"]})
        if variant == "twice":
            graph.update_state(config, {"log": ["edited again"]})
        edited = snapshot(graph, config)
        if variant == "resume_map_old_id":
            # The edit re-plans the node as a new task; an answer keyed by the old
            # interrupt id is not its answer, so the node asks again.
            resume = api.Command(resume={old[0].id: "approved"})
        elif variant == "then_none":
            resume = None
        else:
            resume = api.Command(resume="approved")
        resumed = graph.invoke(resume, config)
        interrupts = resumed.pop("__interrupt__", [])
        observations[variant] = {
            "edited": edited,
            "resumed": resumed,
            "asked_again": [i.value for i in interrupts],
            "history": history(graph, config),
            "counts": counts.as_dict(),
        }
    return observations


def scenario_edit_sibling_of_paused_branch(api, tmp_path):
    # One branch paused, its sibling finished: an edit as the sibling ends the step, so the
    # paused branch is no longer planned and nothing is left to resume (a resume raises in
    # graphdef: README, "Deliberate differences", 1; tests/test_bad_input.py).
    counts = Counts()
    builder = api.StateGraph(LogState)
    builder.add_node("start", logger(counts, "start"))
    builder.add_node("left", reviewed(api, counts, "left"))
    builder.add_node("right", logger(counts, "right"))
    builder.add_edge(api.START, "start")
    builder.add_edge("start", "left")
    builder.add_edge("start", "right")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    config = thread()
    graph.invoke({"log": []}, config)
    graph.update_state(config, {"log": ["edited"]}, as_node="right")
    return {
        "edited": snapshot(graph, config),
        "continued": graph.invoke(None, config),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }
