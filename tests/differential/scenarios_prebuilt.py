"""Scenarios for the prebuilt agent pieces: ToolNode, tools_condition, create_react_agent.

Models are `ScriptedChatModel`s (no network): each scenario scripts the replies, so both
implementations see the same conversation, and records what the model was sent.

No `from __future__ import annotations` here: langchain-core reads a tool's annotations
(`Annotated[dict, api.InjectedState]`) as objects to tell injected arguments apart.
"""

import asyncio
from typing import Annotated, Any, TypedDict

import pydantic
from langchain_core.messages import SystemMessage, ToolMessage
from langchain_core.tools import InjectedToolCallId, tool

from .fake_chat import ScriptedChatModel, asks, call, says
from .observe import Counts, history, outcome, snapshot
from .scenarios_async_stream import scrub
from .scenarios_graph import thread


def transcript(messages):
    """Each message's kind, text, name, tool calls, answered call and status."""
    return [
        (m.type, m.content, getattr(m, "name", None),
         [(c["name"], c["args"], c["id"]) for c in getattr(m, "tool_calls", None) or []],
         getattr(m, "tool_call_id", None), getattr(m, "status", None))
        for m in messages
    ]


def observed(result):
    """A run's output with its messages as a transcript."""
    if not isinstance(result, dict):
        return result
    return {k: transcript(v) if k == "messages" else v for k, v in result.items()}


def arithmetic(counts: Counts):
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        counts.hit("add")
        return a + b

    @tool
    def shout(text: str) -> str:
        """Upper-case a text."""
        counts.hit("shout")
        return text.upper()

    return [add, shout]


def model_log(model):
    return {"seen": model.seen, "bound": model.bound}


# ---- the ReAct loop -------------------------------------------------------------------------


def scenario_react_one_tool_call(api, tmp_path):
    counts = Counts()
    model = ScriptedChatModel(replies=[asks(call("add", {"a": 2, "b": 3}, "c1")), says("5")])
    agent = api.create_react_agent(model, arithmetic(counts), checkpointer=api.InMemorySaver())
    config = thread()
    result = agent.invoke({"messages": [("user", "2+3?")]}, config)
    return {"result": observed(result), "history": history(agent, config),
            "model": model_log(model), "counts": counts.as_dict()}


def scenario_react_parallel_tool_calls(api, tmp_path):
    observations = {}
    for version in ("v1", "v2"):
        counts = Counts()
        model = ScriptedChatModel(replies=[
            asks(call("add", {"a": 1, "b": 2}, "c1"), call("shout", {"text": "hi"}, "c2"),
                 call("add", {"a": 10, "b": 20}, "c3")),
            asks(call("shout", {"text": "again"}, "c4")),
            says("all done"),
        ])
        agent = api.create_react_agent(model, arithmetic(counts), version=version,
                                       checkpointer=api.InMemorySaver())
        config = thread()
        result = agent.invoke({"messages": [("user", "go")]}, config)
        observations[version] = {
            "result": observed(result), "history": history(agent, config),
            "model": model_log(model), "counts": counts.as_dict(),
        }
    return observations


def scenario_react_return_direct_and_unknown_tool(api, tmp_path):
    @tool(return_direct=True)
    def lookup(key: str) -> str:
        """Look a key up and answer with it directly."""
        return f"value of {key}"

    model = ScriptedChatModel(replies=[
        asks(call("missing_tool", {"x": 1}, "c1")),
        asks(call("lookup", {"key": "k"}, "c2")),
        says("never reached"),
    ])
    agent = api.create_react_agent(model, [lookup])
    return {"result": observed(agent.invoke({"messages": [("user", "find k")]})),
            "model": model_log(model)}


