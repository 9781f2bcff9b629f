"""The Celery app: `celery -A worker worker -Q nodes` runs node tasks.

Configured from environment variables (see `worker.settings`), with the settings that make
a killed worker cost only its current node: late acks, reject on a lost worker, prefetch
of one, JSON only on the wire, and task events on so Flower sees every node.
"""

from __future__ import annotations

import ssl

from celery import Celery, signals

from worker.amqp import ShadowNamedAMQP
from worker.settings import Settings


def make_app(settings: Settings) -> Celery:
    """A Celery app configured for celerygraph; producers and workers build it the same way."""
    celery_app = Celery("celerygraph", broker=settings.broker_url, amqp=ShadowNamedAMQP)
    celery_app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_ignore_result=True,
        task_default_queue=settings.node_queue,
        task_send_sent_event=True,
        worker_send_task_events=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        worker_hijack_root_logger=False,
        worker_consumer="worker.consumer:SafeConsumer",
    )
    if settings.broker_url.startswith("rediss://") and "ssl_cert_reqs" not in settings.broker_url:
        # kombu would fall back to no certificate checks for a bare rediss:// URL.
        celery_app.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return celery_app


settings = Settings.from_env()
app = make_app(settings)


@signals.worker_init.connect
def _load_graphs(**_: object) -> None:
    from worker.resources import resources

    resources().load_graphs()


@signals.worker_ready.connect
def _start_sweeper(**_: object) -> None:
    """The sweeper also publishes this worker's graphs, retrying while the store is down."""
    from worker.resources import resources
    from worker.sweeper import Sweeper

    res = resources()
    sweeper = Sweeper(res, app)
    try:
        res.publish_graphs()
        sweeper.published = True
    except Exception:  # the store is down: the sweeper publishes once it answers
        pass
    sweeper.start()
