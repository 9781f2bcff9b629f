"""Run lifecycle, the producers' API and the CLI.

`celery -A scheduler worker -Q scheduler` runs the scheduler role: the start-run and
advance tasks, registered on the same Celery app the node workers use.
"""

from scheduler import tasks  # noqa: F401  (registers start_run and advance on the app)
from scheduler.client import Client, RunFailedError, RunHandle
from scheduler.runs import ThreadBusyError
from worker.app import app

__all__ = ["Client", "RunFailedError", "RunHandle", "ThreadBusyError", "app"]
