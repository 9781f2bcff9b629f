"""The scheduler's Celery tasks, on the `scheduler` queue (`scheduler.protocol` has their
wire format).

`celerygraph.start_run` is the documented entry point for producers in any language.
`celerygraph.advance` takes the steps a node worker could not advance itself (another
driver held the run) and the sweeper's re-advances.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery import signals

from graphdef.redis_client import StoreConfigError
from scheduler import metrics, tracing
from scheduler.api_tasks import register_api_tasks
from scheduler.celery_app import CeleryGraphApp, settings_from_env
from scheduler.driver import with_run_lease
from scheduler.errors import GraphModuleError
from scheduler.protocol import ADVANCE_TASK, START_TASK
from scheduler.resources import resources
from scheduler.runs import create_run
from scheduler.settings import Settings
from scheduler.sweeper import Sweeper

log = logging.getLogger(__name__)


def register_scheduler_tasks(app: CeleryGraphApp) -> None:
    """Put `start_run` and `advance` on `app`, with the settings `app` carries."""

    @app.task(name=START_TASK, bind=True, shared=False)
    def start_run(
        self: Any,
        thread_id: str,
        run_id: str | None = None,
        graph: str | None = None,
        input: Any = None,
        config: dict[str, Any] | None = None,
        durability: str = "async",
        on_busy: str = "reject",
        routes: dict[str, str] | None = None,
        context: Any = None,
    ) -> str:
        res = resources(app.settings)
        res.load_graphs()
        if run_id is None or res.store.run(thread_id, run_id) is None:
            run_id = create_run(res.store, graph=graph or "", run_input=input,
                                thread_id=thread_id, config=config, durability=durability,
                                on_busy=on_busy, run_id=run_id, routes=routes, validate=False,
                                context=context)
        started = run_id
        with tracing.from_message(self.request):
            outcome = with_run_lease(res, app, thread_id, started,
                                     lambda d: d.start(thread_id, started))
        return str(outcome.status)

    @app.task(name=ADVANCE_TASK, bind=True, shared=False)
    def advance(self: Any, thread_id: str, run_id: str, checkpoint_id: str) -> str:
        res = resources(app.settings)
        res.load_graphs()
        with tracing.from_message(self.request):
            outcome = with_run_lease(res, app, thread_id, run_id,
                                     lambda d: d.advance(thread_id, run_id, checkpoint_id))
        return str(outcome.status)


def serve_graphs(app: CeleryGraphApp) -> None:
    """When a `celery worker` of `app` starts: load the configured graphs, serve metrics and
    set up tracing if configured (before the pool forks: its children record into what the
    main process serves), then publish the graphs and sweep for lost work (the sweeper
    publishes later if the store is down now).

    A graph module that fails to import stops the worker before it is ready: up, it would
    publish no graph, fail every task and sweep with the same ImportError, while producers
    only saw "unknown graph". So does a store of the wrong form or one that may evict keys
    (`graphdef.redis_client.check_store`): up, it would corrupt runs instead.
    """
    def load_graphs(sender: Any = None, **_: object) -> None:
        if getattr(sender, "app", None) is not app:
            return
        try:
            res = resources(app.settings)
            res.load_graphs()
        except (GraphModuleError, StoreConfigError) as exc:
            log.critical("%s; the worker stops", exc, exc_info=exc.__cause__)
            # Celery logs and swallows an Exception raised by a signal handler; SystemExit
            # ends the `celery worker` command (status 1) without saying it all again.
            raise SystemExit(1) from exc
        metrics.serve(app.settings, app, res.store)
        tracing.configure_from_env()

    def start_sweeper(sender: Any = None, **_: object) -> None:
        if getattr(sender, "app", None) is not app:
            return
        res = resources(app.settings)
        sweeper = Sweeper(res, app)
        try:
            res.publish_graphs()
            sweeper.published = True
        except Exception:  # noqa: BLE001 - the store is down: the sweeper publishes once it answers
            log.warning("could not publish graphs yet; the sweeper will retry")
        sweeper.start()

    signals.worker_init.connect(load_graphs, weak=False)
    signals.worker_ready.connect(start_sweeper, weak=False)


def create_scheduler_app(settings: Settings) -> CeleryGraphApp:
    """The scheduler role's app: its tasks, graphs loaded and the sweeper started when a
    `celery worker` of it starts."""
    app = CeleryGraphApp(settings)
    register_scheduler_tasks(app)
    register_api_tasks(app)
    serve_graphs(app)
    return app


@functools.cache
def app_from_env() -> CeleryGraphApp:
    """The app `celery -A scheduler` runs, configured from CELERYGRAPH_* once per process."""
    return create_scheduler_app(settings_from_env())
