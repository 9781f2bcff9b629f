"""User-created assistants through `celerygraph serve`, driven by the real `langgraph-sdk`
clients (sync and async) on real workers: create, get, update (a new version), versions,
set latest, delete, search and count; runs that take the assistant's config and context;
schemas compared with what LangGraph and the reference server derive; subgraphs; a run's
own `interrupt_before`/`interrupt_after`; the `messages` stream mode (also rejoined
mid-run); bad input refused with nothing stored."""

from __future__ import annotations

import asyncio
import uuid
import warnings

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    UnprocessableEntityError,
)
from pydantic import TypeAdapter

from scheduler.server.assistant_records import AssistantRecords
from scheduler.server.backend import assistant_id
from tests.server import API_KEYS, server_fixtures

GREETER = "tests.server_graphs:greeter"
NESTED = "tests.server_graphs:nested"
CHAIN = "tests.dist_graphs:chain"
CHATTY = "tests.server_graphs:chatty"
LOOKER = "tests.server_graphs:looker"

cluster, url, client = server_fixtures(
    "assistants-w1", CELERYGRAPH_GRAPHS="tests.dist_graphs,tests.server_graphs")


def test_create_update_versions_latest_delete(client):
    created = client.assistants.create(GREETER, context={"user": "ada"},
                                       metadata={"team": "x"}, name="Ada's greeter",
                                       description="greets ada")
    aid = created["assistant_id"]
    assert str(uuid.UUID(aid)) == aid
    assert created["graph_id"] == GREETER and created["version"] == 1
    # An assistant's context and its config's `configurable` are kept in step.
    assert created["context"] == {"user": "ada"}
    assert created["config"] == {"configurable": {"user": "ada"}}
    assert (created["name"], created["description"]) == ("Ada's greeter", "greets ada")
    assert client.assistants.get(aid) == created

    with pytest.raises(ConflictError):
        client.assistants.create(GREETER, assistant_id=aid)
    assert client.assistants.create(GREETER, assistant_id=aid, if_exists="do_nothing",
                                    name="other") == created

    updated = client.assistants.update(aid, config={"configurable": {"user": "bo"}},
                                       metadata={"owner": "bo"})
    assert updated["version"] == 2
    assert updated["context"] == {"user": "bo"}
    assert updated["metadata"] == {"team": "x", "owner": "bo"}
    assert updated["name"] == "Ada's greeter"  # what the update leaves out stays
    assert client.assistants.get(aid)["version"] == 2
    versions = client.assistants.get_versions(aid)
    assert [(v["version"], v["context"]) for v in versions] == [(2, {"user": "bo"}),
                                                               (1, {"user": "ada"})]
    assert [v["version"] for v in client.assistants.get_versions(
        aid, metadata={"owner": "bo"})] == [2]

    back = client.assistants.set_latest(aid, 1)
    assert (back["version"], back["context"], back["metadata"]) == (
        1, {"user": "ada"}, {"team": "x"})
    assert client.assistants.get(aid)["version"] == 1
    assert len(client.assistants.get_versions(aid)) == 2  # a version is never dropped

    client.assistants.delete(aid)
    with pytest.raises(NotFoundError):
        client.assistants.get(aid)
    with pytest.raises(NotFoundError):
        client.assistants.get_versions(aid)


def test_runs_take_the_assistants_config_and_context(client):
    aid = client.assistants.create(GREETER, context={"user": "ada"})["assistant_id"]
    thread_id = client.threads.create()["thread_id"]
    assert client.runs.wait(thread_id, aid, input={"log": []}) == {"greeting": "plain hi ada"}
    # The request's context goes over the assistant's, key by key.
    assert client.runs.wait(None, aid, input={"log": []}, context={"user": "bo"}) == {
        "greeting": "plain hi bo"}
    run = client.runs.list(thread_id)[0]
    assert run["assistant_id"] == aid
    assert client.threads.get(thread_id)["metadata"]["assistant_id"] == aid
    client.assistants.update(aid, config={"configurable": {"user": "cy", "tone": "warm"}})
    assert client.runs.wait(None, aid, input={"log": []}) == {"greeting": "warm hi cy"}
    # A request's configurable goes over the assistant's too.
    assert client.runs.wait(None, aid, input={"log": []}, config={
        "configurable": {"tone": "curt"}}) == {"greeting": "curt hi cy"}
    client.assistants.set_latest(aid, 1)
    assert client.runs.wait(None, aid, input={"log": []}) == {"greeting": "plain hi ada"}
    # The graph's own assistant has no context: the run must bring it.
    assert client.runs.wait(None, GREETER, input={"log": []}, context={"user": "di"}) == {
        "greeting": "plain hi di"}


