"""The Celery side of celerygraph: the app, the node task, the sweeper.

`celery -A worker worker -Q nodes` finds `app` here.
"""

from worker import tasks  # noqa: F401  (registers the node task on the app)
from worker.app import app

__all__ = ["app"]
