"""What the run store keeps about a run, typed."""

from __future__ import annotations

from typing import Any

from graphdef.pregel import DEFAULT_RECURSION_LIMIT


def run_config(run: dict[str, Any], checkpoint_id: str) -> dict[str, Any]:
    """The config a run's loops use at `checkpoint_id`: the producer's, pinned to the thread."""
    config = dict(run.get("config") or {})
    conf = {**config.get("configurable", {}), "thread_id": run["thread_id"],
            "checkpoint_ns": "", "checkpoint_id": checkpoint_id}
    return {**config, "configurable": conf,
            "recursion_limit": config.get("recursion_limit", DEFAULT_RECURSION_LIMIT)}
