"""Superstep decomposition and the run lifecycle, and the producers' side (Client, CLI).

`celery -A scheduler worker -Q scheduler` asks this package for `app`, the scheduler role's
Celery app (start-run and advance tasks): it is configured from the environment then, on
first use, so importing `scheduler` reads nothing.
"""

from typing import Any

from scheduler.client import Client, RunHandle
from scheduler.errors import RunFailedError, ThreadBusyError

__all__ = ["Client", "RunFailedError", "RunHandle", "ThreadBusyError", "app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from scheduler.tasks import app_from_env

        return app_from_env()
    raise AttributeError(f"module 'scheduler' has no attribute {name!r}")
