"""Redis clients from the URLs users write, and the checks a store must pass before use.

Two forms name a store:

- ``redis://`` / ``rediss://``: one Redis server (redis-py's own URL form);
- ``redis+cluster://[user:password@]host:port[,host:port...][/0][?option=value...]``, and
  ``rediss+cluster://`` over TLS: a Redis Cluster, by one or more of its nodes (the client
  learns the others from the cluster itself; more than one seed only matters when a seed
  may be down). Options are redis-py's URL options, as for a single server.
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db][?option=value...]``,
  and ``rediss+sentinel://``: one Redis server with replicas, watched by Redis Sentinel,
  by its sentinels and the service name they monitor. The client asks the sentinels which
  server is the master and asks again when a failover moves it. Credentials and options are
  the data servers'; ``sentinel_username`` and ``sentinel_password`` options are the
  sentinels' own.

Why a scheme of our own: a plain URL cannot say which client it wants, and the wrong one
fails late and partly. A single-node client on a cluster works for the keys whose slot that
node serves and gets MOVED for the rest, which is a run that breaks at its first thread on
another node; a cluster client on a plain server cannot start at all. So the URL says it, and
`check_store` fails at once, naming the fix, when the server reached disagrees.

`check_store` also refuses a Redis that may evict keys (`maxmemory-policy` other than
`noeviction`): an evicted lease re-runs a running node, an evicted memo runs a finished one
again, an evicted head checkpoint loses the thread. The volatile-* policies are refused too:
leases, streams and finished threads carry TTLs, so those are what they would evict first.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster, cleanup_kwargs
from redis.commands.core import Script
from redis.exceptions import RedisClusterException

from graphdef.errors import CeleryGraphError

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SENTINEL_SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
SAFE_POLICY = "noeviction"


class StoreConfigError(CeleryGraphError, ValueError):
    """A store URL or the Redis it reaches cannot hold runs safely; the message says why."""


class ScriptingClusterPipeline(ClusterPipeline):
    """A cluster pipeline (or transaction) that queues Lua scripts.

    redis-py blocks EVALSHA and MGET in cluster pipelines: it cannot load a script on the
    node a queued EVALSHA will reach, nor split an MGET in a pipeline. Ours name keys of one
    slot, so this one queues them as they are, and a script goes as its text (EVAL, which
    the server caches as it does a loaded script): never unknown to the node it reaches,
    so a transaction cannot run half of itself around a NOSCRIPT.
    """

    sources: dict[str, str | bytes]

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        source = self.sources.get(sha)
        if source is None:
            raise RedisClusterException(
                f"script {sha} was not registered on this client (register_script)")
        return self.execute_command("EVAL", source, numkeys, *keys_and_args)

    def mget(self, keys: Any, *args: Any) -> Any:
        names = [keys] if isinstance(keys, str | bytes) else list(keys)
        return self.execute_command("MGET", *names, *args)


class ClusterClient(RedisCluster):
    """`RedisCluster` whose pipelines run the scripts registered on it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.script_sources: dict[str, str | bytes] = {}

    def register_script(self, script: Any) -> Script:
        registered = super().register_script(script)
        self.script_sources[registered.sha] = registered.script
        return registered

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        pipe = super().pipeline(transaction, shard_hint)
        pipe.__class__ = ScriptingClusterPipeline
        cast(ScriptingClusterPipeline, pipe).sources = self.script_sources
        return pipe


class BlockingSentinelPool(redis.sentinel.SentinelConnectionPool,
                           redis.BlockingConnectionPool):
    """The master's connections as a blocking pool: past `max_connections` a thread waits
    up to `timeout` for one, as on a single server, instead of failing. Connections to a
    master a failover replaced are dropped when they come back (the sentinel pool's
    `owns_connection`)."""


class AsyncBlockingSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool,
                                redis.asyncio.BlockingConnectionPool):
    """`BlockingSentinelPool` for asyncio."""


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0] in SENTINEL_SCHEMES


def is_store_url(url: str) -> bool:
    """Whether `url` is one of the forms a store may be named by."""
    scheme = url.split("://", 1)[0]
    return scheme in ("redis", "rediss") or scheme in CLUSTER_SCHEMES or (
        scheme in SENTINEL_SCHEMES)