def scenario_react_checkpointer_two_turns(api, tmp_path):
    counts = Counts()
    model = ScriptedChatModel(replies=[
        asks(call("add", {"a": 1, "b": 1}, "c1")), says("2"),
        asks(call("shout", {"text": "two"}, "c2")), says("TWO"),
    ])
    agent = api.create_react_agent(model, arithmetic(counts), checkpointer=api.InMemorySaver(),
                                   name="calc")
    config = thread("chat")
    first = agent.invoke({"messages": [("user", "1+1?")]}, config)
    second = agent.invoke({"messages": [("user", "shout it")]}, config)
    other = agent.get_state(thread("other")).values
    return {"first": observed(first), "second": observed(second), "other": other,
            "history": history(agent, config), "model": model_log(model),
            "counts": counts.as_dict()}


def scenario_react_interrupt_before_tools(api, tmp_path):
    counts = Counts()
    model = ScriptedChatModel(replies=[
        asks(call("add", {"a": 4, "b": 5}, "c1"), call("shout", {"text": "x"}, "c2")),
        says("9 and X"),
    ])
    agent = api.create_react_agent(model, arithmetic(counts), checkpointer=api.InMemorySaver(),
                                   interrupt_before=["tools"])
    config = thread()
    first = agent.invoke({"messages": [("user", "go")]}, config)
    paused = snapshot(agent, config)
    paused["values"] = observed(paused["values"])
    counts_paused = counts.as_dict()
    resumed = agent.invoke(None, config)
    return {"first": observed(first), "paused": paused, "counts_paused": counts_paused,
            "resumed": observed(resumed), "history": history(agent, config),
            "counts": counts.as_dict()}


def scenario_react_interrupt_after_agent(api, tmp_path):
    counts = Counts()
    model = ScriptedChatModel(replies=[asks(call("shout", {"text": "a"}, "c1")), says("A")])
    agent = api.create_react_agent(model, arithmetic(counts), checkpointer=api.InMemorySaver(),
                                   interrupt_after=["agent"])
    config = thread()
    steps = [observed(agent.invoke({"messages": [("user", "go")]}, config))]
    steps.append(snapshot(agent, config)["next"])
    steps.append(observed(agent.invoke(None, config)))
    steps.append(observed(agent.invoke(None, config)))
    return {"steps": steps, "counts": counts.as_dict()}


def scenario_react_interrupt_inside_tool(api, tmp_path):
    counts = Counts()

    @tool
    def approve(amount: int) -> str:
        """Ask a human to approve a payment."""
        counts.hit("approve")
        answer = api.interrupt({"amount": amount})
        return f"{amount}: {answer}"

    model = ScriptedChatModel(replies=[
        asks(call("approve", {"amount": 5}, "c1"), call("add", {"a": 1, "b": 1}, "c2")),
        says("paid"),
    ])
    agent = api.create_react_agent(model, [approve, *arithmetic(counts)],
                                   checkpointer=api.InMemorySaver())
    config = thread()
    first = agent.invoke({"messages": [("user", "pay")]}, config)
    paused = snapshot(agent, config)
    resumed = agent.invoke(api.Command(resume="yes"), config)
    return {"first": observed(first), "paused_next": paused["next"],
            "paused_interrupts": paused["interrupts"], "resumed": observed(resumed),
            "counts": counts.as_dict()}


# ---- prompts and structured output ----------------------------------------------------------


def scenario_react_prompts(api, tmp_path):
    class UserState(TypedDict):
        messages: Annotated[list, api.add_messages]
        remaining_steps: api.RemainingSteps
        user: str

    def personal(state):
        return [SystemMessage(content=f"You talk to {state['user']}"), *state["messages"]]

    observations = {}
    for label, prompt in (("none", None), ("str", "Be brief."),
                          ("system", SystemMessage(content="Be kind.")), ("callable", personal)):
        model = ScriptedChatModel(replies=[asks(call("shout", {"text": "q"}, "c1")), says("ok")])
        agent = api.create_react_agent(model, arithmetic(Counts()), prompt=prompt,
                                       state_schema=UserState if label == "callable" else None)
        result = agent.invoke({"messages": [("user", "hello")], "user": "ada"}
                              if label == "callable" else {"messages": [("user", "hello")]})
        observations[label] = {"result": observed(result), "model": model_log(model)}
    return observations


