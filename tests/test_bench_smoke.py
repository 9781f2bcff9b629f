"""The benches still run end to end (`--quick`); their figures are read by people, so no timing
or count is asserted here, only that each row of the table is printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_store_cost_quick_prints_its_table() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "store_cost.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for row in ("measure", "one-node superstep", "bare Celery delay().get() round trip",
                "superstep of 10 Sends", "superstep of 3 Sends", "idle, nothing running",
                "idle, 5 nodes parked", "per parked node", "per superstep:", "per round trip:"):
        assert row in out, out


def test_storage_growth_prints_a_row_per_saver() -> None:
    """langgraph-checkpoint-redis runs only where it is installed with a Redis that has
    RedisJSON and RediSearch; elsewhere its row says why it did not."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "storage_growth.py"),
                           "--steps", "5"], cwd=ROOT, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line[:28].strip(): line[28:] for line in done.stdout.splitlines()}
    for saver in ("graphdef SqliteSaver", "LangGraph SqliteSaver", "LangGraph InMemorySaver",
                  "graphdef RedisSaver", "LangGraphRedisSaver (ours)"):
        assert re.search(r"\d\.\dx", rows.get(saver, "")), done.stdout
    other = rows.get("langgraph-checkpoint-redis", "")
    assert other.startswith("not run: ") or re.search(r"\d\.\dx", other), done.stdout


def test_server_bench_quick_prints_both_rows() -> None:
    """The reference server (`langgraph dev`) is not in `make venv`: its column says so."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "server.py"), "--quick",
                           "--langgraph", "no-such-langgraph-cli"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for row in ("runs/s (runs.wait, 3 nodes)", "first streamed chunk, ms"):
        line = next(line for line in done.stdout.splitlines() if line.startswith(row))
        assert re.search(r"\d+\.\d", line) and "not run: " in line, done.stdout


def test_detection_bench_reruns_every_lost_node_once() -> None:
    """A SIGKILLed worker's parked nodes run again on the other worker; no other parked node
    runs twice, and every run ends with its node's one result (the bench asserts that)."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "detection.py"),
                           "--nodes", "40", "--victims", "5"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 lost nodes ran again after median" in done.stdout, done.stdout
    assert "others run twice: 0" in done.stdout, done.stdout


def test_store_cost_shards_quick_prints_both_layouts() -> None:
    """One master vs three: a row each, with a CPU figure per master."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "store_cost.py"), "--shards",
                           "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line[:28].strip(): line[28:] for line in done.stdout.splitlines()}
    assert re.fullmatch(r"\s*\d+\.\d\s+\d+ us", rows["Redis Cluster, 1 master(s)"]), done.stdout
    assert re.fullmatch(r"\s*\d+\.\d\s+\d+ / \d+ / \d+ us",
                        rows["Redis Cluster, 3 master(s)"]), done.stdout