class SentinelTarget:
    """What a `redis+sentinel://` URL names: the sentinels, the service they watch, and
    the connection settings of its servers and of the sentinels."""

    def __init__(self, url: str) -> None:
        scheme, _, rest = url.partition("://")
        netloc, _, path_query = rest.partition("/")
        path, _, query = path_query.partition("?")
        credentials, at, hosts = netloc.rpartition("@")
        parts = [p for p in path.split("/") if p]
        if not parts or len(parts) > 2:
            raise StoreConfigError(
                f"{mask_password(url)} is not of the form "
                f"{scheme}://host:port[,host:port]/<service>[/<db>]")
        self.service = parts[0]
        self.sentinels = _host_ports([h for h in hosts.split(",") if h], url, "sentinel")
        if not self.sentinels:
            raise StoreConfigError(f"{mask_password(url)} names no sentinel (host:port)")
        options = parse_qsl(query, keep_blank_values=True)
        self.sentinel_kwargs = {k.removeprefix("sentinel_"): v for k, v in options
                                if k in SENTINEL_OPTIONS}
        db = parts[1] if len(parts) == 2 else "0"
        data_url = (f"{SENTINEL_SCHEMES[scheme]}://{credentials}{at}sentinel-managed/{db}?"
                    + urlencode([(k, v) for k, v in options if k not in SENTINEL_OPTIONS]))
        kwargs = redis.connection.parse_url(data_url)
        for placed_by_sentinel in ("host", "port"):
            kwargs.pop(placed_by_sentinel, None)
        if kwargs.pop("connection_class", None) is redis.SSLConnection:
            kwargs["ssl"] = True  # the sentinel pool picks its own TLS connection class
        self.server_kwargs: dict[str, Any] = kwargs

    def master(self, **pool: Any) -> redis.Redis:
        sentinel = redis.sentinel.Sentinel(self.sentinels, sentinel_kwargs=self.sentinel_kwargs)
        pool_class = BlockingSentinelPool if "timeout" in pool else (
            redis.sentinel.SentinelConnectionPool)
        return sentinel.master_for(self.service, connection_pool_class=pool_class,
                                   **self.server_kwargs, **pool)

    def async_master(self, **pool: Any) -> redis.asyncio.Redis:
        sentinel = redis.asyncio.sentinel.Sentinel(
            self.sentinels, sentinel_kwargs=self.sentinel_kwargs)
        return sentinel.master_for(self.service, connection_pool_class=AsyncBlockingSentinelPool,
                                   **self.server_kwargs, **pool)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def connect(url: str, *, max_connections: int | None = None,
            blocking_timeout: float | None = None, **kwargs: Any) -> redis.Redis:
    """A client for the store `url` names (see the module for its forms).

    `max_connections` with `blocking_timeout`: a pool per server that makes a thread wait up
    to that many seconds for a free connection instead of failing. The cluster client is
    returned typed as `redis.Redis`: it answers every command this project sends the same
    way (each key, script and transaction of ours names one slot).
    """
    pool: dict[str, Any] = {}
    if max_connections is not None:
        pool["max_connections"] = max_connections
        if blocking_timeout is not None:
            pool["timeout"] = blocking_timeout
    if is_sentinel_url(url):
        return SentinelTarget(url).master(**pool, **kwargs)
    if not is_cluster_url(url):
        if blocking_timeout is not None:
            return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
                url, **pool, **kwargs))
        return redis.Redis.from_url(url, **pool, **kwargs)
    first, seeds = cluster_seeds(url)
    if blocking_timeout is not None:
        pool["connection_pool_class"] = redis.BlockingConnectionPool
    try:
        client = ClusterClient(url=first, startup_nodes=[ClusterNode(*s) for s in seeds],
                              **pool, **kwargs)
    except (redis.RedisError, RedisClusterException) as exc:
        raise _not_a_cluster(url, exc) from exc
    return cast(redis.Redis, client)


def connect_async(url: str, *, max_connections: int, blocking_timeout: float
                  ) -> redis.asyncio.Redis:
    """`connect` for asyncio (the HTTP server's stream readers). redis-py's asyncio cluster
    client has no blocking pool: past `max_connections` per node it raises at once.
    Typed as `redis.asyncio.Redis` for the reason `connect` gives."""
    if is_sentinel_url(url):
        return SentinelTarget(url).async_master(max_connections=max_connections,
                                                timeout=blocking_timeout)
    if not is_cluster_url(url):
        return redis.asyncio.Redis(connection_pool=redis.asyncio.BlockingConnectionPool
                                   .from_url(url, max_connections=max_connections,
                                             timeout=blocking_timeout))
    first, seeds = cluster_seeds(url)
    client = redis.asyncio.RedisCluster.from_url(
        first, startup_nodes=[AsyncClusterNode(*s) for s in seeds],
        max_connections=max_connections)
    return cast(redis.asyncio.Redis, client)


