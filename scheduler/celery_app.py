"""The Celery app every celerygraph process builds from its settings: producers, the
scheduler and node workers configure it the same way.

The settings that make a killed worker cost only its current node: late acks, reject on a
lost worker, prefetch of one; JSON only on the wire; task events on so Flower sees every
node (unless CELERYGRAPH_TASK_EVENTS=0). The app carries the settings it was built from, so
its tasks never read the environment again.
"""

from __future__ import annotations

import ssl
from dataclasses import replace

from celery import Celery

from scheduler import beat
from scheduler.amqp import ShadowNamedAMQP
from scheduler.broker_clients import ClientReusingConnection
from scheduler.faults import Faults
from scheduler.settings import Settings


class _AMQP(ShadowNamedAMQP):
    Connection = ClientReusingConnection


class CeleryGraphApp(Celery):
    """A Celery app configured for celerygraph, with the settings it was configured from."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("celerygraph", broker=settings.broker_url, amqp=_AMQP)
        self.settings = settings
        self.conf.update(
            task_acks_late=True,
            task_reject_on_worker_lost=True,
            worker_prefetch_multiplier=1,
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
            event_serializer="json",
            task_ignore_result=True,
            task_default_queue=settings.node_queue,
            task_send_sent_event=settings.task_events,
            worker_send_task_events=settings.task_events,
            broker_connection_retry_on_startup=True,
            broker_transport_options={"visibility_timeout": settings.visibility_timeout},
            worker_hijack_root_logger=False,
            worker_consumer="scheduler.consumer:SafeConsumer",
        )
        self.conf.update(beat.conf(settings))
        url = settings.broker_url
        if url.startswith("rediss://") and "ssl_cert_reqs" not in url:
            # kombu would fall back to no certificate checks for a bare rediss:// URL.
            self.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def settings_from_env() -> Settings:
    """What a `celery` role runs with: CELERYGRAPH_* and, for the fault suite, its faults
    (kept out of `Settings.from_env`, which producers and deployments share)."""
    return replace(Settings.from_env(), faults=Faults.from_env())


def make_app(settings: Settings) -> CeleryGraphApp:
    """An app for producers: it sends celerygraph's messages and runs no task."""
    return CeleryGraphApp(settings)