def scenario_react_structured_response(api, tmp_path):
    class Weather(pydantic.BaseModel):
        """The weather in a city."""

        city: str
        degrees: int

    as_dict = {"title": "Forecast", "description": "A forecast.", "type": "object",
               "properties": {"city": {"type": "string"}, "rain": {"type": "boolean"}},
               "required": ["city", "rain"]}
    observations = {}
    for label, response_format, reply in (
        ("pydantic", Weather, asks(call("Weather", {"city": "Oslo", "degrees": 3}, "s1"))),
        ("tuple", ("Answer as a forecast.", as_dict),
         asks(call("Forecast", {"city": "Rome", "rain": False}, "s1"))),
    ):
        counts = Counts()
        model = ScriptedChatModel(replies=[
            asks(call("shout", {"text": "sky"}, "c1")), says("mild"), reply,
        ])
        agent = api.create_react_agent(model, arithmetic(counts),
                                       response_format=response_format)
        result = agent.invoke({"messages": [("user", "weather?")]})
        structured = result.pop("structured_response")
        observations[label] = {
            "result": observed(result),
            "structured": (type(structured).__name__, structured.model_dump()
                           if isinstance(structured, pydantic.BaseModel) else structured),
            "model": model_log(model),
        }
    no_tools = ScriptedChatModel(replies=[says("plain"), asks(call("Weather", {
        "city": "Lima", "degrees": 20}, "s1"))])
    agent = api.create_react_agent(no_tools, [], response_format=Weather)
    result = agent.invoke({"messages": [("user", "weather?")]})
    observations["no_tools"] = {"result": observed({**result, "structured_response": None}),
                                "structured": result["structured_response"].model_dump(),
                                "model": model_log(no_tools)}
    return observations


# ---- ToolNode in hand-built graphs ----------------------------------------------------------


def hand_built(api, model, tools, *, state=None, store=None, **tool_node_options):
    """START -> agent -> (tools_condition) -> tools -> agent, as LangGraph's docs build it."""
    counts = Counts()

    def agent(state):
        counts.hit("agent")
        return {"messages": [model.invoke(state["messages"])]}

    builder = api.StateGraph(state or api.MessagesState)
    builder.add_node("agent", agent)
    builder.add_node(api.ToolNode(tools, **tool_node_options))
    builder.add_edge(api.START, "agent")
    builder.add_conditional_edges("agent", api.tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=api.InMemorySaver(), store=store), counts


def scenario_tools_condition_hand_built(api, tmp_path):
    tool_counts = Counts()
    model = ScriptedChatModel(replies=[
        asks(call("add", {"a": 1, "b": 2}, "c1"), call("add", {"a": 3, "b": 4}, "c2")),
        says("3 and 7"),
    ])
    graph, counts = hand_built(api, model, arithmetic(tool_counts))
    config = thread()
    result = graph.invoke({"messages": [("user", "sums")]}, config)

    mapped = api.StateGraph(api.MessagesState)
    mapped.add_node("agent", lambda state: {"messages": [says("no tools")]})
    mapped.add_node("tools", api.ToolNode(arithmetic(tool_counts)))
    mapped.add_edge(api.START, "agent")
    mapped.add_conditional_edges("agent", api.tools_condition,
                                 {"tools": "tools", api.END: api.END})
    return {
        "result": observed(result), "history": history(graph, config),
        "counts": {**counts.as_dict(), **tool_counts.as_dict()},
        "mapped": observed(mapped.compile().invoke({"messages": [("user", "x")]})),
        "condition": [api.tools_condition({"messages": [says("a")]}),
                      api.tools_condition([asks(call("add", {}, "z"))]),
                      outcome(lambda: api.tools_condition({"messages": []}))],
    }


def raising_tools(counts: Counts):
    @tool
    def divide(a: int, b: int) -> float:
        """Divide a by b."""
        counts.hit("divide")
        return a / b

    @tool
    def parse(text: str) -> int:
        """Parse an integer."""
        counts.hit("parse")
        return int(text)

    return [divide, parse]


