"""`celerygraph serve` driven by the real `langgraph-sdk` client (sync): assistants,
threads, state, history, store, auth and error codes, against real workers, a scheduler,
the server process and a Redis of their own."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from scheduler.localcluster import free_port
from scheduler.server.auth import check_bind
from scheduler.server.backend import assistant_id
from tests.cluster import Cluster
from tests.server import API_KEYS, start_server

APPROVAL = "tests.dist_graphs:approval"
CHAIN = "tests.dist_graphs:chain"
REMEMBERING = "tests.dist_graphs:remembering"


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory):
    running = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url)
    try:
        running.start("api-w1", concurrency=2)
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


def test_assistants_are_the_published_graphs(client):
    found = client.assistants.search(limit=100)
    by_graph = {a["graph_id"]: a for a in found}
    assert APPROVAL in by_graph and CHAIN in by_graph
    approval = by_graph[APPROVAL]
    assert approval["assistant_id"] == assistant_id(APPROVAL)
    assert str(uuid.UUID(approval["assistant_id"])) == approval["assistant_id"]
    assert client.assistants.get(approval["assistant_id"])["graph_id"] == APPROVAL
    assert client.assistants.get(APPROVAL)["assistant_id"] == approval["assistant_id"]
    assert [a["graph_id"] for a in client.assistants.search(graph_id=APPROVAL)] == [APPROVAL]
    drawn = client.assistants.get_graph(APPROVAL)
    assert {n["id"] for n in drawn["nodes"]} >= {"__start__", "prepare", "ask", "finish"}
    assert {"source": "prepare", "target": "ask", "conditional": False} in drawn["edges"]
    with pytest.raises(NotFoundError):
        client.assistants.get(str(uuid.uuid4()))


def test_thread_lifecycle(client):
    thread = client.threads.create(metadata={"owner": "ada"})
    thread_id = thread["thread_id"]
    assert thread["status"] == "idle" and thread["metadata"] == {"owner": "ada"}
    assert client.threads.get(thread_id)["thread_id"] == thread_id
    with pytest.raises(ConflictError):
        client.threads.create(thread_id=thread_id)
    same = client.threads.create(thread_id=thread_id, if_exists="do_nothing")
    assert same["metadata"] == {"owner": "ada"}
    patched = client.threads.update(thread_id, metadata={"team": "x"})
    assert patched["metadata"] == {"owner": "ada", "team": "x"}
    assert thread_id in [t["thread_id"] for t in client.threads.search(
        metadata={"owner": "ada"})]
    assert client.threads.search(metadata={"owner": "nobody"}) == []
    assert client.threads.get_state(thread_id)["values"] == {}
    client.threads.delete(thread_id)
    with pytest.raises(NotFoundError):
        client.threads.get(thread_id)


def test_run_wait_then_state_history_and_edit(client):
    thread_id = client.threads.create()["thread_id"]
    out = client.runs.wait(thread_id, CHAIN, input={"log": []})
    assert out == {"log": ["a", "b", "slow", "d"]}
    state = client.threads.get_state(thread_id)
    assert state["values"] == out and state["next"] == []
    assert state["checkpoint"]["thread_id"] == thread_id
    history = client.threads.get_history(thread_id, limit=100)
    assert history[0]["checkpoint"] == state["checkpoint"]
    assert len(history) >= 4
    first = history[-1]
    past = client.threads.get_state(thread_id, checkpoint_id=first["checkpoint"]["checkpoint_id"])
    assert past["checkpoint"] == first["checkpoint"]
    edited = client.threads.update_state(thread_id, {"log": ["edited"]}, as_node="d")
    assert edited["checkpoint"]["checkpoint_id"] != state["checkpoint"]["checkpoint_id"]
    assert client.threads.get_state(thread_id)["values"]["log"][-1] == "edited"
    thread = client.threads.get(thread_id)
    assert thread["status"] == "idle" and thread["values"]["log"][-1] == "edited"
    assert thread["metadata"]["graph_id"] == CHAIN
    runs = client.runs.list(thread_id)
    assert [r["status"] for r in runs] == ["success"]
    assert client.runs.get(thread_id, runs[0]["run_id"])["assistant_id"] == assistant_id(CHAIN)


def test_stateless_wait_and_batch(client):
    assert client.runs.wait(None, CHAIN, input={"log": []}) == {"log": ["a", "b", "slow", "d"]}
    created = client.runs.create_batch([{"assistant_id": CHAIN, "input": {"log": []}}] * 2)
    assert len({r["run_id"] for r in created}) == 2
    assert all(r["status"] in ("pending", "running", "success") for r in created)


def test_store_items(client):
    client.store.put_item(["users", "ada"], "prefs", {"theme": "dark"})
    item = client.store.get_item(["users", "ada"], "prefs")
    assert item["value"] == {"theme": "dark"} and item["namespace"] == ["users", "ada"]
    assert client.store.get_item(["users", "ada"], "missing") is None
    client.store.put_item(["users", "bob"], "prefs", {"theme": "light"})
    found = client.store.search_items(["users"], filter={"theme": "light"})
    assert [i["key"] for i in found["items"]] == ["prefs"]
    assert found["items"][0]["namespace"] == ["users", "bob"]
    spaces = client.store.list_namespaces(prefix=["users"])["namespaces"]
    assert sorted(spaces) == [["users", "ada"], ["users", "bob"]]
    client.store.delete_item(["users", "ada"], "prefs")
    assert client.store.get_item(["users", "ada"], "prefs") is None


def test_store_items_nodes_wrote_are_served(client):
    thread_id = client.threads.create()["thread_id"]
    client.runs.wait(thread_id, REMEMBERING, input={"log": [], "n": 3})
    item = client.store.get_item(["visits", thread_id], "n")
    assert item["value"] == {"n": 3}


def test_auth(url):
    assert httpx.get(f"{url}/ok").status_code == 200
    for headers in ({}, {"x-api-key": "wrong"}, {"Authorization": "Bearer wrong"},
                    {"Authorization": f"Basic {API_KEYS[0]}"}):
        response = httpx.post(f"{url}/assistants/search", json={}, headers=headers)
        assert response.status_code == 401, headers
        assert "detail" in response.json()
    for headers in ({"x-api-key": API_KEYS[1]}, {"Authorization": f"Bearer {API_KEYS[0]}"}):
        assert httpx.post(f"{url}/assistants/search", json={},
                          headers=headers).status_code == 200
    with pytest.raises(httpx.HTTPStatusError) as raised:
        get_sync_client(url=url, api_key="nope").threads.create()
    assert raised.value.response.status_code == 401


def test_without_keys_it_serves_loopback_only(cluster):
    refused = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "serve", "--host", "0.0.0.0", "--port",
         str(free_port())], env={**cluster.env, "CELERYGRAPH_API_KEYS": ""},
        capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "CELERYGRAPH_API_KEYS" in refused.stderr
    for host in ("127.0.0.1", "::1", "localhost"):
        check_bind(host, ())
    check_bind("0.0.0.0", ("a-key",))
    open_url = start_server(cluster, "open-server", CELERYGRAPH_API_KEYS="")
    assert httpx.post(f"{open_url}/assistants/search", json={}).status_code == 200


def test_error_codes_and_nothing_stored(client, url, cluster):
    headers = {"x-api-key": API_KEYS[0]}
    thread_id = client.threads.create()["thread_id"]
    with pytest.raises(NotFoundError):
        client.runs.create(str(uuid.uuid4()), CHAIN, input={"log": []})
    with pytest.raises(NotFoundError):
        client.runs.create(thread_id, str(uuid.uuid4()), input={"log": []})
    with pytest.raises(NotFoundError):
        client.runs.get(thread_id, str(uuid.uuid4()))
    with pytest.raises(UnprocessableEntityError):
        client.runs.create(thread_id, "no.such:graph", input={})
    for bad in (b"{not json", b"[1, 2]"):
        response = httpx.post(f"{url}/threads/{thread_id}/runs", content=bad, headers=headers)
        assert response.status_code == 422 and response.json()["detail"]
    for extra, name in (({"webhook": "/hook"}, "webhook"),
                        ({"interrupt_before": ["nowhere"]}, "nowhere"),
                        ({"stream_mode": ["events"]}, "events"),
                        ({"after_seconds": 5}, "after_seconds"),
                        ({"multitask_strategy": "sometimes"}, "multitask_strategy"),
                        ({"surprise": 1}, "surprise")):
        response = httpx.post(f"{url}/threads/{thread_id}/runs", headers=headers,
                              json={"assistant_id": CHAIN, "input": {"log": []}, **extra})
        assert response.status_code == 422, extra
        assert name in response.json()["detail"]
    response = httpx.post(f"{url}/threads/{thread_id}/runs", headers=headers,
                          json={"assistant_id": CHAIN, "input": {"log": object.__name__},
                                "durability": "forever"})
    assert response.status_code == 422
    assert client.runs.list(thread_id) == []
    assert cluster.client().store.runs_of(thread_id) == []
    with pytest.raises(NotFoundError):
        client.threads.get_state(str(uuid.uuid4()))
    response = httpx.get(f"{url}/threads/not-a-uuid", headers=headers)
    assert response.status_code == 422
    response = httpx.post(f"{url}/runs/crons", headers=headers, json={})
    assert response.status_code == 422 and "schedule" in response.json()["detail"]
