"""A Redis broker's malformed message envelope refused with a logged reason, not lost.

Producers in other languages push the JSON envelope kombu expects straight onto the queue's
Redis list (README, "Any language"). Kombu checks it only after it has popped it: one
without `properties.delivery_tag`, say, raises inside the consumer, the worker logs a lost
connection, and the message is gone without a word about what was wrong with it. Here
the consumer's transport checks the envelope first and drops a bad one with an error that
names the problem; `scheduler.consumer.SafeConsumer` then checks the task message inside it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


def envelope_problem(payload: Any) -> str | None:
    """What keeps kombu from building a message out of `payload`, or None."""
    if not isinstance(payload, dict):
        return "the envelope is not a JSON object"
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return "properties is missing or not an object"
    tag = properties.get("delivery_tag")
    if not isinstance(tag, str) or not tag:
        return "properties.delivery_tag is missing or not a non-empty string"
    if not isinstance(payload.get("headers"), dict | None):
        return "headers is not an object"
    body, encoding = payload.get("body"), properties.get("body_encoding")
    if body:
        if encoding != "base64":
            return (f"properties.body_encoding is {encoding!r}; the body must be base64 with "
                    "body_encoding 'base64'")
        if not isinstance(body, str):
            return "body is not a string"
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return "body is not valid base64"
    return None


def guard_envelopes(transport: Any) -> None:
    """Check each envelope a Redis `transport` delivers first; any other transport (RabbitMQ
    checks its own frames) is left alone. Done on the consumer's transport instance, so the
    broker URL, which Flower and the worker banner show, keeps its `redis://` scheme."""
    if not isinstance(transport, kombu_redis.Transport):
        return
    deliver = transport._deliver

    def checked(message: Any, queue: str | None) -> None:
        problem = envelope_problem(message)
        if problem is not None:
            headers = message.get("headers") if isinstance(message, dict) else None
            headers = headers if isinstance(headers, dict) else {}
            log.error("rejecting a message on queue %r (task %r, id %r): %s; it is dropped: "
                      "%.500r", queue, headers.get("task"), headers.get("id"), problem, message)
            return
        deliver(message, queue)

    # Kombu has no hook before delivery: wrap this transport instance's own method, and have
    # its channels, open ones and new ones, survive an envelope that is not JSON at all.
    setattr(transport, "_deliver", checked)  # noqa: B010
    open_channels: list[Any] = list(transport.channels or ())  # the stubs lack `handlers`
    for channel in open_channels:
        channel.handlers["BRPOP"] = _refusing_non_json(channel._brpop_read)
    transport.Channel = _refusing(transport.Channel)


def _refusing_non_json(read: Callable[..., Any]) -> Callable[..., Any]:
    """Kombu decodes a popped envelope before anything can look at it: text that is not
    JSON raised out of the consumer, and Celery stopped the worker (one bad LPUSH, one dead
    worker). Such an envelope is dropped with a logged reason instead."""

    def read_or_refuse(**options: Any) -> Any:
        try:
            return read(**options)
        except json.JSONDecodeError as exc:
            log.error("rejecting a message on a Redis queue: its envelope is not JSON (%s); "
                      "it is dropped", exc)
            return True

    return read_or_refuse


class _NonJsonRefusingChannel:
    """Mixed in before the transport's own channel class (`_refusing`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        channel: Any = self  # the stubs lack `handlers` and `_brpop_read`
        channel.handlers["BRPOP"] = _refusing_non_json(channel._brpop_read)


_channel_classes: dict[type, type] = {}


def _refusing(channel_class: type) -> type:
    """The transport's channel class (a Sentinel one, one that reuses its client) with
    `_NonJsonRefusingChannel` mixed in, one class per class."""
    if channel_class not in _channel_classes:
        _channel_classes[channel_class] = type(channel_class.__name__,
                                               (_NonJsonRefusingChannel, channel_class), {})
    return _channel_classes[channel_class]
