"""Errors of the distributed side; each derives from `graphdef.errors.CeleryGraphError` and
from the built-in class that says what kind of failure it is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphdef.errors import CeleryGraphError, NodeError


class UnknownGraphError(CeleryGraphError, LookupError):
    """A graph reference that no worker is configured to run."""


class UnknownRunError(CeleryGraphError, LookupError):
    """A run id, or a thread, the run store has no record of."""


class ThreadBusyError(CeleryGraphError, RuntimeError):
    """A run was submitted to a thread that is running another, with `on_busy="reject"`."""


class StaleTaskError(CeleryGraphError, LookupError):
    """The checkpoint no longer plans this task (the graph code changed under the run)."""


class RunFailedError(CeleryGraphError, RuntimeError):
    """The run failed; `error` holds the failing node's error type and message."""

    def __init__(self, error: Mapping[str, Any]) -> None:
        super().__init__(f"{error.get('type')}: {error.get('message')}")
        self.error = error

    def as_node_error(self) -> NodeError:
        return NodeError(str(self.error.get("type")), str(self.error.get("message")))


class GraphModuleError(CeleryGraphError, ImportError):
    """A module named in CELERYGRAPH_GRAPHS failed to import, or holds a LangGraph graph that
    does not convert; a worker refuses to start."""


class RedisServerNotFoundError(CeleryGraphError, FileNotFoundError):
    """Neither PATH nor the installed packages provide a redis-server."""


class NodeFailedError(CeleryGraphError, RuntimeError):
    """Raised by a node's Celery task after its node failed and the failure was saved, so
    that the task's Flower row and the worker's log say it failed."""


class UnknownCheckpointError(CeleryGraphError, LookupError):
    """A run asked to start from a checkpoint its thread does not have."""