def test_a_runs_metadata_takes_its_assistants_and_threads_as_the_reference(client):
    """The same calls against `langgraph dev` (langgraph-api 0.16.7) give these metadata:
    the assistant's, then an existing thread's (with its graph and assistant), then the
    request's config metadata and metadata; `assistant_id` cannot be spoofed."""
    aid = client.assistants.create(CHAIN, name="mine", metadata={
        "team": "ops", "graph_id": "from-assistant"})["assistant_id"]
    thread_id = client.threads.create(metadata={"owner": "ada"})["thread_id"]
    run = client.runs.create(thread_id, aid, input={"log": []}, metadata={"mine": 1},
                             config={"metadata": {"cfg": 2}})
    expected = {"team": "ops", "graph_id": CHAIN, "owner": "ada", "assistant_id": aid,
                "cfg": 2, "mine": 1}
    assert run["metadata"] == expected
    client.runs.join(thread_id, run["run_id"])
    assert client.runs.get(thread_id, run["run_id"])["metadata"] == expected
    assert client.threads.get(thread_id)["metadata"] == {
        "owner": "ada", "graph_id": CHAIN, "assistant_id": aid}

    # A stateless run has no thread's metadata to take: the assistant's graph_id stays.
    stateless = client.runs.create(None, aid, input={"log": []}, metadata={"mine": 1})
    assert stateless["metadata"] == {"team": "ops", "graph_id": "from-assistant",
                                     "mine": 1, "assistant_id": aid}
    # A graph's own assistant brings `created_by`; the request cannot name another one.
    spoofed = client.runs.create(thread_id, CHAIN, input={"log": []}, metadata={
        "owner": "bob", "assistant_id": "spoof"})
    assert spoofed["metadata"] == {"created_by": "system", "owner": "bob", "graph_id": CHAIN,
                                   "assistant_id": assistant_id(CHAIN)}
    # A thread the run creates starts with the request's metadata and the run's ids.
    created = str(uuid.uuid4())
    on_new = client.runs.create(created, aid, input={"log": []}, if_not_exists="create",
                                metadata={"mine": 3}, config={"metadata": {"cfg": 4}})
    assert on_new["metadata"] == {"team": "ops", "graph_id": "from-assistant", "cfg": 4,
                                  "mine": 3, "assistant_id": aid}
    assert client.threads.get(created)["metadata"] == {
        "graph_id": CHAIN, "assistant_id": aid, "cfg": 4, "mine": 3}


def test_nodes_see_the_runs_metadata_as_the_reference(client):
    """The same calls against `langgraph dev` (langgraph-api 0.16.7): a node's
    `config["metadata"]`, its `messages` chunks' and `tasks` events' metadata and the
    run's checkpoints' metadata carry the run's merged metadata (assistant's, thread's,
    request's), its `run_id`, `thread_id` and `run_attempt`; checkpoints also the
    configurable values.
    What the reference adds about its own deployment (`langgraph_version`,
    `langgraph_api_url`, `langgraph_host`, ...) is left out (README)."""
    aid = client.assistants.create(LOOKER, metadata={"am": 1, "shared": "assistant"},
                                   config={"configurable": {"cfa": "x"}})["assistant_id"]
    thread_id = client.threads.create(metadata={"tm": 2, "shared": "thread"})["thread_id"]
    parts = list(client.runs.stream(
        thread_id, aid, input={"text": "hi"},
        stream_mode=["messages-tuple", "values", "tasks"],
        metadata={"rm": 3, "shared": "request"},
        config={"metadata": {"cm": 4}, "configurable": {"cf": "y"}}))
    run_id = parts[0].data["run_id"]
    merged = {"am": 1, "tm": 2, "rm": 3, "cm": 4, "shared": "request", "graph_id": LOOKER,
              "assistant_id": aid}
    assert client.runs.get(thread_id, run_id)["metadata"] == merged
    seen = {**merged, "run_attempt": 1, "run_id": run_id, "thread_id": thread_id}
    [node] = [p.data for p in parts if p.event == "values"][-1]["seen"]
    assert {k: v for k, v in node.items() if not k.startswith("langgraph_")} == seen
    assert node["langgraph_node"] == "look" and node["langgraph_step"] == 1
    chunks = [p.data[1] for p in parts if p.event == "messages"]
    assert chunks and all(seen.items() <= meta.items() for meta in chunks)
    [task] = [p.data for p in parts if p.event == "tasks" and "input" in p.data]
    assert task["metadata"] == {k: v for k, v in seen.items() if k != "thread_id"}
    history = client.threads.get_history(thread_id)
    assert [s["metadata"]["step"] for s in history] == [1, 0, -1]
    for state in history:
        assert {**seen, "cf": "y", "cfa": "x"}.items() - {"thread_id": thread_id}.items() \
            <= state["metadata"].items()
    assert client.threads.get_history(thread_id, metadata={"run_id": run_id}) == history

    # A stateless run's nodes see the graph's own assistant's metadata and the request's.
    out = client.runs.wait(None, LOOKER, input={"text": "hi"}, metadata={"sl": 1})
    [node] = out["seen"]
    assert {k: node[k] for k in ("created_by", "graph_id", "assistant_id", "sl",
                                 "run_attempt")} == {
        "created_by": "system", "graph_id": LOOKER, "assistant_id": assistant_id(LOOKER),
        "sl": 1, "run_attempt": 1}


