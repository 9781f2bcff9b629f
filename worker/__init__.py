"""The Celery worker side of celerygraph: run nodes, save their memos, advance in place.

`celery -A worker worker -Q nodes` asks this package for `app`: it is configured from the
environment then, on first use, so importing `worker` reads nothing.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from worker.celery_app import app_from_env

        return app_from_env()
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
