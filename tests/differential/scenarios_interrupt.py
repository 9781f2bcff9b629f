"""Scenarios for human-in-the-loop: interrupt/resume, static interrupts, update_state,
time travel, subgraph interrupts."""

from __future__ import annotations

from .observe import Counts, history, outcome, snapshot
from .scenarios_durable import DURABILITY_MODES
from .scenarios_graph import LogState, chain_builder, logger, thread


def asking(api, counts: Counts, name: str, *questions: str):
    """A node that asks each question with ``interrupt`` and logs the answers."""

    def node(state):
        counts.hit(name)
        answers = []
        for question in questions:
            answers.append(api.interrupt(question))
            counts.hit(f"{name} after {question}")
        return {"log": [f"{name}: {answer}" for answer in answers]}

    return node


def asking_chain(api, counts: Counts, *questions: str):
    """START -> before -> ask (interrupts for ``questions``) -> after."""
    builder = api.StateGraph(LogState)
    builder.add_sequence(
        [
            ("before", logger(counts, "before")),
            ("ask", asking(api, counts, "ask", *questions)),
            ("after", logger(counts, "after")),
        ]
    )
    builder.add_edge(api.START, "before")
    return builder.compile(checkpointer=api.InMemorySaver())


def scenario_interrupt_and_resume(api, tmp_path):
    counts = Counts()
    graph = asking_chain(api, counts, "name?")
    config = thread()
    return {
        "first": graph.invoke({"log": []}, config),
        "paused": snapshot(graph, config),
        "resumed": graph.invoke(api.Command(resume="bob"), config),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def scenario_interrupt_and_resume_per_durability(api, tmp_path):
    observations = {}
    for durability in DURABILITY_MODES:
        counts = Counts()
        graph = asking_chain(api, counts, "name?")
        config = thread()
        graph.invoke({"log": []}, config, durability=durability)
        paused_history = history(graph, config)
        resumed = graph.invoke(api.Command(resume="eve"), config, durability=durability)
        observations[durability] = {
            "paused_history": paused_history,
            "resumed": resumed,
            "history": history(graph, config),
            "counts": counts.as_dict(),
        }
    return observations


def scenario_interrupt_stream_and_resume(api, tmp_path):
    counts = Counts()
    graph = asking_chain(api, counts, "name?")
    config = thread()
    first = list(graph.stream({"log": []}, config, stream_mode="updates"))
    resumed = list(graph.stream(api.Command(resume="ann"), config, stream_mode="updates"))
    return {"first": first, "resumed": resumed, "counts": counts.as_dict()}


def scenario_two_sequential_interrupts(api, tmp_path):
    counts = Counts()
    graph = asking_chain(api, counts, "first?", "second?")
    config = thread()
    return {
        "first": graph.invoke({"log": []}, config),
        "second": graph.invoke(api.Command(resume="one"), config),
        "paused": snapshot(graph, config),
        "done": graph.invoke(api.Command(resume="two"), config),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def parallel_asking_graph(api, counts: Counts):
    """START -> left, right (each interrupts once) -> join."""
    builder = api.StateGraph(LogState)
    builder.add_node("left", asking(api, counts, "left", "left?"))
    builder.add_node("right", asking(api, counts, "right", "right?"))
    builder.add_node("join", logger(counts, "join"))
    builder.add_edge(api.START, "left")
    builder.add_edge(api.START, "right")
    builder.add_edge(["left", "right"], "join")
    return builder.compile(checkpointer=api.InMemorySaver())


def scenario_parallel_interrupts_resume_map(api, tmp_path):
    counts = Counts()
    graph = parallel_asking_graph(api, counts)
    config = thread()
    first = graph.invoke({"log": []}, config)
    raised = first.pop("__interrupt__")
    pending = graph.get_state(config).interrupts
    answers = {item.id: f"answer to {item.value}" for item in pending}
    # Interrupt ids are opaque hashes; only their distinctness is compared.
    return {
        "first": first,
        # LangGraph lists invoke's interrupts in the order their tasks raised them (thread
        # timing), but get_state's in task order.
        "raised": sorted(item.value for item in raised),
        "pending": [item.value for item in pending],
        "ids_distinct": len(set(answers)) == len(pending) == 2,
        "raised_ids_match_pending": {item.id for item in raised} == set(answers),
        "resumed": graph.invoke(api.Command(resume=answers), config),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def scenario_parallel_interrupts_resume_one_by_one(api, tmp_path):
    # LangGraph: resuming one interrupt re-runs the other interrupted node too, which
    # interrupts again.
    counts = Counts()
    graph = parallel_asking_graph(api, counts)
    config = thread()
    graph.invoke({"log": []}, config)
    right = next(item for item in graph.get_state(config).interrupts if item.value == "right?")
    return {
        "resume_right": graph.invoke(api.Command(resume={right.id: "R"}), config),
        "paused": snapshot(graph, config),
        "counts_after_right": counts.as_dict(),
        # A plain value resumes the one interrupt that is still pending.
        "resume_left": graph.invoke(api.Command(resume="L"), config),
        "counts": counts.as_dict(),
    }


def scenario_resume_ambiguous_and_unknown(api, tmp_path):
    # LangGraph: with two pending interrupts, a plain value or a map of unknown ids raises
    # RuntimeError and changes nothing; with one pending interrupt, a map whose keys are not
    # interrupt ids is taken as the resume value itself.
    counts = Counts()
    graph = parallel_asking_graph(api, counts)
    config = thread()
    graph.invoke({"log": []}, config)
    single = asking_chain(api, counts, "single?")
    single.invoke({"log": []}, thread("single"))
    return {
        "plain_value_for_two": outcome(lambda: graph.invoke(api.Command(resume="x"), config)),
        "after_plain": snapshot(graph, config),
        "unknown_id": outcome(lambda: graph.invoke(api.Command(resume={"nope": 1}), config)),
        "after_unknown": snapshot(graph, config),
        "unknown_id_for_one": outcome(
            lambda: single.invoke(api.Command(resume={"nope": 1}), thread("single"))
        ),
        "counts": counts.as_dict(),
    }


def scenario_resume_without_pending_interrupt(api, tmp_path):
    # LangGraph: on a finished thread the resume is a no-op returning the final values; on a
    # new thread it runs the graph from START with no input.
    counts = Counts()
    graph = chain_builder(api, counts).compile(checkpointer=api.InMemorySaver())
    config = thread()
    graph.invoke({"log": []}, config)
    return {
        "finished_thread": outcome(lambda: graph.invoke(api.Command(resume="x"), config)),
        "new_thread": outcome(lambda: graph.invoke(api.Command(resume="x"), thread("new"))),
        "counts": counts.as_dict(),
    }


def scenario_interrupt_before_and_after(api, tmp_path):
    counts = Counts()
    graph = chain_builder(api, counts, "abcd").compile(
        checkpointer=api.InMemorySaver(), interrupt_before=["b"], interrupt_after=["c"]
    )
    config = thread()
    return {
        # LangGraph: invoke's result has no "__interrupt__" key at a static interrupt.
        "first": graph.invoke({"log": []}, config),
        "before_b": snapshot(graph, config),
        "second": graph.invoke(None, config),
        "after_c": snapshot(graph, config),
        "third": graph.invoke(None, config),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def scenario_interrupts_passed_to_invoke(api, tmp_path):
    # A graph compiled without static interrupts, paused by the run's own: before `b` and
    # after `c` on one run, then "*" (before every node); the compiled graph's
    # `interrupt_before=["d"]` is replaced, not added to, by a run that passes its own.
    counts = Counts()
    graph = chain_builder(api, counts, "abcd").compile(checkpointer=api.InMemorySaver())
    config = thread()
    observed = {
        "first": graph.invoke({"log": []}, config, interrupt_before=["b"],
                              interrupt_after=["c"]),
        "before_b": snapshot(graph, config),
        "second": graph.invoke(None, config, interrupt_before=["b"], interrupt_after=["c"]),
        "after_c": snapshot(graph, config),
        "third": graph.invoke(None, config),
        "history": history(graph, config),
    }
    every = thread("every")
    observed["star"] = [graph.invoke({"log": []}, every, interrupt_before="*")]
    observed["star"].append(graph.invoke(None, every, interrupt_before="*"))
    observed["star_state"] = snapshot(graph, every)
    static = chain_builder(api, counts, "ab").compile(
        checkpointer=api.InMemorySaver(), interrupt_before=["b"])
    replaced = thread("replaced")
    observed["replaced"] = static.invoke({"log": []}, replaced, interrupt_after=["a"])
    observed["replaced_state"] = snapshot(static, replaced)
    return observed | {"counts": counts.as_dict()}


def scenario_update_state_then_continue(api, tmp_path):
    counts = Counts()
    graph = chain_builder(api, counts).compile(
        checkpointer=api.InMemorySaver(), interrupt_before=["b"]
    )
    observations = {}
    for variant, as_node in (("inferred", None), ("as_b", "b"), ("as_a", "a")):
        config = thread(variant)
        graph.invoke({"log": []}, config)
        graph.update_state(config, {"log": [f"manual {variant}"]}, as_node=as_node)
        observations[variant] = {
            "updated": snapshot(graph, config),
            "continued": graph.invoke(None, config),
            "history": history(graph, config),
        }
    return observations | {"counts": counts.as_dict()}


def scenario_new_input_on_interrupted_thread(api, tmp_path):
    # LangGraph drops the pending interrupt and starts a new run from START on the old values
    # (an "input" checkpoint at the next step).
    counts = Counts()
    graph = asking_chain(api, counts, "name?")
    config = thread()
    graph.invoke({"log": []}, config)
    return {
        "new_input": graph.invoke({"log": ["again"]}, config),
        "state": snapshot(graph, config),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def checkpoint_before(graph, config, node: str):
    """The config of the newest checkpoint whose next task is ``node``."""
    return next(state.config for state in graph.get_state_history(config) if state.next == (node,))


def scenario_time_travel_replay(api, tmp_path):
    # LangGraph: replaying copies the chosen checkpoint as a new "fork" checkpoint, then
    # re-runs the nodes after it.
    counts = Counts()
    graph = chain_builder(api, counts).compile(checkpointer=api.InMemorySaver())
    config = thread()
    graph.invoke({"log": []}, config)
    replayed = graph.invoke(None, checkpoint_before(graph, config, "b"))
    return {
        "replayed": replayed,
        "state": snapshot(graph, config),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def scenario_fork_from_old_checkpoint(api, tmp_path):
    counts = Counts()
    graph = chain_builder(api, counts).compile(checkpointer=api.InMemorySaver())
    config = thread()
    graph.invoke({"log": []}, config)
    fork = graph.update_state(checkpoint_before(graph, config, "b"), {"log": ["forked"]})
    return {
        "fork_state": snapshot(graph, fork),
        "continued": graph.invoke(None, fork),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def subgraph_interrupt_then_resume(api, variant: str) -> dict:
    counts = Counts()
    sub_builder = api.StateGraph(LogState)
    sub_builder.add_sequence(
        [
            ("s1", logger(counts, "s1")),
            ("s2", asking(api, counts, "s2", "sub?")),
            ("s3", logger(counts, "s3")),
        ]
    )
    sub_builder.add_edge(api.START, "s1")
    subgraph = sub_builder.compile()

    def call_subgraph(state):
        counts.hit("parent_node")
        return {"log": subgraph.invoke({"log": []})["log"]}

    builder = api.StateGraph(LogState)
    sub_node = subgraph if variant == "as_node" else call_subgraph
    builder.add_sequence(
        [("p1", logger(counts, "p1")), ("sub", sub_node), ("p2", logger(counts, "p2"))]
    )
    builder.add_edge(api.START, "p1")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    config = thread()
    first = graph.invoke({"log": []}, config)
    sub_state = graph.get_state(config, subgraphs=True).tasks[0].state
    return {
        "first": first,
        "paused": snapshot(graph, config),
        # The subgraph's own checkpoint, under its namespace.
        "sub_paused": {"next": tuple(sub_state.next), "values": sub_state.values},
        "resumed": graph.invoke(api.Command(resume="yes"), config),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def scenario_subgraph_interrupt_resumed_from_parent(api, tmp_path):
    # As a node, the subgraph returns its whole state, so the parent's reducer appends "p1"
    # a second time.
    return {
        variant: subgraph_interrupt_then_resume(api, variant)
        for variant in ("as_node", "called_in_node")
    }
