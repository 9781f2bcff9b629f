"""The node workers' Celery app: `celery -A worker worker -Q nodes` runs node tasks.

It also runs the scheduler's tasks, so one `celery -A worker worker -Q nodes,scheduler`
is a whole cluster; the `scheduler` package builds an app with those alone.
"""

from __future__ import annotations

import functools

from scheduler.celery_app import CeleryGraphApp, settings_from_env
from scheduler.settings import Settings
from scheduler.tasks import register_scheduler_tasks, serve_graphs
from worker.tasks import register_node_tasks


def create_app(settings: Settings) -> CeleryGraphApp:
    """A worker app for `settings`: node and scheduler tasks, graphs loaded and the sweeper
    started when a `celery worker` of it starts."""
    app = CeleryGraphApp(settings)
    register_node_tasks(app)
    register_scheduler_tasks(app)
    serve_graphs(app)
    return app


@functools.cache
def app_from_env() -> CeleryGraphApp:
    """The app `celery -A worker` runs, configured from CELERYGRAPH_* once per process."""
    return create_app(settings_from_env())
