"""API keys limited to some graphs (`CELERYGRAPH_API_KEYS=key:graph1|graph2`), driven by the
real `langgraph-sdk` client against real workers, a scheduler and the server process: a
limited key sees only its graphs' assistants, threads, runs and crons (others are 404),
and not the store (403)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.errors import (
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
)

from scheduler.server.backend import assistant_id
from scheduler.server.config import ServerSettings, parse_keys
from tests.server import server_fixtures

APPROVAL = "tests.dist_graphs:approval"
CHAIN = "tests.dist_graphs:chain"
FULL, LIMITED = "full-key", "chain-key"


cluster, url, full = server_fixtures(
    "keys-w1", server_env={"CELERYGRAPH_API_KEYS": f"{FULL},{LIMITED}:chain"}, api_key=FULL)


@pytest.fixture
def limited(url: str) -> Any:
    return get_sync_client(url=url, api_key=LIMITED)


def test_key_syntax():
    keys, limits = parse_keys("a, b:chain|tests.dist_graphs:approval ,c")
    assert keys == ("a", "b", "c")
    assert limits == {"b": frozenset({"chain", "tests.dist_graphs:approval"})}
    for bad in ("b:", "b: | ", ":chain"):
        with pytest.raises(ValueError, match="CELERYGRAPH_API_KEYS"):
            parse_keys(bad)
    assert ServerSettings.from_env({"CELERYGRAPH_API_KEYS": "x:chain"}).key_graphs == {
        "x": frozenset({"chain"})}


def test_a_limited_key_sees_only_its_graphs_assistants(full, limited):
    assert {a["graph_id"] for a in limited.assistants.search(limit=100)} == {CHAIN}
    assert {APPROVAL, CHAIN} <= {a["graph_id"] for a in full.assistants.search(limit=100)}
    assert limited.assistants.get(assistant_id(CHAIN))["graph_id"] == CHAIN
    with pytest.raises(NotFoundError):
        limited.assistants.get(assistant_id(APPROVAL))
    with pytest.raises(UnprocessableEntityError):
        limited.assistants.get("approval")


def test_a_limited_key_does_not_see_another_graphs_created_assistant(full, limited):
    """A user-created assistant belongs to its graph: for a key limited to other graphs it
    is not there (not listed, 404 to read, change, or run), and nothing changes."""
    other = full.assistants.create(APPROVAL, name="other graph's", config={})
    own = full.assistants.create(CHAIN, name="own graph's", config={})
    listed = {a["assistant_id"] for a in limited.assistants.search(limit=100)}
    assert own["assistant_id"] in listed and other["assistant_id"] not in listed
    assert limited.assistants.get(own["assistant_id"])["name"] == "own graph's"
    for call in (lambda: limited.assistants.get(other["assistant_id"]),
                 lambda: limited.assistants.update(other["assistant_id"], name="taken"),
                 lambda: limited.assistants.get_versions(other["assistant_id"]),
                 lambda: limited.assistants.delete(other["assistant_id"])):
        with pytest.raises(NotFoundError):
            call()
    with pytest.raises(httpx.HTTPStatusError) as refused:  # runs.wait raises httpx's own
        limited.runs.wait(None, other["assistant_id"], input={"log": []})
    assert refused.value.response.status_code == 404
    assert full.assistants.get(other["assistant_id"])["name"] == "other graph's"
    full.assistants.delete(other["assistant_id"])
    full.assistants.delete(own["assistant_id"])


def test_another_graphs_thread_and_runs_are_not_found(full, limited):
    thread_id = full.threads.create()["thread_id"]
    full.runs.wait(thread_id, APPROVAL, input={"log": []})
    run_id = full.runs.list(thread_id)[0]["run_id"]
    for call in (lambda: limited.threads.get(thread_id),
                 lambda: limited.threads.get_state(thread_id),
                 lambda: limited.threads.get_history(thread_id),
                 lambda: limited.threads.update(thread_id, metadata={"x": 1}),
                 lambda: limited.runs.list(thread_id),
                 lambda: limited.runs.get(thread_id, run_id),
                 lambda: limited.runs.join(thread_id, run_id),
                 lambda: limited.runs.cancel(thread_id, run_id),
                 lambda: limited.runs.create(thread_id, CHAIN, input={"log": []}),
                 lambda: limited.runs.create(None, assistant_id(APPROVAL), input={"log": []}),
                 lambda: limited.crons.create_for_thread(thread_id, CHAIN,
                                                         schedule="0 * * * *"),
                 lambda: limited.threads.delete(thread_id)):
        # The SDK raises NotFoundError, or httpx's error for a joined run: both a 404.
        with pytest.raises(httpx.HTTPStatusError) as refused:
            call()
        assert refused.value.response.status_code == 404
    assert thread_id not in [t["thread_id"] for t in limited.threads.search(limit=1000)]
    # Nothing the limited key tried changed the thread.
    assert len(full.runs.list(thread_id)) == 1
    assert full.threads.get(thread_id)["metadata"].get("x") is None


def test_a_limited_key_runs_its_graph_and_the_full_key_sees_it(full, limited):
    thread_id = limited.threads.create()["thread_id"]
    out = limited.runs.wait(thread_id, "chain", input={"log": []})
    assert out == {"log": ["a", "b", "slow", "d"]}
    assert limited.threads.get(thread_id)["metadata"]["graph_id"] == CHAIN
    assert thread_id in [t["thread_id"] for t in limited.threads.search(limit=1000)]
    assert full.threads.get_state(thread_id)["values"] == out


def test_crons_of_other_graphs_are_hidden(full, limited):
    theirs = full.crons.create(APPROVAL, schedule="0 3 * * *")
    mine = limited.crons.create(CHAIN, schedule="0 4 * * *")
    try:
        seen = {c["cron_id"] for c in limited.crons.search(limit=100)}
        assert mine["cron_id"] in seen and theirs["cron_id"] not in seen
        assert limited.crons.count() == len(seen)
        with pytest.raises(NotFoundError):
            limited.crons.update(theirs["cron_id"], enabled=False)
        with pytest.raises(NotFoundError):
            limited.crons.delete(theirs["cron_id"])
        with pytest.raises(NotFoundError):
            limited.crons.create(assistant_id(APPROVAL), schedule="0 5 * * *")
        assert theirs["cron_id"] in {c["cron_id"] for c in full.crons.search(limit=100)}
    finally:
        full.crons.delete(theirs["cron_id"])
        full.crons.delete(mine["cron_id"])


def test_the_store_is_refused_to_a_limited_key(full, limited):
    namespace = ["keys", str(uuid.uuid4())]
    full.store.put_item(namespace, "k", {"v": 1})
    with pytest.raises(PermissionDeniedError):
        limited.store.get_item(namespace, "k")
    with pytest.raises(PermissionDeniedError):
        limited.store.put_item(namespace, "k", {"v": 2})
    assert full.store.get_item(namespace, "k")["value"] == {"v": 1}
