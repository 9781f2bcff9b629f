"""`make demo`: the crash-and-resume example runs end to end and reports what it should."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "crash_and_resume.py"


def listed(output: str, label: str) -> list[str]:
    """The comma-separated names on the report line that starts with `label`."""
    for line in output.splitlines():
        if line.strip().startswith(label):
            return [name.strip() for name in line.split(":", 1)[1].split(",")]
    raise AssertionError(f"no line starting with {label!r} in:\n{output}")


def test_demo_kills_resumes_and_charges_once(tmp_path):
    # TMPDIR keeps the demo's checkpoint file and journals inside pytest's tmp_path.
    result = subprocess.run(
        [sys.executable, str(DEMO)],
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
