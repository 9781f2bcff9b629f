"""What a cron's beat tick does (`celerygraph.fire_cron`, on the scheduler queue): start the
cron's run as `POST /threads/{id}/runs` (or a stateless `POST /runs`) would, through
`scheduler.server.runs.start`.

Each tick fires at most once: the task claims the tick (the latest one at or before now, as
a message can arrive late) in Redis before it starts anything, and a tick is claimed only
if it is later than the last one claimed, so a duplicate message (two beats, or a beat
replaced between sending and recording) starts nothing. A task that dies between the claim
and the run's creation loses that tick: at most once, never twice.

A cron with a timezone is fired on every minute its ticks can fall on (`beat.beat_schedule`):
the latest tick on the zone's clock is found as above, and a tick from before the schedule
was set (`scheduled_at`) starts nothing; a tick missed while every beat was down fires once
when one is back, as a UTC cron's does.

A thread's crons go with the thread, as in the reference server: the API no longer shows
them once the thread is deleted, and the next tick deletes them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from scheduler import beat
from scheduler.server.backend import Backend
from scheduler.server.cron_store import CronStore
from scheduler.server.http import ApiError
from scheduler.server.runs import start

log = logging.getLogger(__name__)

def fire(backend: Backend, cron_id: str, now: datetime | None = None) -> str | None:
    """Start the cron's run for the current tick; its run id, or None when there is
    nothing to start (cron gone, disabled, past its end, or the tick already fired)."""
    crons = CronStore(backend.client.store)
    record = crons.get(cron_id)
    if record is None:
        beat.delete_entry(backend.client.app, cron_id)
        return None
    now = now or datetime.now(UTC)
    if not record.get("enabled", True):
        return None
    end = record.get("end_time")
    if end is not None and now.timestamp() > end:
        beat.delete_entry(backend.client.app, cron_id)
        return None
    timezone = record.get("timezone")
    tick = beat.latest_tick(beat.parse(record["schedule"]), now, beat.zone(timezone))
    if not beat.in_utc(timezone) and tick.timestamp() < record.get(
            "scheduled_at", record["created_at"]):
        return None  # no tick since the schedule was set
    if not crons.claim_tick(cron_id, tick.astimezone(UTC).strftime("%Y%m%dT%H%M")):
        log.info("cron %s: tick %s already fired", cron_id, tick.isoformat())
        return None
    payload = dict(record["payload"])
    thread_id = record.get("thread_id")
    if thread_id is not None and backend.records.thread(thread_id) is None:
        # The thread was deleted: its crons go with it, as in the reference server.
        log.info("cron %s: thread %s is gone, the cron is deleted", cron_id, thread_id)
        beat.delete_entry(backend.client.app, cron_id)
        crons.delete(cron_id)
        return None
    if thread_id is None:
        payload["on_completion"] = record.get("on_run_completed") or "delete"
    try:
        started = start(backend, thread_id, payload, f"cron {cron_id}")
    except ApiError as exc:
        log.warning("cron %s: tick %s started no run: %s", cron_id, tick.isoformat(),
                    exc.detail)
        return None
    log.info("cron %s: tick %s started run %s on thread %s", cron_id, tick.isoformat(),
             started.run_id, started.thread_id)
    return started.run_id
