"""Runs through `celerygraph serve` with the real `langgraph-sdk` clients (sync and async)
on real workers: streamed runs in every mode, an interrupt resumed by
`Command(resume=...)`, `join_stream` reconnecting mid-run with `Last-Event-ID`, a thread
double-texted under each `multitask_strategy`, cancel, a failing run; LangGraph's
`RemoteGraph` and the JavaScript SDK against the same server."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid

import pytest
from langgraph.pregel.remote import RemoteGraph
from langgraph.types import Command
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import ConflictError

from tests.cluster import ROOT, Cluster
from tests.server import API_KEYS, start_server

APPROVAL = "tests.dist_graphs:approval"
CHAIN = "tests.dist_graphs:chain"
TALKER = "tests.dist_graphs:talker"
FAILING = "tests.dist_graphs:failing"
CHATTY = "tests.server_graphs:chatty"
NESTED = "tests.server_graphs:nested"


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory):
    running = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url,
                      CELERYGRAPH_GRAPHS="tests.dist_graphs,tests.server_graphs")
    try:
        running.start("runs-w1", concurrency=2)
        running.start("runs-w2", concurrency=2)
        running.start_scheduler()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def url(cluster):
    return start_server(cluster)


@pytest.fixture
def client(url):
    return get_sync_client(url=url, api_key=API_KEYS[0])


def events(parts):
    return [p.event for p in parts]


def test_streamed_interrupt_resumed_by_command(client):
    thread_id = client.threads.create()["thread_id"]
    parts = list(client.runs.stream(thread_id, APPROVAL, input={"log": []},
                                    stream_mode=["values", "updates"]))
    assert parts[0].event == "metadata" and parts[0].id == "0-0"
    run_id = parts[0].data["run_id"]
    assert all(p.id for p in parts[1:])
    assert parts[1].event == "values" and parts[1].data == {"log": []}
    updates = [p.data for p in parts if p.event == "updates"]
    assert {"prepare": {"log": ["prepare"]}} in updates
    interrupt = updates[-1]["__interrupt__"]
    assert interrupt[0]["value"] == "approve?" and interrupt[0]["id"]
    thread = client.threads.get(thread_id)
    assert thread["status"] == "interrupted"
    assert [i["value"] for i in thread["interrupts"][next(iter(thread["interrupts"]))]] == [
        "approve?"]
    state = client.threads.get_state(thread_id)
    assert state["next"] == ["ask"]
    assert state["interrupts"][0]["id"] == interrupt[0]["id"]
    assert client.runs.get(thread_id, run_id)["status"] == "success"

    resumed = list(client.runs.stream(thread_id, APPROVAL, command={"resume": "yes"},
                                      stream_mode="values"))
    assert resumed[-1].event == "values"
    assert resumed[-1].data["log"] == ["prepare", "answer:yes", "finish"]
    assert client.threads.get(thread_id)["status"] == "idle"
    assert [r["status"] for r in client.runs.list(thread_id)] == ["success", "success"]


def test_every_stream_mode_and_subgraphs(client):
    parts = list(client.runs.stream(
        None, NESTED, input={"log": []}, stream_subgraphs=True,
        stream_mode=["values", "updates", "custom", "debug", "tasks", "checkpoints"]))
    names = events(parts)
    assert names[0] == "metadata"
    for mode in ("values", "updates", "debug", "tasks", "checkpoints"):
        assert mode in names, mode  # the root graph's; its custom chunks come from inside
    inner = [n for n in names if n.startswith("custom|")]
    assert inner and inner[0].startswith("custom|inner:")
    assert [p.data for p in parts if p.event.startswith("custom|")] == [{"said": "inside"}]
    assert [p.data for p in parts if p.event == "values"][-1] == {"log": ["talked", "after"]}
    without = list(client.runs.stream(None, NESTED, input={"log": []},
                                      stream_mode=["custom", "values"]))
    assert not [p for p in without if "|" in p.event]


def test_messages_tuple_streams_tokens(client):
    parts = list(client.runs.stream(None, CHATTY, input={"text": "hello big world"},
                                    stream_mode="messages-tuple"))
    tokens = [p.data for p in parts if p.event == "messages"]
    assert "".join(m["content"] for m, _ in tokens) == "hello big world"
    assert len(tokens) >= 3
    assert tokens[0][1]["langgraph_node"] == "model"


def test_join_stream_reconnects_mid_run_with_last_event_id(client):
    thread_id = client.threads.create()["thread_id"]
    seen = []
    for part in client.runs.stream(thread_id, TALKER, input={"log": [], "n": 10, "sleep": 0.15},
                                   stream_mode=["custom", "values"]):
        seen.append(part)
        if sum(p.event == "custom" for p in seen) == 3:
            break  # the client drops the connection mid-run
    run_id = seen[0].data["run_id"]
    assert client.runs.get(thread_id, run_id)["status"] in ("pending", "running")
    # Joining without an id gives what comes from now on, as the reference server does.
    live = []
    for part in client.runs.join_stream(thread_id, run_id):
        live.append(part)
        if part.event == "custom":
            break
    assert live[0].event == "custom" and live[0].data["said"] > 2
    rest = list(client.runs.join_stream(thread_id, run_id, last_event_id=seen[-1].id))
    said = [p.data["said"] for p in seen + rest if p.event == "custom"]
    assert said == list(range(10))
    ids = [p.id for p in seen + rest]
    assert None not in ids and len(ids) == len(set(ids))
    assert rest[-1].event == "values" and rest[-1].data["log"] == ["intro", "talked"]
    assert client.runs.get(thread_id, run_id)["status"] == "success"
    # After the end: nothing new; `-1` replays the whole run, narrowed here to one mode.
    assert list(client.runs.join_stream(thread_id, run_id)) == []
    late = list(client.runs.join_stream(thread_id, run_id, stream_mode="custom",
                                        last_event_id="-1"))
    assert late[0].event == "metadata" and late[0].data["run_id"] == run_id
    assert [p.data["said"] for p in late[1:]] == list(range(10))
    assert client.runs.join(thread_id, run_id)["log"] == ["intro", "talked"]


def _slow(client, thread_id, strategy=None, sleep=1.5):
    return client.runs.create(thread_id, CHAIN, input={"log": [f"s{sleep}"], "sleep": sleep},
                              multitask_strategy=strategy)


def _wait_running(client, thread_id, run_id):
    deadline = time.monotonic() + 20
    while client.runs.get(thread_id, run_id)["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_double_texting_reject(client):
    thread_id = client.threads.create()["thread_id"]
    first = _slow(client, thread_id)
    _wait_running(client, thread_id, first["run_id"])
    assert client.threads.get(thread_id)["status"] == "busy"
    with pytest.raises(ConflictError):
        _slow(client, thread_id, "reject")
    assert [r["run_id"] for r in client.runs.list(thread_id)] == [first["run_id"]]
    client.runs.join(thread_id, first["run_id"])
    assert client.runs.get(thread_id, first["run_id"])["status"] == "success"


def test_double_texting_enqueue(client):
    thread_id = client.threads.create()["thread_id"]
    first = _slow(client, thread_id, sleep=1.0)
    second = _slow(client, thread_id, "enqueue", sleep=0.0)
    assert client.runs.get(thread_id, second["run_id"])["status"] == "pending"
    out = client.runs.join(thread_id, second["run_id"])
    assert client.runs.get(thread_id, first["run_id"])["status"] == "success"
    assert out["log"] == ["s1.0", "a", "b", "slow", "d", "s0.0", "a", "b", "slow", "d"]


def test_double_texting_interrupt(client):
    thread_id = client.threads.create()["thread_id"]
    first = _slow(client, thread_id, sleep=1.5)
    _wait_running(client, thread_id, first["run_id"])
    second = _slow(client, thread_id, "interrupt", sleep=0.0)
    out = client.runs.join(thread_id, second["run_id"])
    assert client.runs.get(thread_id, first["run_id"])["status"] == "interrupted"
    assert out["log"][-5:] == ["s0.0", "a", "b", "slow", "d"]
    assert out["log"][0] == "s1.5"  # the interrupted run's finished supersteps stay


def test_double_texting_rollback(client):
    thread_id = client.threads.create()["thread_id"]
    first = _slow(client, thread_id, sleep=1.5)
    _wait_running(client, thread_id, first["run_id"])
    second = _slow(client, thread_id, "rollback", sleep=0.0)
    out = client.runs.join(thread_id, second["run_id"])
    assert client.runs.get(thread_id, first["run_id"])["status"] == "interrupted"
    assert out["log"] == ["s0.0", "a", "b", "slow", "d"]  # nothing of the rolled-back run


def test_deleting_a_busy_thread_cancels_its_runs(client, cluster):
    thread_id = client.threads.create()["thread_id"]
    active = _slow(client, thread_id, sleep=1.5)
    queued = _slow(client, thread_id, "enqueue", sleep=0.0)
    _wait_running(client, thread_id, active["run_id"])
    client.threads.delete(thread_id)
    store = cluster.client().store
    for run in (active, queued):
        assert store.run(thread_id, run["run_id"]).status == "cancelled"
    time.sleep(2.0)  # the active run's node finishes; nothing starts after it
    assert store.run(thread_id, queued["run_id"]).status == "cancelled"
    assert store.active_run(thread_id) is None


def test_cancel_and_failure(client):
    thread_id = client.threads.create()["thread_id"]
    run = _slow(client, thread_id, sleep=1.5)
    _wait_running(client, thread_id, run["run_id"])
    client.runs.cancel(thread_id, run["run_id"], wait=True)
    assert client.runs.get(thread_id, run["run_id"])["status"] == "interrupted"

    failing = client.threads.create()["thread_id"]
    parts = list(client.runs.stream(failing, FAILING, input={"log": []}))
    assert parts[-1].event == "error" and parts[-1].data["message"]
    with pytest.raises(Exception, match=parts[-1].data["error"]):
        client.runs.wait(failing, FAILING, input={"log": []})
    assert client.threads.get(failing)["status"] == "error"


def test_async_client(url):
    async def scenario():
        client = get_client(url=url, api_key=API_KEYS[1])
        thread = await client.threads.create()
        chunks = [p async for p in client.runs.stream(
            thread["thread_id"], APPROVAL, input={"log": []}, stream_mode="updates")]
        assert "__interrupt__" in chunks[-1].data
        out = await client.runs.wait(thread["thread_id"], APPROVAL,
                                     command={"resume": "async"})
        assert out["log"][-2:] == ["answer:async", "finish"]
        state = await client.threads.get_state(thread["thread_id"])
        assert state["next"] == []
        found = await client.assistants.search(graph_id=APPROVAL)
        assert [a["graph_id"] for a in found] == [APPROVAL]
        await client.store.put_item(["async"], "k", {"v": 1})
        assert (await client.store.get_item(["async"], "k"))["value"] == {"v": 1}

    asyncio.run(scenario())


def test_langgraphs_remote_graph(url):
    """LangGraph's own `RemoteGraph` pointed at the server: invoke, stream, the state
    calls, and a resume, as a program would use a deployed graph."""
    remote = RemoteGraph(APPROVAL, url=url, api_key=API_KEYS[0])
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    paused = remote.invoke({"log": []}, config)
    assert paused["__interrupt__"][0]["value"] == "approve?"
    state = remote.get_state(config)
    assert state.next == ("ask",) and state.values["log"] == ["prepare"]
    edited = remote.update_state(config, {"log": ["edited"]})
    assert edited["configurable"]["checkpoint_id"] != state.config["configurable"][
        "checkpoint_id"]
    chunks = list(remote.stream(Command(resume="ok"), config, stream_mode=["updates"]))
    # RemoteGraph yields the SDK's stream parts for a list of modes: (event, data, id).
    assert [(c.event, c.data) for c in chunks] == [
        ("updates", {"ask": {"log": ["answer:ok"]}}), ("updates", {"finish": {"log": ["finish"]}})]
    history = list(remote.get_state_history(config))
    assert history[0].values["log"] == ["prepare", "edited", "answer:ok", "finish"]
    assert len(history) >= 4

    chain = RemoteGraph(CHAIN, url=url, api_key=API_KEYS[0])
    assert chain.invoke({"log": []}) == {"log": ["a", "b", "slow", "d"]}
    nested = RemoteGraph(NESTED, url=url, api_key=API_KEYS[0])
    inner = [(ns, chunk) for ns, chunk in nested.stream({"log": []}, stream_mode="custom",
                                                        subgraphs=True)]
    assert [chunk for _, chunk in inner] == [{"said": "inside"}]
    assert inner[0][0][0].startswith("inner:")


def test_the_javascript_sdk_streams_and_resumes(url):
    """`@langchain/langgraph-sdk` from npm (examples/producers/node, installed from its lock
    file by `make test`) creates a thread, streams a run to its interrupt and resumes it."""
    if shutil.which("node") is None:
        pytest.skip("no node on PATH")
    script = ROOT / "examples" / "producers" / "node" / "sdk_client.mjs"
    done = subprocess.run(["node", str(script), url, API_KEYS[0], APPROVAL, '{"log": []}', "js"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["events"][0] == "metadata" and "updates" in out["events"]
    assert out["interrupt"]["value"] == "approve?"
    assert out["next"] == ["ask"]
    assert out["final"]["log"] == ["prepare", "answer:js", "finish"]


def test_the_javascript_sdk_joins_a_running_runs_stream(url, client):
    """`joinStream` of `@langchain/langgraph-sdk` (examples/producers/node/join_stream.mjs):
    a stream dropped mid-run, joined again without an id (what comes from then on) and
    from the last id it saw (the rest of the run, each chunk once, to its end)."""
    if shutil.which("node") is None:
        pytest.skip("no node on PATH")
    script = ROOT / "examples" / "producers" / "node" / "join_stream.mjs"
    done = subprocess.run(["node", str(script), url, API_KEYS[0], TALKER,
                           '{"log": [], "n": 10, "sleep": 0.3}', "3"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    dropped, live, rest = out["dropped"], out["live"], out["rest"]
    assert dropped[0]["event"] == "metadata" and dropped[0]["id"] == "0-0"
    assert [p["data"]["said"] for p in dropped if p["event"] == "custom"] == [0, 1, 2]
    assert live[0]["event"] == "custom" and live[0]["data"]["said"] > 2
    said = [p["data"]["said"] for p in dropped + rest if p["event"] == "custom"]
    assert said == list(range(10))
    ids = [p["id"] for p in dropped + rest]
    assert None not in ids and len(ids) == len(set(ids))
    assert rest[-1]["event"] == "values" and rest[-1]["data"]["log"] == ["intro", "talked"]
    assert client.runs.get(out["thread_id"], out["run_id"])["status"] == "success"
