"""Webhooks: a run created with `webhook` has the run POSTed to that URL once it settles
(success, error, or interrupted, as the reference server does), by the
`celerygraph.deliver_webhook` task on the scheduler queue, never by the HTTP handler.

The server sends the task when it records the run (before starting it, so a server that dies
right after starting a run has already queued its webhook). The task follows the run: while
it works, the task queues itself again a little later (0.25 s doubling to 5 s); once it
settled, it POSTs the payload. A failed POST (no answer within `TIMEOUT_SECONDS`, or a
status other than 2xx) is retried with exponential backoff (1, 2, 4, ... 60 s) up to
`MAX_ATTEMPTS` times. Messages are acknowledged late, so a task whose process dies is
delivered again.

Guarantee: at least once, with an idempotency key. A successful delivery is recorded in
Redis and never repeated; a copy of the task that finds a delivery in progress waits. Only
a process that dies after the receiver accepted the POST but before the delivery was
recorded makes the next attempt POST again, with the same `Idempotency-Key` header (the
run id), by which a receiver drops the copy.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from celery import Celery

from graphdef.errors import CeleryGraphError
from scheduler.protocol import Sender

if TYPE_CHECKING:
    from scheduler.server.backend import Backend

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
MAX_ATTEMPTS = 8
# A delivery in progress holds the run for this long; a copy of the task waits meanwhile.
SENDING_SECONDS = int(TIMEOUT_SECONDS) + 20
DELIVERED_SECONDS = 7 * 24 * 3600
# How many polls (about a minute) a run recorded by the API may take to be stored.
STORE_POLLS = 16


class DeliveryError(CeleryGraphError):
    """The receiver did not take the webhook: no answer, or a status other than 2xx."""


def check_url(url: str) -> str:
    """An absolute http(s) URL, or a ValueError (422) naming the problem."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"webhook must be an absolute http:// or https:// URL, got {url!r} "
                         "(a path on this server is not supported)")
    return url


def poll_delay(polls: int) -> float:
    return min(0.25 * 2.0 ** polls, 5.0)


def backoff(attempt: int) -> float:
    return float(min(2 ** attempt, 60))


def enqueue(app: Celery, queue: str, thread_id: str, run_id: str, url: str,
            *, attempt: int = 0, polls: int = 0, countdown: float = 0.25) -> None:
    Sender(app, queue).webhook(thread_id, run_id, url, attempt=attempt, polls=polls,
                               countdown=countdown)


def payload(backend: Backend, thread_id: str, run_id: str) -> dict[str, Any] | None:
    """The run as the reference POSTs it: the run object, when it started and ended, the
    thread's values and, for a failed run, the error; None while the run has not settled
    (or is gone)."""
    from scheduler.records import RunStatus
    from scheduler.server import views

    run = backend.client.store.run(thread_id, run_id)
    info = backend.records.run(thread_id, run_id)
    if run is None or info is None or not run.status.settled:
        return None
    values: Any = None
    if backend.client.saver.head(thread_id) is not None:
        values = backend.graph(run.graph).get_state(
            {"configurable": {"thread_id": thread_id}}).values
    else:
        values = backend.client.store.output(thread_id, run_id)
    body = {**views.run_view(run, info),
            "run_started_at": views.iso(run.created_at),
            "run_ended_at": views.iso(run.finished_at or run.updated_at),
            "webhook_sent_at": datetime.now(UTC).isoformat(),
            "values": values}
    if run.status in (RunStatus.FAILED, RunStatus.REJECTED) and run.error:
        body["error"] = run.error.get("message", "")
    return body


def post(url: str, body: dict[str, Any], key: str) -> None:
    request = urllib.request.Request(
        url, data=orjson.dumps(body), method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": key,
                 "User-Agent": "celerygraph-webhook"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"{url} answered {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise DeliveryError(f"{url}: {exc}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"{url} answered {status}")


def deliver(backend: Backend, thread_id: str, run_id: str, url: str, polls: int = 0) -> str:
    """One attempt: `delivered` (now or before), `gone` (the run was refused, deleted or
    expired), `pending` (not settled yet, or another copy is sending); DeliveryError if the
    receiver did not take it. The task is queued just before the run is stored, so a run
    not there yet is waited for, `STORE_POLLS` times."""
    store = backend.client.store
    key = store.key(thread_id, "api", "webhook", run_id)
    if store.r.get(key) == b"delivered":
        return "delivered"
    body = payload(backend, thread_id, run_id)
    if body is None:
        if store.run(thread_id, run_id) is not None:
            return "pending"
        recorded = backend.records.run(thread_id, run_id) is not None
        return "pending" if recorded and polls < STORE_POLLS else "gone"
    if not store.r.set(key, b"sending", nx=True, ex=SENDING_SECONDS):
        return "delivered" if store.r.get(key) == b"delivered" else "pending"
    try:
        post(url, body, run_id)
    except BaseException:
        store.r.delete(key)
        raise
    store.r.set(key, b"delivered", ex=DELIVERED_SECONDS)
    return "delivered"
