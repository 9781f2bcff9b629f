"""Thread copy, thread prune and run deletion through `celerygraph serve`, driven by the
real `langgraph-sdk` clients (sync and async) on real workers, with their refusals."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError, NotFoundError

from tests.server import API_KEYS, server_fixtures

APPROVAL = "tests.dist_graphs:approval"
CHAIN = "tests.dist_graphs:chain"

cluster, url, client = server_fixtures("thread-ops-w1")


def test_copy_carries_checkpoints_and_metadata_and_goes_its_own_way(client):
    thread_id = client.threads.create(metadata={"owner": "ada"})["thread_id"]
    client.runs.wait(thread_id, APPROVAL, input={"log": []})
    paused = client.threads.get_state(thread_id)
    assert paused["next"] == ["ask"]

    copied = client.threads.copy(thread_id)
    copy_id = copied["thread_id"]
    assert copy_id != thread_id and str(uuid.UUID(copy_id)) == copy_id
    assert copied["metadata"]["owner"] == "ada"
    assert copied["metadata"]["graph_id"] == APPROVAL
    assert copied["values"] == paused["values"]
    state = client.threads.get_state(copy_id)
    assert (state["values"], state["next"]) == (paused["values"], paused["next"])
    assert state["checkpoint"]["thread_id"] == copy_id
    assert state["checkpoint"]["checkpoint_id"] == paused["checkpoint"]["checkpoint_id"]
    assert [h["checkpoint"]["checkpoint_id"] for h in client.threads.get_history(copy_id)] == [
        h["checkpoint"]["checkpoint_id"] for h in client.threads.get_history(thread_id)]
    assert client.runs.list(copy_id) == []  # runs are not copied

    # The copy answers its own interrupt; the original still waits on its own.
    done = client.runs.wait(copy_id, APPROVAL, command={"resume": "copy"})
    assert done["log"] == ["prepare", "answer:copy", "finish"]
    assert client.threads.get_state(thread_id)["next"] == ["ask"]
    original = client.runs.wait(thread_id, APPROVAL, command={"resume": "orig"})
    assert original["log"] == ["prepare", "answer:orig", "finish"]

    with pytest.raises(ConflictError):
        client.threads.copy(str(uuid.uuid4()))


def test_delete_a_run(client, cluster):
    thread_id = client.threads.create()["thread_id"]
    first = client.runs.create(thread_id, CHAIN, input={"log": []})
    client.runs.join(thread_id, first["run_id"])
    running = client.runs.create(thread_id, CHAIN, input={"log": [], "sleep": 3.0})
    deadline = time.monotonic() + 20
    while client.runs.get(thread_id, running["run_id"])["status"] == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(ConflictError):
        client.runs.delete(thread_id, running["run_id"])
    assert client.runs.get(thread_id, running["run_id"])["status"] == "running"
    client.runs.join(thread_id, running["run_id"])

    client.runs.delete(thread_id, first["run_id"])
    with pytest.raises(NotFoundError):
        client.runs.get(thread_id, first["run_id"])
    assert [r["run_id"] for r in client.runs.list(thread_id)] == [running["run_id"]]
    assert cluster.client().store.runs_of(thread_id) == [running["run_id"]]
    # The thread's history keeps what the deleted run did.
    assert client.threads.get_state(thread_id)["values"]["log"] == [
        "a", "b", "slow", "d", "a", "b", "slow", "d"]
    with pytest.raises(NotFoundError):
        client.runs.delete(thread_id, first["run_id"])
    with pytest.raises(NotFoundError):
        client.runs.delete(str(uuid.uuid4()), first["run_id"])


def test_prune(url, cluster):
    async def scenario():
        client = get_client(url=url, api_key=API_KEYS[1])
        kept = (await client.threads.create())["thread_id"]
        for _ in range(2):
            await client.runs.wait(kept, CHAIN, input={"log": []})
        before = await client.threads.get_state(kept)
        assert len(await client.threads.get_history(kept, limit=100)) > 1
        gone = (await client.threads.create())["thread_id"]
        await client.runs.wait(gone, CHAIN, input={"log": []})
        missing = str(uuid.uuid4())

        assert await client.threads.prune([kept, missing], strategy="keep_latest") == {
            "pruned_count": 1}
        history = await client.threads.get_history(kept, limit=100)
        assert [h["checkpoint"] for h in history] == [before["checkpoint"]]
        assert (await client.threads.get_state(kept))["values"] == before["values"]

        assert await client.threads.prune([gone, missing]) == {"pruned_count": 1}
        with pytest.raises(NotFoundError):
            await client.threads.get(gone)
        assert cluster.client().saver.head(gone) is None
        assert await client.threads.prune([]) == {"pruned_count": 0}

    asyncio.run(scenario())


def test_bad_requests_store_nothing(client, url):
    headers = {"x-api-key": API_KEYS[0]}
    thread_id = client.threads.create()["thread_id"]
    for bad, name in (({}, "thread_ids"), ({"thread_ids": ["nope"]}, "thread ID"),
                      ({"thread_ids": [thread_id], "strategy": "sometimes"}, "strategy"),
                      ({"thread_ids": [thread_id], "extra": 1}, "extra")):
        response = httpx.post(f"{url}/threads/prune", json=bad, headers=headers)
        assert response.status_code == 422, bad
        assert name in response.json()["detail"]
    assert client.threads.get(thread_id)["thread_id"] == thread_id
    response = httpx.post(f"{url}/threads/not-a-uuid/copy", headers=headers)
    assert response.status_code == 422
    response = httpx.delete(f"{url}/threads/{thread_id}/runs/not-a-uuid", headers=headers)
    assert response.status_code == 422