GONE = "tests.removed_graphs:old"


def orphan(cluster, metadata):
    """What a redeploy that drops a graph leaves: a user-created assistant of it."""
    store = cluster.client().store
    aid = str(uuid.uuid4())
    AssistantRecords(store.r, f"{store.prefix}:api").create({
        "assistant_id": aid, "graph_id": GONE, "config": {}, "context": {},
        "metadata": metadata, "name": "orphan", "description": None})
    return aid


def test_an_assistant_whose_graph_is_no_longer_served_as_the_reference(client, cluster):
    """As `langgraph dev` answers after a restart without the graph: listed and counted,
    its versions, update and delete work; get, its graph and schemas are 404s, and so is a
    search by that graph."""
    gone = GONE
    aid = orphan(cluster, {"left": "behind"})

    assert [a["assistant_id"] for a in client.assistants.search(
        metadata={"left": "behind"})] == [aid]
    assert client.assistants.count(metadata={"left": "behind"}) == 1
    for call in (client.assistants.get, client.assistants.get_graph,
                 client.assistants.get_schemas, client.assistants.get_subgraphs):
        with pytest.raises(NotFoundError):
            call(aid)
    with pytest.raises(NotFoundError):
        client.assistants.search(graph_id=gone)
    assert [v["version"] for v in client.assistants.get_versions(aid)] == [1]
    assert client.assistants.update(aid, metadata={"n": 2})["version"] == 2
    assert client.assistants.set_latest(aid, 1)["version"] == 1
    client.assistants.delete(aid)
    assert client.assistants.count(metadata={"left": "behind"}) == 0