ERROR_CALLS = asks(call("divide", {"a": 1, "b": 0}, "c1"), call("parse", {"text": "x"}, "c2"),
                   call("divide", {"a": 6}, "c3"))


def only_value_errors(error: ValueError) -> str:
    return f"value error: {error}"


def scenario_tool_errors_handled(api, tmp_path):
    observations = {}
    for label, handling in (
        ("true", True), ("text", "Something broke."), ("callable", lambda e: f"<{e!r}>"),
        ("types", (ZeroDivisionError, ValueError)),
    ):
        counts = Counts()
        model = ScriptedChatModel(replies=[ERROR_CALLS, says("ok")])
        graph, _ = hand_built(api, model, raising_tools(counts), handle_tool_errors=handling)
        config = thread()
        run = outcome(lambda g=graph, c=config: g.invoke({"messages": [("user", "go")]}, c))
        observations[label] = {
            "run": observed(run.get("result")) or run,
            "next": snapshot(graph, config)["next"],
            "counts": counts.as_dict(),
        }
    return observations


def scenario_tool_errors_unhandled(api, tmp_path):
    parse_x = call("parse", {"text": "x"}, "c2")
    bad_arguments = call("divide", {"a": "one", "b": 2}, "c4")
    observations = {}
    for label, handling, calls in (
        ("default", None, ERROR_CALLS.tool_calls),
        ("false", False, [bad_arguments]),
        ("annotated_handler", only_value_errors, [parse_x, call("divide", {"a": 1, "b": 0}, "c1")]),
        ("other_type", KeyError, [parse_x]),
    ):
        counts = Counts()
        model = ScriptedChatModel(replies=[asks(*calls), says("ok")])
        options = {} if handling is None else {"handle_tool_errors": handling}
        graph, agent_counts = hand_built(api, model, raising_tools(counts), **options)
        config = thread()
        run = outcome(lambda g=graph, c=config: g.invoke({"messages": [("user", "go")]}, c))
        state = snapshot(graph, config)
        observations[label] = {
            "run": run, "next": state["next"], "tasks": state["tasks"],
            "values": observed(state["values"]),
            "counts": {**counts.as_dict(), **agent_counts.as_dict()},
        }
    # A handler annotated for ValueError answers parse's error and lets divide's through.
    counts = Counts()
    model = ScriptedChatModel(replies=[asks(parse_x), says("ok")])
    graph, _ = hand_built(api, model, raising_tools(counts), handle_tool_errors=only_value_errors)
    observations["annotated_handled"] = observed(
        graph.invoke({"messages": [("user", "go")]}, thread()))
    # A bad argument alone is the default handler's case: the model gets the message.
    model = ScriptedChatModel(replies=[asks(bad_arguments), says("ok")])
    graph, _ = hand_built(api, model, raising_tools(counts))
    observations["default_bad_arguments"] = observed(
        graph.invoke({"messages": [("user", "go")]}, thread()))
    return observations


# ---- injection and Commands -----------------------------------------------------------------


def scenario_tool_node_injected_state_and_store(api, tmp_path):
    class Session(TypedDict):
        messages: Annotated[list, api.add_messages]
        remaining_steps: api.RemainingSteps
        user: str

    @tool
    def remember(fact: str, user: Annotated[str, api.InjectedState("user")],
                 store: Annotated[Any, api.InjectedStore()]) -> str:
        """Remember a fact about the user."""
        store.put(("facts", user), fact, {"fact": fact})
        return f"remembered {fact} for {user}"

    @tool
    def recall(state: Annotated[dict, api.InjectedState],
               store: Annotated[Any, api.InjectedStore()]) -> str:
        """List what is remembered about the user."""
        found = sorted(item.key for item in store.search(("facts", state["user"])))
        return f"{state['user']} ({len(state['messages'])} messages): {found}"

    store = api.InMemoryStore()
    observations = {}
    for version in ("v1", "v2"):
        model = ScriptedChatModel(replies=[
            # "user" is forged by the model: injected arguments are the graph's, not its own.
            asks(call("remember", {"fact": "tea", "user": "mallory"}, "c1"),
                 call("remember", {"fact": "cats"}, "c2")),
            asks(call("recall", {}, "c3")),
            says("done"),
        ])
        agent = api.create_react_agent(model, [remember, recall], state_schema=Session,
                                       store=store, version=version)
        result = agent.invoke({"messages": [("user", "hi")], "user": f"ada-{version}"})
        observations[version] = {"result": observed(result), "model": model_log(model)}

    model = ScriptedChatModel(replies=[asks(call("recall", {}, "c1")), says("done")])
    graph, _ = hand_built(api, model, [recall], state=Session, store=store)
    observations["hand_built"] = observed(
        graph.invoke({"messages": [("user", "hi")], "user": "ada-v1"}, thread()))
    no_store, _ = hand_built(api, ScriptedChatModel(replies=[asks(call("recall", {}, "c1"))]),
                             [recall], state=Session)
    observations["no_store"] = outcome(
        lambda: no_store.invoke({"messages": [("user", "hi")], "user": "x"}, thread()))
    return observations


