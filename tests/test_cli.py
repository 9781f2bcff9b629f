"""The `celerygraph` command against a real cluster, and its embedded `run` mode."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cluster import ROOT, Cluster, RedisServer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), server.url)
    cluster.start("worker1", concurrency=2)
    cluster.start_scheduler()
    yield cluster
    cluster.stop()
    server.stop()


def cli(cluster: Cluster | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = cluster.env if cluster is not None else None
    done = subprocess.run([sys.executable, "-m", "scheduler.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_submit_wait_state_history(cluster):
    out = json.loads(cli(cluster, "submit", "tests.dist_graphs:chain", "--thread", "cli-1",
                         "--input", '{"log": []}', "--wait", "--timeout", "60").stdout)
    assert out["status"] == "done"
    assert out["output"]["log"] == ["a", "b", "slow", "d"]
    status = json.loads(cli(cluster, "status", "cli-1", out["run_id"]).stdout)
    assert status["status"] == "done" and status["graph"] == "tests.dist_graphs:chain"
    state = json.loads(cli(cluster, "state", "cli-1").stdout)
    assert state["values"]["log"] == ["a", "b", "slow", "d"] and state["next"] == []
    history = json.loads(cli(cluster, "history", "cli-1").stdout)
    assert [h["step"] for h in history] == [3, 2, 1, 0, -1]


def test_interrupt_resume_and_wait(cluster):
    submitted = json.loads(cli(cluster, "submit", "tests.dist_graphs:approval", "--thread",
                               "cli-2", "--input", '{"log": []}').stdout)
    waited = json.loads(cli(cluster, "wait", "cli-2", submitted["run_id"], "--timeout",
                            "60").stdout)
    assert waited["status"] == "interrupted"
    state = json.loads(cli(cluster, "state", "cli-2").stdout)
    assert [i["value"] for i in state["interrupts"]] == ["approve?"]
    resumed = json.loads(cli(cluster, "resume", "cli-2", '"ok"', "--wait", "--timeout",
                             "60").stdout)
    assert resumed["output"]["log"] == ["prepare", "answer:ok", "finish"]


def test_user_errors_are_clear_and_exit_nonzero(cluster):
    unknown = cli(cluster, "submit", "tests.dist_graphs:nope", "--input", "{}", check=False)
    assert unknown.returncode == 2 and "Unknown graph" in unknown.stderr
    bad_json = cli(cluster, "submit", "tests.dist_graphs:single", "--input", "{nope",
                   check=False)
    assert bad_json.returncode != 0 and "not valid JSON" in bad_json.stderr
    nothing = cli(cluster, "resume", "cli-1", '"x"', check=False)
    assert nothing.returncode == 2 and "no pending interrupt" in nothing.stderr


def test_cancel(cluster):
    # `slow` sleeps well past a CLI process's start on a loaded machine: the cancel lands
    # while the run is still going.
    submitted = json.loads(cli(cluster, "submit", "tests.dist_graphs:chain", "--thread",
                               "cli-3", "--input", '{"log": [], "sleep": 10.0}').stdout)
    cli(cluster, "cancel", "cli-3", submitted["run_id"])
    waited = cli(cluster, "wait", "cli-3", submitted["run_id"], "--timeout", "30", check=False)
    assert json.loads(waited.stdout)["status"] == "cancelled"


def test_embedded_run_resumes_from_sqlite(tmp_path):
    db = str(tmp_path / "cli.sqlite")
    first = json.loads(cli(None, "run", "tests.embedded_graphs:approval", "--db", db,
                           "--thread", "t", "--input", '{"log": []}').stdout)
    assert first["__interrupt__"][0]["value"] == "approve?"
    second = json.loads(cli(None, "run", "tests.embedded_graphs:approval", "--db", db,
                            "--thread", "t", "--resume", '"yes"').stdout)
    assert second == {"log": ["prepare", "answer:yes", "finish"]}


def test_watch_threads_and_graph_draw(cluster):
    submitted = json.loads(cli(cluster, "submit", "tests.dist_graphs:approval", "--thread",
                               "cli-4", "--input", '{"log": []}').stdout)
    watched = cli(cluster, "watch", "cli-4", submitted["run_id"], "--timeout", "60")
    assert "interrupted" in watched.stdout and "approve?" in watched.stdout
    assert "ask" in watched.stdout
    waiting = json.loads(cli(cluster, "threads", "--status", "interrupted").stdout)
    assert "cli-4" in [t["thread_id"] for t in waiting]
    drawn = cli(None, "graph", "draw", "tests.embedded_graphs:approval").stdout
    assert drawn.startswith("graph TD;") and "prepare --> ask;" in drawn


def test_wait_on_a_run_not_recorded_yet_waits_for_it(cluster):
    """A producer that picks its run id (any language: `start_run` with `run_id`) can wait
    before the scheduler has taken its message."""
    from scheduler.protocol import Sender, StartRun

    waiting = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", "wait", "cli-early", "early-run", "--timeout",
         "60"], cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    client = cluster.client()
    handle = client.run("cli-early-2", "early-run-2")
    with pytest.raises(TimeoutError, match="not recorded on thread 'cli-early-2'"):
        handle.wait(timeout=0.3)
    # The CLI is blocked in its wait (it has not exited) before the run exists.
    assert waiting.poll() is None and client.store.run("cli-early", "early-run") is None
    send = Sender(client.app, client.settings.scheduler_queue)
    for thread_id, run_id in (("cli-early", "early-run"), ("cli-early-2", "early-run-2")):
        send.start(StartRun(thread_id, run_id, graph="tests.dist_graphs:single",
                            input={"log": []}))
    assert handle.wait(timeout=60) == "done"
    out, err = waiting.communicate(timeout=90)
    assert waiting.returncode == 0, err
    assert json.loads(out)["output"] == {"log": ["one"]}


def test_wait_on_a_run_never_recorded_times_out_clearly(cluster):
    done = cli(cluster, "wait", "cli-never", "no-such-run", "--timeout", "0.5", check=False)
    assert done.returncode == 2
    assert "TimeoutError: run no-such-run not recorded on thread 'cli-never'" in done.stderr