def test_a_run_whose_graph_is_no_longer_served_fails_as_the_reference(client, cluster,
                                                                      url):
    """As `langgraph dev` (langgraph-api 0.16.7) after a restart without the graph: the run
    is created (pending), and its start fails it: status `error`, `join` and `wait` give
    `{"__error__": {"error", "message"}}`, a stream is that `error` event alone (no
    `metadata` before it), the thread is `error` with the run's graph and assistant in its
    metadata (its state a 404 naming the graph), and a run created with
    `if_not_exists="create"` creates its thread. Here the error is the scheduler's
    `UnknownGraphError` naming the graph. Nothing is left half-done: the thread is free for
    the next run, and holds no checkpoint."""
    aid = orphan(cluster, {"left": "behind"})
    thread_id = client.threads.create(metadata={"x": 1})["thread_id"]
    run = client.runs.create(thread_id, aid, input={"log": []})
    assert run["status"] == "pending"
    assert run["metadata"] == {"left": "behind", "x": 1, "graph_id": GONE,
                               "assistant_id": aid}
    failed = client.runs.join(thread_id, run["run_id"])
    assert failed["__error__"]["error"] == "UnknownGraphError"
    assert GONE in failed["__error__"]["message"]
    assert client.runs.get(thread_id, run["run_id"])["status"] == "error"
    thread = client.threads.get(thread_id)
    assert thread["status"] == "error" and thread["values"] is None
    assert thread["metadata"] == {"x": 1, "graph_id": GONE, "assistant_id": aid}
    # Its state is the graph's to read: 404s naming the graph, as there.
    for call in (client.threads.get_state, client.threads.get_history,
                 lambda t: client.threads.update_state(t, {"log": ["x"]})):
        with pytest.raises(NotFoundError, match=GONE):
            call(thread_id)
    assert cluster.client().saver.head(thread_id) is None

    with pytest.raises(Exception, match="UnknownGraphError: .*tests.removed_graphs:old"):
        client.runs.wait(thread_id, aid, input={"log": []})  # the SDK raises a wait's error
    assert client.runs.wait(thread_id, aid, input={"log": []}, raise_error=False) == failed
    parts = list(client.runs.stream(thread_id, aid, input={"log": []},
                                    stream_mode=["values", "updates"]))
    assert [(p.event, p.data) for p in parts] == [("error", failed["__error__"])]
    assert client.runs.wait(None, aid, input={"log": []}, raise_error=False) == failed
    assert [p.event for p in client.runs.stream(None, aid, input={"log": []})] == ["error"]
    assert [r["status"] for r in client.runs.list(thread_id)] == ["error"] * 4

    created = str(uuid.uuid4())
    run = client.runs.create(created, aid, input={"log": []}, if_not_exists="create")
    assert client.runs.join(created, run["run_id"]) == failed
    assert client.threads.get(created)["metadata"] == {"graph_id": GONE, "assistant_id": aid}
    assert client.threads.get(created)["status"] == "error"

    # The failed runs left the thread free: a served graph's run goes on it at once.
    assert client.runs.wait(thread_id, CHAIN, input={"log": []},
                            multitask_strategy="reject")["log"]
    assert cluster.client().store.active_run(thread_id) is None
    AssistantRecords(cluster.client().store.r,
                     f"{cluster.client().store.prefix}:api").delete(aid)


def test_delete_cancels_its_runs_and_with_delete_threads_its_threads(client, cluster):
    aid = client.assistants.create(CHAIN)["assistant_id"]
    other = client.threads.create()["thread_id"]
    client.runs.wait(other, CHAIN, input={"log": []})
    busy = client.threads.create()["thread_id"]
    run = client.runs.create(busy, aid, input={"log": [], "sleep": 3.0})
    kept = client.assistants.create(CHAIN)["assistant_id"]
    kept_thread = client.threads.create()["thread_id"]
    kept_run = client.runs.create(kept_thread, kept, input={"log": [], "sleep": 3.0})

    client.assistants.delete(aid, delete_threads=True)
    with pytest.raises(NotFoundError):
        client.threads.get(busy)
    assert cluster.client().store.run(busy, run["run_id"]).status == "cancelled"
    assert client.threads.get(other)["thread_id"] == other  # another assistant's thread
    # Without delete_threads its threads stay; its runs still going are cancelled.
    client.assistants.delete(kept)
    assert client.threads.get(kept_thread)["metadata"]["assistant_id"] == kept
    assert cluster.client().store.run(kept_thread, kept_run["run_id"]).status == "cancelled"


def test_search_and_count_include_created_assistants(url):
    async def scenario():
        client = get_client(url=url, api_key=API_KEYS[1])
        tag = str(uuid.uuid4())
        first = await client.assistants.create(GREETER, metadata={"tag": tag, "n": 1},
                                               context={"user": "a"}, name="Alpha one")
        second = await client.assistants.create(CHAIN, metadata={"tag": tag, "n": 2},
                                                name="beta two")
        found = await client.assistants.search(metadata={"tag": tag}, limit=10)
        # Newest first by default, as the reference server sorts.
        assert [a["assistant_id"] for a in found] == [second["assistant_id"],
                                                      first["assistant_id"]]
        assert [a["assistant_id"] for a in await client.assistants.search(
            metadata={"tag": tag}, sort_by="name", sort_order="asc")] == [
            first["assistant_id"], second["assistant_id"]]
        assert [a["name"] for a in await client.assistants.search(
            metadata={"tag": tag}, name="ALPHA")] == ["Alpha one"]
        assert [a["assistant_id"] for a in await client.assistants.search(
            metadata={"tag": tag}, graph_id=CHAIN)] == [second["assistant_id"]]
        assert await client.assistants.count(metadata={"tag": tag}) == 2
        paged = await client.assistants.search(metadata={"tag": tag}, limit=1,
                                               response_format="object")
        assert paged["next"] == "1" and len(paged["assistants"]) == 1
        last = await client.assistants.search(metadata={"tag": tag}, limit=1, offset=1,
                                              response_format="object")
        assert last["next"] is None and last["assistants"][0] == first
        every = await client.assistants.search(limit=100)
        ids = {a["assistant_id"] for a in every}
        assert {first["assistant_id"], assistant_id(GREETER), assistant_id(CHAIN)} <= ids
        assert await client.assistants.count() == len(every)
        picked = await client.assistants.search(metadata={"tag": tag}, select=[
            "assistant_id", "name"])
        assert all(set(a) == {"assistant_id", "name"} for a in picked)
        with pytest.raises(NotFoundError):
            await client.assistants.search(graph_id="no.such:graph")
        await client.assistants.delete(first["assistant_id"])
        await client.assistants.delete(second["assistant_id"])
        assert await client.assistants.count(metadata={"tag": tag}) == 0

    asyncio.run(scenario())


