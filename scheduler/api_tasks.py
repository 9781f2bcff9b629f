"""The HTTP API's tasks on the scheduler queue: a cron's tick (`scheduler.cron_fire`) and a
run's webhook (`scheduler.webhooks`). They work on the API's records with the server's
`Backend`, one per scheduler process, built on first use so a scheduler that never sees
either task never imports the server."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from scheduler import webhooks
from scheduler.celery_app import CeleryGraphApp
from scheduler.protocol import CRON_TASK, WEBHOOK_TASK

if TYPE_CHECKING:
    from scheduler.server.backend import Backend

log = logging.getLogger(__name__)


def register_api_tasks(app: CeleryGraphApp) -> None:
    """Put `fire_cron` and `deliver_webhook` on the scheduler's `app`."""

    @functools.cache
    def backend() -> Backend:
        from scheduler.server.backend import Backend
        from scheduler.server.config import ServerSettings

        return Backend.connect(app.settings, ServerSettings.from_env())

    @app.task(name=CRON_TASK, shared=False)
    def fire_cron(cron_id: str) -> str | None:
        from scheduler.cron_fire import fire

        return fire(backend(), cron_id)

    @app.task(name=WEBHOOK_TASK, shared=False)
    def deliver_webhook(thread_id: str, run_id: str, url: str, attempt: int = 0,
                        polls: int = 0) -> str:
        queue = app.settings.scheduler_queue
        try:
            outcome = webhooks.deliver(backend(), thread_id, run_id, url, polls)
        except webhooks.DeliveryError as exc:
            if attempt + 1 >= webhooks.MAX_ATTEMPTS:
                log.error("webhook for run %s given up after %d attempts: %s", run_id,
                          attempt + 1, exc)
                return "failed"
            log.warning("webhook for run %s, attempt %d failed: %s", run_id, attempt + 1, exc)
            webhooks.enqueue(app, queue, thread_id, run_id, url, attempt=attempt + 1,
                             polls=polls, countdown=webhooks.backoff(attempt))
            return "retrying"
        if outcome == "pending":
            webhooks.enqueue(app, queue, thread_id, run_id, url, attempt=attempt,
                             polls=polls + 1, countdown=webhooks.poll_delay(polls))
        return outcome
