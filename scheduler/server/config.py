"""The server's own settings, read once where `celerygraph serve` starts.

Kept apart from `scheduler.settings.Settings` (which every worker, scheduler and manifest
shares through one ConfigMap) because API keys are secrets: a deployment passes them to the
server alone, from a Secret.

CELERYGRAPH_API_KEYS          comma-separated keys the server accepts (unset: none, and then
                              it binds only to loopback)
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        env = os.environ if env is None else env
        keys = env.get("CELERYGRAPH_API_KEYS", "")
        return cls(api_keys=tuple(k.strip() for k in keys.split(",") if k.strip()),
                   store_prefix=env.get("CELERYGRAPH_API_STORE_PREFIX", "cg"))