def scenario_tool_returns_command(api, tmp_path):
    class Profile(TypedDict):
        messages: Annotated[list, api.add_messages]
        remaining_steps: api.RemainingSteps
        name: str

    @tool
    def rename(new_name: str, call_id: Annotated[str, InjectedToolCallId]) -> Any:
        """Change the user's name."""
        return api.Command(update={
            "name": new_name,
            "messages": [ToolMessage(f"renamed to {new_name}", tool_call_id=call_id)],
        })

    @tool
    def forgetful(call_id: Annotated[str, InjectedToolCallId]) -> Any:
        """Update state without answering the call."""
        return api.Command(update={"name": "lost"})

    model = ScriptedChatModel(replies=[
        asks(call("rename", {"new_name": "Ada"}, "c1"), call("add", {"a": 1, "b": 1}, "c2")),
        says("renamed"),
    ])
    agent = api.create_react_agent(model, [rename, forgetful, *arithmetic(Counts())],
                                   state_schema=Profile, checkpointer=api.InMemorySaver())
    config = thread()
    result = agent.invoke({"messages": [("user", "call me Ada")], "name": "?"}, config)

    bad_model = ScriptedChatModel(replies=[asks(call("forgetful", {}, "c1")), says("x")])
    bad = api.create_react_agent(bad_model, [forgetful], state_schema=Profile)

    @tool
    def escalate(reason: str, call_id: Annotated[str, InjectedToolCallId]) -> Any:
        """Hand the conversation to a human."""
        return api.Command(goto="human", update={
            "messages": [ToolMessage(f"escalated: {reason}", tool_call_id=call_id)]})

    counts = Counts()

    def human(state):
        counts.hit("human")
        return {"name": "human"}

    model = ScriptedChatModel(replies=[asks(call("escalate", {"reason": "angry"}, "c1")),
                                       says("handed over")])
    return {"result": observed(result), "history": history(agent, config),
            "forgetful": outcome(lambda: bad.invoke({"messages": [("user", "x")], "name": "?"})),
            "goto": observed(goto_graph(api, model, escalate, human, Profile).invoke(
                {"messages": [("user", "help")], "name": "?"})),
            "goto_counts": counts.as_dict()}


