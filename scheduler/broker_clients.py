"""Broker connections whose Redis channels reuse one redis-py client per channel.

Kombu's Redis channel builds a new `redis.Redis` object for every command it sends outside
its BRPOP loop: each task message published, each event (task-sent, task-received, ...),
each ack and each message a worker takes (its unacked entry). Building one costs about
0.1-0.25 ms of Python (redis-py sets up its reply callbacks each time), on the path from a
start to its first node message and from a node message to its task. The client holds no
connection of its own (it takes one from the channel's pool per command, as the new ones
did), so one per channel does the same for less; a channel whose pool is replaced (after a
lost connection) gets a new client with it.
"""

from __future__ import annotations

from typing import Any

import kombu
from kombu import connection as kombu_connection
from kombu.transport import redis as kombu_redis


class _ClientReusingChannel:
    """Mixed in before a kombu Redis channel class."""

    _reused_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        make = super()._create_client  # type: ignore[misc]
        if asynchronous:
            return make(asynchronous=True)
        pool = self.pool  # type: ignore[attr-defined]
        client = self._reused_client
        if client is None or client.connection_pool is not pool:
            client = self._reused_client = make()
        return client


_channel_classes: dict[type, type] = {}


def _reusing(channel_class: type) -> type:
    """`channel_class` with `_ClientReusingChannel` mixed in (one class per class)."""
    if channel_class not in _channel_classes:
        _channel_classes[channel_class] = type(channel_class.__name__,
                                               (_ClientReusingChannel, channel_class), {})
    return _channel_classes[channel_class]


def _reuse_clients(transport: Any) -> Any:
    """`transport`, if a Redis one, making client-reusing channels; any other as it is."""
    if isinstance(transport, kombu_redis.Transport):
        transport.Channel = _reusing(transport.Channel)
    return transport


class _PooledConnection(kombu_connection.PooledConnection):
    def create_transport(self) -> Any:
        return _reuse_clients(super().create_transport())  # type: ignore[misc]  # stubs lack it


class _ConnectionPool(kombu_connection.ConnectionPool):
    def new(self) -> Any:
        return _PooledConnection(self, **dict(self.connection._info(resolve=False)))


class ClientReusingConnection(kombu.Connection):
    """A broker connection whose transport, if a Redis one, makes client-reusing channels,
    and whose pool's connections (Celery's producers take theirs from it) do too."""

    def create_transport(self) -> Any:
        return _reuse_clients(super().create_transport())

    def Pool(self, limit: int | None = None, **kwargs: Any) -> _ConnectionPool:  # noqa: N802
        return _ConnectionPool(self, limit=limit, **kwargs)