def with_own_pool(client: redis.Redis, max_connections: int) -> redis.Redis:
    """A client to the same store as `client` on connections of its own (at most
    `max_connections` per server)."""
    if is_cluster(client):
        cluster = cast(RedisCluster, client)
        primaries = cluster.get_primaries()
        # The first node's connection settings (credentials, TLS, timeouts), less what a
        # cluster client sets itself or refuses (`db`).
        node_kwargs = cleanup_kwargs(
            **primaries[0].redis_connection.connection_pool.connection_kwargs)
        for own in ("db", "redis_connect_func", "connection_pool_class"):
            node_kwargs.pop(own, None)
        return cast(redis.Redis, ClusterClient(
            startup_nodes=[ClusterNode(n.host, n.port) for n in primaries],
            max_connections=max_connections, **node_kwargs))
    pool = client.connection_pool
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        settings = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
        if issubclass(pool.connection_class, redis.sentinel.SentinelManagedSSLConnection):
            settings["ssl"] = True
        return pool.sentinel_manager.master_for(
            pool.service_name, max_connections=max_connections, **settings)
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, max_connections=max_connections,
        **pool.connection_kwargs))


def _not_a_cluster(url: str, exc: Exception) -> Exception:
    """The cluster client's start-up error, made plain when the server is no cluster."""
    if "Cluster mode is not enabled" not in str(exc):
        return exc
    return StoreConfigError(
        f"{mask_password(url)} names a Redis Cluster, but the server it reaches is not one "
        f"(cluster_enabled:0); for a single Redis server write "
        f"{mask_password(url).replace('+cluster://', '://', 1)}")


def cluster_seeds(url: str) -> tuple[str, list[tuple[str, int]]]:
    """The first seed as a redis-py URL (credentials, db and options kept), and the
    others' (host, port)."""
    scheme, _, rest = url.partition("://")
    netloc, sep, tail = rest.partition("/")
    if not sep:
        netloc, qsep, query = rest.partition("?")
        tail = f"?{query}" if qsep else ""
    else:
        tail = "/" + tail
    credentials, at, hosts = netloc.rpartition("@")
    seeds = [h for h in hosts.split(",") if h]
    if not seeds:
        raise StoreConfigError(f"{mask_password(url)} names no cluster node (host:port)")
    nodes = _host_ports(seeds[1:], url, "cluster seed")
    return f"{CLUSTER_SCHEMES[scheme]}://{credentials}{at}{seeds[0]}{tail}", nodes


def _host_ports(hosts: list[str], url: str, what: str) -> list[tuple[str, int]]:
    """Each `host:port` of `url` as a pair; StoreConfigError naming `what` for one that is
    not."""
    pairs = []
    for host in hosts:
        parsed = urlsplit(f"//{host}")
        if parsed.hostname is None or parsed.port is None:
            raise StoreConfigError(f"{what} {host!r} in {mask_password(url)} is not host:port")
        pairs.append((parsed.hostname, parsed.port))
    return pairs


def mask_password(url: str) -> str:
    """`redis://:secret@host` -> `redis://:***@host`, and a `...password=secret` option ->
    `...password=***`, for anything that may be printed."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, qsep, query = rest.partition("?")
    if qsep:
        query = "&".join(
            f"{k}=***" if k.endswith("password") else f"{k}{eq}{v}"
            for k, eq, v in (part.partition("=") for part in query.split("&")))
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        rest = f"{credentials.split(':', 1)[0]}:***@{host}"
    return f"{scheme}://{rest}{qsep}{query}"


def check_store(client: redis.Redis, url: str) -> None:
    """Refuse a store the URL's form does not match, or one that may evict keys.

    Called where a worker, scheduler, client or server starts, so the error comes before any
    run is touched, not as a corrupted run later.
    """
    if is_cluster(client):
        cluster = cast(RedisCluster, client)
        memory = [cast(dict[str, Any], cluster.info("memory", target_nodes=node))
                  for node in cluster.get_primaries()]
    else:
        info = cast(dict[str, Any], client.info("cluster"))
        if int(info.get("cluster_enabled", 0)):
            raise StoreConfigError(
                f"{mask_password(url)} reaches a Redis Cluster node: as a single server it "
                f"would get MOVED for every key another node serves. Write the store URL as "
                f"{_as_cluster(url)}")
        memory = [cast(dict[str, Any], client.info("memory"))]
    for reply in memory:
        policy = str(reply.get("maxmemory_policy", SAFE_POLICY))
        if policy != SAFE_POLICY:
            raise StoreConfigError(
                f"the Redis at {mask_password(url)} has maxmemory-policy {policy}: it may evict "
                f"leases, task memos or checkpoints of running work. Set maxmemory-policy "
                f"{SAFE_POLICY} (CONFIG SET maxmemory-policy {SAFE_POLICY}, or in redis.conf)")


def _as_cluster(url: str) -> str:
    scheme, _, rest = mask_password(url).partition("://")
    return f"{scheme}+cluster://{rest}"
