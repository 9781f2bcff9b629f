"""A worker whose CELERYGRAPH_GRAPHS module fails to import stops at start, saying why once.

Up, it would report ready, publish no graph, log the same ImportError on every sweep and
task, and producers would only see "unknown graph". Each case starts the real command
(`celery -A worker worker`, `celery -A scheduler worker`) against a private Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.cluster import ROOT

MODULES = {
    "cg_bad_syntax": ("from graphdef import StateGraph\ngraph = (\n", "SyntaxError"),
    "cg_bad_name": ("from graphdef import NoSuchName\n", "ImportError"),
    "cg_missing_module": (None, "ModuleNotFoundError"),
}


@pytest.mark.parametrize("app", ["worker", "scheduler"])
@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_graph_module_that_fails_to_import_stops_the_worker(
    redis_server, tmp_path: Path, app: str, module: str
) -> None:
    source, error = MODULES[module]
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    env = {
        **os.environ,
        "CELERYGRAPH_BROKER_URL": redis_server.url,
        "CELERYGRAPH_STORE_URL": redis_server.url,
        # A good module first: one bad module is enough to refuse.
        "CELERYGRAPH_GRAPHS": f"tests.dist_graphs,{module}",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
    }
    name = f"bad-{module}-{uuid.uuid4().hex[:6]}@%h"
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", app, "worker", "-n", name, "-c", "1",
         "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    said = f"graph module {module!r} (CELERYGRAPH_GRAPHS) failed to import: {error}"
    assert out.count(said) == 1, out
    assert out.count("failed to import") == 1, out
    assert " ready." not in out and "sweep failed" not in out, out
    # Nothing was published for producers to find.
    assert not redis_server.client().keys("cg:graphs*"), out
