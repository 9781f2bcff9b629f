"""`make demo-embedded`: a durable workflow is SIGKILLed mid-node, then resumed in a new process.

The workflow fetches orders, enriches them in parallel (a Send fan-out), then a `summarize`
node charges the customer through a `@task` (a side effect that must never repeat) and
renders a report slowly. The parent process kills the first run while it renders, starts a
second process on the same SQLite file, and reports which work was skipped because its
result was already saved and which ran again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.demo_graph import builder, read_journal
from graphdef import SqliteSaver
from graphdef.pregel import Pregel


def build(db_path: str) -> Pregel:
    return builder().compile(checkpointer=SqliteSaver(db_path))


CONFIG = {"configurable": {"thread_id": "order-batch-42"}}


def child(mode: str, db_path: str) -> None:
    app = build(db_path)
    result = app.invoke({"orders": []} if mode == "start" else None, CONFIG)
    print(f"  result: {result['report']}")


def runs_by_process(journal: Path) -> dict[int, list[str]]:
    runs: dict[int, list[str]] = {}
    for pid, _, event in read_journal(journal):
        runs.setdefault(pid, []).append(event)
    return runs


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="celerygraph-demo-"))
    db = workdir / "checkpoints.sqlite"
    env = {
        **os.environ,
        "DEMO_JOURNAL": str(workdir / "journal.log"),
        "DEMO_LEDGER": str(workdir / "ledger.log"),
        "PYTHONUNBUFFERED": "1",
    }
    journal = workdir / "journal.log"
    print(f"Checkpoints in {db}\n")
    print("Run 1: start the workflow, SIGKILL it while `summarize` renders its report")
    first = subprocess.Popen(
        [sys.executable, __file__, "start", str(db)],
        env={**env, "DEMO_RENDER_SECONDS": "60"},
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and "render-started" in journal.read_text():
            break
        if first.poll() is not None:
            print("  the first run ended before it could be killed")
            return 1
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    print(f"  killed process {first.pid} (exit {first.returncode})\n")

    print("Run 2: a new process resumes the same thread from its last checkpoint")
    second = subprocess.run([sys.executable, __file__, "resume", str(db)], env=env, check=False)
    if second.returncode != 0:
        return second.returncode

    runs = runs_by_process(journal)
    before, after = runs[first.pid], next(v for k, v in runs.items() if k != first.pid)
    done_before = [e for e in before if e != "render-started"]
    skipped = [e for e in done_before if e not in after]
    again = [e for e in done_before if e in after]
    new = [e for e in after if e not in done_before and e != "render-started"]
    charges = (workdir / "ledger.log").read_text().splitlines()
    print("\nWhat happened")
    print(f"  ran before the kill:          {', '.join(done_before)}")
    print(f"  skipped, results were saved:  {', '.join(skipped)}")
    print(f"  ran again (killed mid-node):  {', '.join(again)}")
    print(f"  ran for the first time:       {', '.join(new)}")
    print(f"  customer charged {len(charges)} time(s): {'; '.join(charges)}")
    return 0 if len(charges) == 1 and "charge_customer" in skipped else 1


if __name__ == "__main__":
    if len(sys.argv) == 3:
        child(sys.argv[1], sys.argv[2])
    else:
        sys.exit(main())
