"""A Celery consumer that rejects malformed task messages instead of dying on them.

Stock Celery validates little of a protocol-2 message before its task strategy unpacks it;
a forged body such as `{"args": []}` raises inside the consumer, the worker exits, the
message is restored, and the next worker dies too. This consumer checks the body and the
headers our tasks rely on first, and turns any other failure to accept a message into a
logged rejection, so one bad message costs one message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.consumer.consumer import Consumer

from scheduler.transport import guard_envelopes

log = logging.getLogger(__name__)

_OPTIONAL_HEADERS: dict[str, tuple[type, ...]] = {
    "eta": (str,),
    "expires": (str,),
    "retries": (int,),
    "stamped_headers": (list, tuple),
    "stamps": (dict,),
    "parent_id": (str,),
    "root_id": (str,),
    "group": (str,),
}


def problem_with(message: Any) -> str | None:
    """What makes a protocol-2 task message unacceptable, or None."""
    headers = message.headers
    if not isinstance(headers, dict):
        return "headers are not a mapping"
    if not isinstance(headers.get("task"), str) or not isinstance(headers.get("id"), str):
        return "task name or id missing"
    for name, types in _OPTIONAL_HEADERS.items():
        value = headers.get(name)
        if value is not None and not isinstance(value, types):
            return f"header {name!r} has the wrong type"
    limits = headers.get("timelimit")
    if limits is not None and not (
        isinstance(limits, list | tuple) and len(limits) == 2
        and all(v is None or isinstance(v, int | float) for v in limits)
    ):
        return "header 'timelimit' is not a pair of numbers"
    try:
        body = message.decode()
    except Exception:  # noqa: BLE001 - Celery's own handler refuses and logs these
        return None
    if not (isinstance(body, list | tuple) and len(body) == 3 and isinstance(body[0], list | tuple)
            and isinstance(body[1], dict) and isinstance(body[2], dict | type(None))):
        return "body is not [args, kwargs, embed]"
    return None


class SafeConsumer(Consumer):
    # Set by Consumer.__init__ (from the broker connection); celery-types does not declare it.
    connection_errors: tuple[type[BaseException], ...]

    def connect(self) -> Any:
        conn = super().connect()
        guard_envelopes(conn.transport)
        return conn

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        handler = super().create_task_handler(*args, **kwargs)
        connection_errors = tuple(self.connection_errors or ())

        def on_task_received(message: Any) -> Any:
            if isinstance(message.headers, dict) and "task" in message.headers:
                problem = problem_with(message)
                if problem is not None:
                    return self.on_invalid_task(None, message, InvalidTaskError(problem))
            try:
                return handler(message)
            except connection_errors:
                raise
            except Exception as exc:  # a message Celery could not accept: reject, go on
                log.error("rejecting task message %r: %r", message.headers, exc)
                return self.on_invalid_task(None, message, InvalidTaskError(repr(exc)))

        return on_task_received