def reference_schemas(graph) -> dict:
    """What the reference server answers for a LangGraph graph
    (`langgraph_api.api.assistants._graph_schemas`, on this LangGraph release)."""
    from langchain_core.runnables.utils import create_model

    fields = {k: (graph.channels[k].UpdateType, None) for k in graph.stream_channels_list}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        configurable = graph.config_schema().model_fields["configurable"].annotation
    return {
        "input_schema": graph.get_input_jsonschema(),
        "output_schema": graph.get_output_jsonschema(),
        "state_schema": create_model(graph.get_name("State"), **fields).model_json_schema(),
        "config_schema": TypeAdapter(configurable).json_schema(),
        "context_schema": graph.get_context_jsonschema(),
    }


def test_schemas_are_the_reference_servers(client):
    from langgraph.graph import START, StateGraph

    from tests.server_graphs import Greeted, Greeting, Who

    builder = StateGraph(Greeting, context_schema=Who, output_schema=Greeted)
    builder.add_node("greet", lambda state: {})
    builder.add_edge(START, "greet")
    expected = {"graph_id": GREETER, **reference_schemas(builder.compile())}
    assert client.assistants.get_schemas(assistant_id(GREETER)) == expected
    created = client.assistants.create(GREETER, context={"user": "x"})["assistant_id"]
    assert client.assistants.get_schemas(created) == expected
    assert expected["input_schema"]["properties"]["log"] == {
        "items": {"type": "string"}, "title": "Log", "type": "array"}
    with pytest.raises(NotFoundError):
        client.assistants.get_schemas(str(uuid.uuid4()))


def test_subgraphs(client):
    found = client.assistants.get_subgraphs(assistant_id(NESTED))
    assert list(found) == ["inner"]
    # `Log` is a `typing.TypedDict`: no input schema on Python 3.11, as the reference.
    assert found["inner"]["state_schema"]["properties"]["log"]["type"] == "array"
    assert client.assistants.get_subgraphs(assistant_id(NESTED), namespace="inner") == found
    assert client.assistants.get_subgraphs(assistant_id(NESTED), recurse=True) == found
    assert client.assistants.get_subgraphs(assistant_id(NESTED), namespace="nowhere") == {}
    assert client.assistants.get_subgraphs(assistant_id(CHAIN)) == {}


def test_a_runs_own_interrupt_before_and_after(client):
    thread_id = client.threads.create()["thread_id"]
    out = client.runs.wait(thread_id, CHAIN, input={"log": []}, interrupt_before=["slow"])
    assert out == {"log": ["a", "b"]}
    state = client.threads.get_state(thread_id)
    assert state["next"] == ["slow"]
    assert client.threads.get(thread_id)["status"] == "interrupted"
    out = client.runs.wait(thread_id, CHAIN, input=None, interrupt_after=["slow"])
    assert out == {"log": ["a", "b", "slow"]}
    assert client.threads.get_state(thread_id)["next"] == ["d"]
    assert client.runs.wait(thread_id, CHAIN, input=None) == {"log": ["a", "b", "slow", "d"]}
    run = client.runs.list(thread_id)[-1]
    assert run["kwargs"]["interrupt_before"] == ["slow"]
    star = client.runs.wait(None, CHAIN, input={"log": []}, interrupt_before="*")
    assert star == {"log": []}