def goto_graph(api, model, escalate, human, state):
    """agent -> tools, where a tool's Command(goto="human") runs "human" beside "agent"."""
    builder = api.StateGraph(state)
    builder.add_node("agent", lambda s: {"messages": [model.invoke(s["messages"])]})
    builder.add_node(api.ToolNode([escalate]))
    builder.add_node("human", human)
    builder.add_edge(api.START, "agent")
    builder.add_conditional_edges("agent", api.tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile()


# ---- what create_react_agent refuses --------------------------------------------------------


def scenario_react_agent_bad_input(api, tmp_path):
    class NoMessages(TypedDict):
        user: str

    def build(**options):
        def attempt():
            api.create_react_agent(ScriptedChatModel(replies=[]), arithmetic(Counts()), **options)
            return "built"

        return outcome(attempt)

    model = ScriptedChatModel(replies=[says("unreached")])
    agent = api.create_react_agent(model, arithmetic(Counts()))
    dangling = [("user", "hi"), asks(call("add", {"a": 1, "b": 1}, "c9"))]
    return {
        "bad_version": build(version="v3"),
        "bad_schema": build(state_schema=NoMessages),
        "unknown_option": build(colour="red"),
        "bad_interrupt_node": build(interrupt_before=["nowhere"]),
        "dangling_tool_call": outcome(lambda: agent.invoke({"messages": dangling})),
        "model_calls": len(model.seen),
    }


def scenario_react_recursion_limit(api, tmp_path):
    """Near the limit the agent answers "Sorry, need more steps" instead of failing; the
    boundary depends on the steps left at each agent step, and on return_direct tools."""
    @tool(return_direct=True)
    def final(text: str) -> str:
        """Answer directly."""
        return text

    observations = {}
    for limit in (3, 4, 5, 6, 7):
        model = ScriptedChatModel(replies=[asks(call("add", {"a": i, "b": i}, f"c{i}"))
                                           for i in range(10)])
        agent = api.create_react_agent(model, arithmetic(Counts()))
        observations[limit] = outcome(lambda a=agent, n=limit: observed(
            a.invoke({"messages": [("user", "loop")]}, {"recursion_limit": n})))
        model = ScriptedChatModel(replies=[asks(call("add", {"a": 1, "b": 1}, "c1")),
                                           asks(call("final", {"text": "bye"}, "c2"))])
        agent = api.create_react_agent(model, [final, *arithmetic(Counts())])
        observations[f"direct {limit}"] = outcome(lambda a=agent, n=limit: observed(
            a.invoke({"messages": [("user", "loop")]}, {"recursion_limit": n})))
    return observations


def scenario_remaining_steps_in_a_node(api, tmp_path):
    """LangGraph fills `remaining_steps` in every node's state; graphdef only tells the
    prebuilt agent (DELIBERATE)."""
    class Steps(TypedDict):
        messages: Annotated[list, api.add_messages]
        remaining_steps: api.RemainingSteps

    builder = api.StateGraph(Steps)
    builder.add_node("look", lambda state: {"messages": [
        ("ai", str(state.get("remaining_steps")))]})
    builder.add_edge(api.START, "look")
    return observed(builder.compile().invoke({"messages": [("user", "x")]}))


# ---- async and streams (in-process only: named async_/stream_, see the distributed suite) ----


def scenario_async_react_agent(api, tmp_path):
    counts = Counts()
    model = ScriptedChatModel(replies=[
        asks(call("add", {"a": 1, "b": 2}, "c1"), call("shout", {"text": "a"}, "c2")), says("ok"),
        asks(call("add", {"a": 3, "b": 3}, "c3")), says("6"),
    ])
    agent = api.create_react_agent(model, arithmetic(counts), checkpointer=api.InMemorySaver())

    async def run():
        first = await agent.ainvoke({"messages": [("user", "go")]}, thread())
        updates = [
            {node: observed(update) for node, update in chunk.items()}
            async for chunk in agent.astream({"messages": [("user", "more")]}, thread(),
                                             stream_mode="updates")
        ]
        return first, updates

    first, updates = asyncio.run(run())
    return {"first": observed(first), "updates": updates, "counts": counts.as_dict()}


def scenario_stream_react_agent_messages_and_updates(api, tmp_path):
    model = ScriptedChatModel(replies=[asks(call("shout", {"text": "hey"}, "c1")), says("HEY")])
    agent = api.create_react_agent(model, arithmetic(Counts()), name="shouter")
    chunks = agent.stream({"messages": [("user", "shout hey")]},
                          stream_mode=["messages", "updates"])
    return scrub([
        (mode, (transcript([chunk[0]]), {k: chunk[1].get(k) for k in (
            "langgraph_node", "langgraph_step", "langgraph_triggers")})
         if mode == "messages" else
         {node: observed(update) for node, update in chunk.items()})
        for mode, chunk in chunks
    ])
