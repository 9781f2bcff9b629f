"""Crons on Celery beat, with the schedule kept in Redis by celery-redbeat.

Why RedBeat rather than a scheduler of our own: it is maintained, works with the Celery we
run (5.x), keeps every entry (definition and last run) in Redis so a beat restart loses
nothing, and lets only the holder of one Redis lock tick, so two or more beat replicas fire
each entry once; a replica waits for the lock and takes over within `LOCK_SECONDS` of the
holder's death. Entries are added and removed at run time (`save_entry`, `delete_entry`),
which Celery's file-backed scheduler cannot do across processes.

A tick can still reach the scheduler twice (a beat killed after sending but before
recording the run, then replaced): the fired task claims the tick in Redis
(`scheduler.cron_fire`), so a cron fires at most once per tick.

Schedules are 5-field cron expressions (minute hour day-of-month month day-of-week), read
by Celery's `crontab`: a day-of-month and a day-of-week both given must both match (Celery's
rule; classic cron fires when either does). A schedule is read in UTC, or on the wall
clock of its IANA `timezone`. RedBeat stores a crontab without a zone (its JSON has the
five fields only) and beat runs in UTC, so a cron with a zone gets a beat entry that fires
on every minute its ticks can fall on in UTC (`beat_schedule`); the fired task starts a run
only for a tick on the zone's clock it has not started yet (`scheduler.cron_fire`), so a
change of daylight saving time needs no new entry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery import Celery
from celery.schedules import crontab

from graphdef.redis_client import SentinelTarget, cluster_seeds, is_cluster_url, is_sentinel_url
from scheduler.protocol import CRON_TASK
from scheduler.settings import Settings

KEY_PREFIX = "cg:beat:"
# How often beat wakes at most (one Redis read): a cron created while beat sleeps is seen
# this late at worst, so its first tick can fire up to this late. And how long a dead beat's
# lock keeps the other replicas waiting.
MAX_INTERVAL_SECONDS = 1
LOCK_SECONDS = 30
# How far back `latest_tick` looks for the tick a late message belongs to.
LOOK_BACK = timedelta(days=31)


def conf(settings: Settings) -> dict[str, Any]:
    """The Celery settings `celery -A scheduler beat` runs RedBeat with, on the run store's
    Redis under `cg:beat:`."""
    return {
        "beat_scheduler": "redbeat.RedBeatScheduler",
        "beat_max_loop_interval": MAX_INTERVAL_SECONDS,
        "beat_max_interval": MAX_INTERVAL_SECONDS,
        **redbeat_connection(settings.store_url),
        "redbeat_key_prefix": KEY_PREFIX,
        "redbeat_lock_timeout": LOCK_SECONDS,
        "timezone": "UTC",
        "enable_utc": True,
    }


def redbeat_connection(store_url: str) -> dict[str, Any]:
    """RedBeat's connection settings for the store `store_url` names: RedBeat spells a
    cluster and a sentinel-watched master in forms of its own.

    On a cluster, RedBeat's pipelines are not transactions (a cluster client's are not),
    and each of its Lua scripts (the lock's) names one key: no command spans two slots."""
    if is_cluster_url(store_url):
        first_seed, _ = cluster_seeds(store_url)
        return {"redbeat_redis_url": first_seed, "redbeat_redis_options": {"cluster": True}}
    if not is_sentinel_url(store_url):
        return {"redbeat_redis_url": store_url, "redbeat_redis_options": {}}
    target = SentinelTarget(store_url)
    server = target.server_kwargs
    found: dict[str, Any] = {
        "redbeat_redis_url": "redis-sentinel://",
        "redbeat_redis_options": {
            "sentinels": target.sentinels, "service_name": target.service,
            "sentinel_kwargs": target.sentinel_kwargs,
            **{k: server[k] for k in ("db", "password", "username", "socket_timeout")
               if k in server}},
    }
    if server.get("ssl"):
        # RedBeat turns TLS on for a sentinel's master when this is a dict (its options).
        found["redbeat_redis_use_ssl"] = {
            k: v for k, v in server.items() if k.startswith("ssl_")}
    return found


def parse(schedule: str) -> crontab:
    """The schedule as Celery's crontab; ValueError naming what is wrong."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"Invalid cron schedule {schedule!r}: expected 5 fields (minute "
                         f"hour day-of-month month day-of-week), got {len(fields)}")
    try:
        return crontab.from_string(schedule)
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"Invalid cron schedule {schedule!r}: {exc}") from None


def zone(name: str | None) -> tzinfo:
    """The IANA zone a schedule is read in (None: UTC); ValueError naming a bad one."""
    if name is None:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"Invalid timezone: {name!r}. Use IANA timezone format (e.g. "
                         "'America/New_York').") from None


def in_utc(name: str | None) -> bool:
    """Whether a schedule in zone `name` is read in UTC: its beat entry is the schedule."""
    return name in (None, "UTC", "Etc/UTC")


def beat_schedule(schedule: str, name: str | None) -> str:
    """The schedule of a cron's beat entry (UTC): the schedule itself in UTC; for another
    zone, every minute a tick can fall on: the schedule's minutes each hour if the zone's
    offsets are whole hours (winter and summer, this year and next), else every minute."""
    if in_utc(name):
        return schedule
    tz = zone(name)
    year = datetime.now(UTC).year
    offsets = {datetime(y, m, 1, tzinfo=tz).utcoffset() for y in (year, year + 1)
               for m in (1, 7)}
    whole_hours = all(o is not None and o % timedelta(hours=1) == timedelta(0)
                      for o in offsets)
    return f"{schedule.split()[0] if whole_hours else '*'} * * * *"


def _matches(cron: crontab, at: datetime) -> bool:
    fields: Any = cron  # the expanded sets are not in celery-types' stub
    return bool(at.minute in fields.minute and at.hour in fields.hour
                and at.isoweekday() % 7 in fields.day_of_week
                and at.day in fields.day_of_month and at.month in fields.month_of_year)


def next_tick(cron: crontab, now: datetime, tz: tzinfo = UTC) -> datetime | None:
    """The first tick after `now` on the clock of `tz`; None if none comes within four
    years (a day that never exists, such as February 30)."""
    fields: Any = cron
    at = now.astimezone(tz).replace(second=0, microsecond=0) + timedelta(minutes=1)
    until = at + timedelta(days=4 * 366)
    while at < until:
        if not (at.day in fields.day_of_month and at.month in fields.month_of_year
                and at.isoweekday() % 7 in fields.day_of_week):
            at = (at + timedelta(days=1)).replace(hour=0, minute=0)
        elif at.hour not in fields.hour:
            at = (at + timedelta(hours=1)).replace(minute=0)
        elif at.minute not in fields.minute:
            at += timedelta(minutes=1)
        else:
            return at
    return None


def latest_tick(cron: crontab, now: datetime, tz: tzinfo = UTC) -> datetime:
    """The tick a firing at `now` belongs to, on the clock of `tz`: the latest at or before
    `now` (a message may arrive seconds late); the current minute if none is within
    `LOOK_BACK`."""
    at = now.astimezone(tz).replace(second=0, microsecond=0)
    floor = at - LOOK_BACK
    probe = at
    while probe > floor:
        if _matches(cron, probe):
            return probe
        probe -= timedelta(minutes=1)
    return at


def _entry(app: Celery, cron_id: str, schedule: str, queue: str, enabled: bool) -> Any:
    """RedBeat's entry firing the cron's task on `schedule` (a beat schedule, in UTC)."""
    # Imported here: every role builds its app with `conf`, only the server and beat need
    # RedBeat itself (the `server` extra).
    from redbeat import RedBeatSchedulerEntry  # type: ignore[import-untyped]

    return RedBeatSchedulerEntry(f"cron:{cron_id}", CRON_TASK, parse(schedule),
                                 args=[cron_id], options={"queue": queue}, enabled=enabled,
                                 app=app)


def save_entry(app: Celery, cron_id: str, schedule: str, timezone: str | None, queue: str,
               enabled: bool) -> None:
    """Add or replace the cron's beat entry. A new entry counts as run now, so it first
    fires at its next tick (RedBeat would fire an entry that never ran at once)."""
    entry = _entry(app, cron_id, beat_schedule(schedule, timezone), queue, enabled)
    entry.last_run_at = datetime.now(UTC)
    entry.save()


def delete_entry(app: Celery, cron_id: str) -> None:
    _entry(app, cron_id, "* * * * *", "", False).delete()
