"""The benches still run end to end (`--quick`); their figures are read by people, so no timing
or count is asserted here, only that each row of the table is printed."""

from __future__ import annotations

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
