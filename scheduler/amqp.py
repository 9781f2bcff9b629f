"""Celery's message builder, with node tasks' sent events named like their other events.

Celery puts a task's `shadow` name in the events a worker sends (received, started, ...)
but the producer's task-sent event keeps the registered name. Flower merges the two in
arrival order, so some node tasks would show as `celerygraph.run_node` instead of
`<graph>.<node>`. Naming the sent event after the shadow too keeps Flower consistent.
"""

from __future__ import annotations

import inspect
from typing import Any

from celery.app.amqp import AMQP

_SIGNATURE = inspect.signature(AMQP.as_task_v2)


class ShadowNamedAMQP(AMQP):
    def as_task_v2(self, task_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(task_id, name, *args, **kwargs)
        # Celery passes `shadow` positionally: find it by binding the signature.
        shadow = _SIGNATURE.bind(self, task_id, name, *args, **kwargs).arguments.get("shadow")
        if shadow and message.sent_event is not None:
            message.sent_event["name"] = shadow
        return message
