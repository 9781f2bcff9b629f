"""LangGraph's value types as graphdef's: what nodes return and what builders hold.

A node written for LangGraph returns `langgraph.types.Command`, `Send` and `Overwrite`, an
entrypoint `langgraph.func.entrypoint.final`; its builder holds LangGraph's `RetryPolicy`
and `CachePolicy`. graphdef's engine recognises its own classes only, so each crosses over
here, field by field. LangGraph's defaults that differ in kind become graphdef's: the
default `retry_on` (the same rule, graphdef's copy) and the default cache key (LangGraph
pickles the input, which differs between processes; graphdef's key is the serde's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from langgraph.func import entrypoint as lg_entrypoint
from langgraph.types import CachePolicy as LgCachePolicy
from langgraph.types import Command as LgCommand
from langgraph.types import Overwrite as LgOverwrite
from langgraph.types import RetryPolicy as LgRetryPolicy
from langgraph.types import Send as LgSend

from graphdef.func import entrypoint
from graphdef.types import (
    CachePolicy,
    Command,
    Overwrite,
    RetryPolicy,
    Send,
    default_retry_on,
)

_LG_RETRY_ON = LgRetryPolicy._field_defaults["retry_on"]
_LG_KEY_FUNC = next(f.default for f in dataclasses.fields(LgCachePolicy) if f.name == "key_func")


def to_graphdef(value: Any) -> Any:
    """`value` with LangGraph's control values replaced by graphdef's: a node's or route's
    result, an entrypoint's return value, or a run's `Command` input. Only where LangGraph
    looks for them (the value itself, the items of a returned list, the values of an
    update dict); user data is not walked."""
    if isinstance(value, LgCommand):
        return Command(graph=value.graph, update=_update(value.update), resume=value.resume,
                       goto=_goto(value.goto))
    if isinstance(value, LgSend):
        return Send(value.node, value.arg)
    if isinstance(value, lg_entrypoint.final):
        return entrypoint.final(value=value.value, save=value.save)
    if type(value) in (list, tuple):
        mapped = [to_graphdef(item) for item in value]
        if any(new is not old for new, old in zip(mapped, value, strict=True)):
            return mapped if isinstance(value, list) else tuple(mapped)
        return value
    if isinstance(value, dict):
        return _update(value)
    return value


def _update(update: Any) -> Any:
    """An update with LangGraph's `Overwrite` values as graphdef's."""
    if isinstance(update, dict) and any(isinstance(v, LgOverwrite) for v in update.values()):
        return {k: Overwrite(v.value) if isinstance(v, LgOverwrite) else v
                for k, v in update.items()}
    if isinstance(update, list) and any(
        isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], LgOverwrite)
        for item in update
    ):
        return [(item[0], Overwrite(item[1].value))
                if isinstance(item, tuple) and len(item) == 2
                and isinstance(item[1], LgOverwrite) else item
                for item in update]
    return update


def _goto(goto: Any) -> Any:
    if isinstance(goto, LgSend):
        return Send(goto.node, goto.arg)
    if isinstance(goto, str):
        return goto
    return [Send(g.node, g.arg) if isinstance(g, LgSend) else g for g in goto]


def retry_policies(policy: Any) -> tuple[RetryPolicy, ...]:
    """A node's, task's or entrypoint's retry policies (one or a sequence; first match
    wins in both engines)."""
    if policy is None:
        return ()
    policies: Sequence[Any] = (policy,) if isinstance(policy, LgRetryPolicy) else policy
    return tuple(
        RetryPolicy(
            initial_interval=p.initial_interval, backoff_factor=p.backoff_factor,
            max_interval=p.max_interval, max_attempts=p.max_attempts, jitter=p.jitter,
            retry_on=default_retry_on if p.retry_on is _LG_RETRY_ON else p.retry_on,
        )
        for p in policies
    )


def cache_policy(policy: Any) -> CachePolicy[Any] | None:
    """A cache policy, its key function kept unless it is LangGraph's default."""
    if policy is None:
        return None
    if policy.key_func is _LG_KEY_FUNC:
        return CachePolicy(ttl=policy.ttl)
    return CachePolicy(key_func=policy.key_func, ttl=policy.ttl)
