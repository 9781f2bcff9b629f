"""Running one task attempt after another under its RetryPolicy."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
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


def run_with_retry(
    attempt: Callable[[], Any],
    policies: Sequence[RetryPolicy],
    *,
    before_retry: Callable[[], None] = lambda: None,
) -> Any:
    """Call `attempt` until it succeeds or the first matching policy gives up.

    `before_retry` clears what a failed attempt wrote, so a retry starts clean.
    """
    attempts = 0
    interval = 0.0
    while True:
        try:
            return attempt()
        except GraphBubbleUp:
            raise
        except Exception as exc:
            policy = next((p for p in policies if _matches(p, exc)), None)
            if policy is None:
                raise
            attempts += 1
            if attempts >= policy.max_attempts:
                raise
            interval = (
                policy.initial_interval
                if attempts == 1
                else min(policy.max_interval, interval * policy.backoff_factor)
            )
            delay = interval + random.uniform(0, 1) if policy.jitter else interval
            time.sleep(delay)
            before_retry()
