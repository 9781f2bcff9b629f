"""Scenarios for the functional API: @entrypoint and @task."""

from __future__ import annotations

from .observe import Counts, history, outcome, snapshot
from .scenarios_durable import DURABILITY_MODES, Transient
from .scenarios_graph import thread


def scenario_entrypoint_parallel_tasks(api, tmp_path):
    counts = Counts()

    @api.task
    def square(x):
        counts.hit(f"square {x}")
        return x * x

    @api.entrypoint(checkpointer=api.InMemorySaver())
    def main(items):
        counts.hit("main")
        futures = [square(x) for x in items]
        return [future.result() for future in futures]

    config = thread()
    return {
        "invoke": main.invoke([1, 2, 3], config),
        "state": snapshot(main, config),
        "history": history(main, config),
        "counts": counts.as_dict(),
    }


def scenario_entrypoint_stream_sequential_tasks(api, tmp_path):
    counts = Counts()

    @api.task
    def add_one(x):
        counts.hit("add_one")
        return x + 1

    @api.entrypoint(checkpointer=api.InMemorySaver())
    def main(x):
        counts.hit("main")
        return add_one(add_one(x).result()).result()

    return {
        "updates": list(main.stream(1, thread("updates"), stream_mode="updates")),
        "values": list(main.stream(1, thread("values"), stream_mode="values")),
        "counts": counts.as_dict(),
    }


def entrypoint_failure_then_resume(api, durability: str) -> dict:
    counts = Counts()

    @api.task
    def fetch(x):
        counts.hit("fetch")
        return x * 2

    @api.task
    def flaky_step(x):
        if counts.hit("flaky_step") == 1:
            raise Transient("flaky_step")
        return x + 1

    @api.entrypoint(checkpointer=api.InMemorySaver())
    def main(x):
        counts.hit("main")
        return flaky_step(fetch(x).result()).result()

    config = thread()
    return {
        "failed": outcome(lambda: main.invoke(5, config, durability=durability)),
        "after_failure": snapshot(main, config),
        "resumed": outcome(lambda: main.invoke(None, config, durability=durability)),
        "history_steps": [entry[:3] for entry in history(main, config)],
        "counts": counts.as_dict(),
    }


def scenario_entrypoint_failure_then_resume(api, tmp_path):
    # LangGraph: the whole entrypoint is one task of step -1, so even "exit" keeps the input
    # checkpoint, and the failed run leaves the thread there.
    return {mode: entrypoint_failure_then_resume(api, mode) for mode in DURABILITY_MODES}


def scenario_entrypoint_interrupt_and_resume(api, tmp_path):
    counts = Counts()

    @api.task
    def draft(topic):
        counts.hit("draft")
        return f"draft about {topic}"

    @api.entrypoint(checkpointer=api.InMemorySaver())
    def main(topic):
        counts.hit("main")
        text = draft(topic).result()
        answer = api.interrupt({"review": text})
        counts.hit("main after interrupt")
        return f"{text}: {answer}"

    config = thread()
    return {
        "first": main.invoke("cats", config),
        "paused": snapshot(main, config),
        "resumed": main.invoke(api.Command(resume="approved"), config),
        "history": history(main, config),
        "counts": counts.as_dict(),
    }


def scenario_entrypoint_interrupt_inside_task(api, tmp_path):
    counts = Counts()

    @api.task
    def ask(question):
        counts.hit("ask")
        return api.interrupt(question)

    @api.entrypoint(checkpointer=api.InMemorySaver())
    def main(question):
        counts.hit("main")
        return {"answer": ask(question).result()}

    config = thread()
    return {
        "first": main.invoke("why?", config),
        "resumed": main.invoke(api.Command(resume="because"), config),
        "counts": counts.as_dict(),
    }


def scenario_entrypoint_previous(api, tmp_path):
    counts = Counts()

    @api.entrypoint(checkpointer=api.InMemorySaver())
    def main(x, *, previous=None):
        counts.hit("main")
        return {"total": (previous or {"total": 0})["total"] + x, "saw": previous}

    return {
        "first": main.invoke(1, thread()),
        "second": main.invoke(2, thread()),
        "third": main.invoke(3, thread()),
        "other_thread": main.invoke(10, thread("other")),
        "state": snapshot(main, thread()),
        "counts": counts.as_dict(),
    }


def scenario_entrypoint_final(api, tmp_path):
    counts = Counts()

    @api.entrypoint(checkpointer=api.InMemorySaver())
    def main(x, *, previous=None):
        counts.hit("main")
        return api.entrypoint.final(value={"x": x, "previous": previous}, save=x * 10)

    return {
        "first": main.invoke(1, thread()),
        "second": main.invoke(2, thread()),
        "state": snapshot(main, thread()),
        "counts": counts.as_dict(),
    }
