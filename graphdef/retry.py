"""Running one task attempt after another under its RetryPolicy, in a thread or on an
event loop."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from graphdef.errors import GraphBubbleUp
from graphdef.types import RetryPolicy


def _matches(policy: RetryPolicy, exc: Exception) -> bool:
    retry_on = policy.retry_on
    if isinstance(retry_on, type) and issubclass(retry_on, BaseException):
        return isinstance(exc, retry_on)
    if isinstance(retry_on, Sequence):
        return isinstance(exc, tuple(retry_on))
    return bool(retry_on(exc))


class _Backoff:
    """How long to wait before the next attempt; raises when no policy allows one."""

    def __init__(self, policies: Sequence[RetryPolicy]) -> None:
        self.policies = policies
        self.attempts = 0
        self.interval = 0.0

    def next_delay(self, exc: Exception) -> float:
        policy = next((p for p in self.policies if _matches(p, exc)), None)
        if policy is None:
            raise exc
        self.attempts += 1
        if self.attempts >= policy.max_attempts:
            raise exc
        self.interval = (
            policy.initial_interval
            if self.attempts == 1
            else min(policy.max_interval, self.interval * policy.backoff_factor)
        )
        return self.interval + random.uniform(0, 1) if policy.jitter else self.interval


def run_with_retry(
    attempt: Callable[[], Any],
    policies: Sequence[RetryPolicy],
    *,
    before_retry: Callable[[], None] = lambda: None,
) -> Any:
    """Call `attempt` until it succeeds or the first matching policy gives up.

    `before_retry` clears what a failed attempt wrote, so a retry starts clean.
    """
    backoff = _Backoff(policies)
    while True:
        try:
            return attempt()
        except GraphBubbleUp:
            raise
        except Exception as exc:
            time.sleep(backoff.next_delay(exc))
            before_retry()


async def arun_with_retry(
    attempt: Callable[[], Awaitable[Any]],
    policies: Sequence[RetryPolicy],
    *,
    before_retry: Callable[[], None] = lambda: None,
) -> Any:
    """`run_with_retry` for an async attempt: waits without blocking the event loop."""
    backoff = _Backoff(policies)
    while True:
        try:
            return await attempt()
        except GraphBubbleUp:
            raise
        except Exception as exc:
            await asyncio.sleep(backoff.next_delay(exc))
            before_retry()
