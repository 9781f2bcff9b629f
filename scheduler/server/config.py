"""The server's own settings, read once where `celerygraph serve` starts.

Kept apart from `scheduler.settings.Settings` (which every worker, scheduler and manifest
shares through one ConfigMap) because API keys are secrets: a deployment passes them to the
server alone, from a Secret.

CELERYGRAPH_API_KEYS          comma-separated keys the server accepts (unset: none, and then
                              it binds only to loopback); `key:graph1|graph2` limits a key to
                              those graphs (each a graph reference such as
                              `examples.graphs:demo`, or its attribute name `demo`)
CELERYGRAPH_API_STORE_PREFIX  key prefix of the Redis store the /store endpoints serve (cg,
                              graphdef's RedisStore default): the prefix the graphs' store uses
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerSettings:
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    store_prefix: str = "cg"
    # The graphs each limited key may use; a key not here may use every graph.
    key_graphs: Mapping[str, frozenset[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        env = os.environ if env is None else env
        keys, limits = parse_keys(env.get("CELERYGRAPH_API_KEYS", ""))
        return cls(api_keys=keys, key_graphs=limits,
                   store_prefix=env.get("CELERYGRAPH_API_STORE_PREFIX", "cg"))


def parse_keys(raw: str) -> tuple[tuple[str, ...], dict[str, frozenset[str]]]:
    """`key,key:graph1|graph2,...` as the keys and the limits of the limited ones. The key
    is what comes before the first `:` (graph references have a `:` of their own); a
    limited key with no graph after it is an error rather than a key that sees nothing."""
    keys: list[str] = []
    limits: dict[str, frozenset[str]] = {}
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        key, colon, graphs = entry.partition(":")
        key = key.strip()
        if not key:
            raise ValueError("CELERYGRAPH_API_KEYS has an entry with no key before ':'")
        keys.append(key)
        if colon:
            names = frozenset(g.strip() for g in graphs.split("|") if g.strip())
            if not names:
                raise ValueError(f"CELERYGRAPH_API_KEYS: key {key[:4]}... is limited to no "
                                 "graph (write key:graph1|graph2)")
            limits[key] = names
    return tuple(keys), limits