def test_bad_input_is_refused_and_nothing_is_stored(client, url, cluster):
    headers = {"x-api-key": API_KEYS[0]}
    before = client.assistants.count()
    system = assistant_id(CHAIN)
    for call in (lambda: client.assistants.get(str(uuid.uuid4())),
                 lambda: client.assistants.update(str(uuid.uuid4()), name="x"),
                 lambda: client.assistants.delete(str(uuid.uuid4())),
                 lambda: client.assistants.get_versions(str(uuid.uuid4())),
                 lambda: client.assistants.create("no.such:graph"),
                 lambda: client.runs.create(None, str(uuid.uuid4()), input={})):
        with pytest.raises(NotFoundError):
            call()
    with pytest.raises(BadRequestError):
        client.assistants.create(GREETER, config={"configurable": {"user": "a"}},
                                 context={"user": "b"})
    for bad, name in (({}, "graph_id"),
                      ({"graph_id": GREETER, "surprise": 1}, "surprise"),
                      ({"graph_id": GREETER, "config": [1]}, "config"),
                      ({"graph_id": GREETER, "assistant_id": "not-a-uuid"}, "assistant ID"),
                      ({"graph_id": GREETER, "if_exists": "sometimes"}, "if_exists")):
        response = httpx.post(f"{url}/assistants", json=bad, headers=headers)
        assert response.status_code == 422, bad
        assert name in response.json()["detail"]
    # A graph's own assistant is the graph's: changing it is refused, naming why.
    for call in (lambda: client.assistants.update(system, name="mine"),
                 lambda: client.assistants.delete(system),
                 lambda: client.assistants.set_latest(system, 1)):
        with pytest.raises(UnprocessableEntityError, match="graph's own assistant"):
            call()
    aid = client.assistants.create(GREETER, context={"user": "a"})["assistant_id"]
    with pytest.raises(NotFoundError):
        client.assistants.set_latest(aid, 7)
    # A bad field is a 422 even for an id that exists (do_nothing changes nothing).
    response = httpx.post(f"{url}/assistants", headers=headers, json={
        "graph_id": GREETER, "assistant_id": aid, "if_exists": "do_nothing", "name": 5})
    assert response.status_code == 422 and "name" in response.json()["detail"]
    response = httpx.patch(f"{url}/assistants/{aid}", json={"nickname": "x"},
                           headers=headers)
    assert response.status_code == 422 and "nickname" in response.json()["detail"]
    assert [v["version"] for v in client.assistants.get_versions(aid)] == [1]
    client.assistants.delete(aid)
    assert client.assistants.count() == before

    thread_id = client.threads.create()["thread_id"]
    for pauses in ({"interrupt_before": ["nowhere"]}, {"interrupt_after": "a"},
                   {"interrupt_before": [1]}):
        response = httpx.post(f"{url}/threads/{thread_id}/runs", headers=headers,
                              json={"assistant_id": CHAIN, "input": {"log": []}, **pauses})
        assert response.status_code == 422, pauses
        assert next(iter(pauses)) in response.json()["detail"]
    assert client.runs.list(thread_id) == []
    assert cluster.client().store.runs_of(thread_id) == []


def test_messages_mode_sends_each_message_accumulated(client):
    thread_id = client.threads.create()["thread_id"]
    parts = list(client.runs.stream(thread_id, CHATTY, input={"text": "hello big world"},
                                    stream_mode="messages"))
    names = [p.event for p in parts]
    assert names[0] == "metadata" and names[1] == "messages/metadata"
    assert set(names[2:]) == {"messages/partial"} and len(names) >= 5
    [(message_id, announced)] = parts[1].data.items()
    assert announced["metadata"]["langgraph_node"] == "model"
    contents = [p.data[0]["content"] for p in parts[2:]]
    assert contents[-1] == "hello big world"
    assert all(b.startswith(a) and len(b) > len(a) for a, b in zip(contents, contents[1:],
                                                                   strict=False))
    assert {(p.data[0]["id"], p.data[0]["type"]) for p in parts[2:]} == {(message_id, "ai")}
    assert len({p.id for p in parts[2:]}) == len(parts) - 2

    # Rejoined after the second chunk: the rest, each still the whole message so far.
    run_id = parts[0].data["run_id"]
    rest = list(client.runs.join_stream(thread_id, run_id, last_event_id=parts[3].id))
    assert [p.data[0]["content"] for p in rest] == contents[2:]
