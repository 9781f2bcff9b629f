"""The long fuzz: `make fuzz` (FUZZ_SECONDS, 300 by default), outside the default test run.

    python -m tests.fuzz_long [--seconds 300] [--engine auto|atheris|hypothesis] [--only NAME...]

Targets, sharing the time budget:

- ``serde-bytes``: ``graphdef.serde.loads`` on arbitrary bytes. With atheris installed
  (``pip install atheris``) this is coverage-guided (libFuzzer, in a child process, seeded
  with valid encodings, crash files under ``var/fuzz/``); otherwise hypothesis with mangled
  valid encodings and raw bytes.
- ``serde-tree``: valid encodings with a node or a tag's key replaced (hypothesis).
- ``sqlite``: one value of a SqliteSaver file spoiled, then every read path (hypothesis).
- ``redis``: one record of a RedisSaver history spoiled on a private redis-server (hypothesis).

The same rules as ``tests/test_fuzz.py``: only ``SerdeError`` / ``CorruptStorageError``
(Redis: a ``WRONGTYPE`` reply) may escape, nothing is imported or called because data named
it, and no call runs into the hang guard. Findings are collected, not fatal: each distinct
one (exception type and the innermost project frame) is printed once with a reproducer.
Exit status 1 when anything was found.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "fuzz"
TARGETS = ("serde-bytes", "serde-tree", "sqlite", "redis")
SHARE = {"serde-bytes": 0.35, "serde-tree": 0.2, "sqlite": 0.2, "redis": 0.25}




@dataclass
class Findings:
    examples: int = 0
    seen: dict[str, tuple[int, str]] = field(default_factory=dict)  # signature -> (count, repro)

    def add(self, exc: BaseException, repro: str) -> None:
        signature = _signature(exc)
        count, first = self.seen.get(signature, (0, repro))
        if count == 0:
            print(f"  NEW {signature}\n      {repro[:400]}", flush=True)
        self.seen[signature] = (count + 1, first)


def _signature(exc: BaseException) -> str:
    where = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename)
        if ROOT in path.parents and "tests" not in path.relative_to(ROOT).parts[:1]:
            where = f"{path.relative_to(ROOT)}:{frame.lineno}"
    return f"{type(exc).__name__} at {where}"


def _run_hypothesis(
    name: str, seconds: float, strategy: Any, check: Callable[[Any, Findings], None],
    chunk: int = 100,
) -> Findings:  # fmt: skip
    from hypothesis import HealthCheck, Phase, given, settings

    findings = Findings()
    deadline = time.monotonic() + seconds

    # Rounds of fresh random runs until time is up. The check never raises (findings are
    # collected), so hypothesis never replays or shrinks; a round is short, so the budget is
    # overshot by one round at most.
    @given(strategy)
    @settings(
        max_examples=chunk,
        deadline=None,
        database=None,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
    )
    def loop(example: Any) -> None:
        findings.examples += 1
        check(example, findings)

    while time.monotonic() < deadline:
        loop()
    print(f"{name}: {findings.examples} examples, {len(findings.seen)} distinct findings")
    return findings


# ------------------------------------------------------------------------------ targets


def _serde_check(tf: Any, flag: Path) -> Callable[[bytes, Findings], None]:
    from graphdef.serde import SerdeError, loads

    def check(data: bytes, findings: Findings) -> None:
        wires = tf.Tripwires()
        try:
            with wires.armed(), tf.no_hang():
                loads(data)
        except SerdeError:
            pass
        except (Exception, tf.Hung) as exc:
            findings.add(exc, f"loads({data[:300]!r})")
        if flag.exists() or tf.CANARY_MODULE in sys.modules or wires.calls:
            findings.add(RuntimeError(f"code ran: {wires.calls}"), f"loads({data[:300]!r})")
            with contextlib.suppress(FileNotFoundError):
                flag.unlink()
            sys.modules.pop(tf.CANARY_MODULE, None)

    return check


def serde_bytes_hypothesis(seconds: float, tf: Any, flag: Path) -> Findings:
    from hypothesis import strategies as st

    strategy = tf.mangled_bytes() | st.binary(max_size=400)
    return _run_hypothesis("serde-bytes", seconds, strategy, _serde_check(tf, flag), 1000)


def serde_tree(seconds: float, tf: Any, flag: Path) -> Findings:
    return _run_hypothesis("serde-tree", seconds, tf.tampered_encodings(),
                           _serde_check(tf, flag), 500)  # fmt: skip


def sqlite(seconds: float, tf: Any, flag: Path) -> Findings:
    from hypothesis import strategies as st

    from graphdef.checkpoint.sqlite import SqliteSaver

    where = Path(tempfile.mkdtemp(prefix="cg-fuzz-long-"))
    template = where / "template.db"
    with SqliteSaver(template) as saver:
        tf.build_history(saver)
    columns = tf.SQLITE_ROWS + tf.SQLITE_PAYLOADS

    def check(data: Any, findings: Findings) -> None:
        try:
            what, bad = tf.sqlite_tamper_and_load(template, data, columns, with_filter=True)
        except tf.Hung as exc:
            findings.add(exc, "sqlite load")
            return
        for exc in bad:
            findings.add(exc, what)

    try:
        return _run_hypothesis("sqlite", seconds, st.data(), check)
    finally:
        import shutil

        shutil.rmtree(where, ignore_errors=True)


def redis_target(seconds: float, tf: Any, flag: Path) -> Findings:
    from hypothesis import strategies as st

    from tests.redis_server import redis_server

    with redis_server() as server, server.client() as raw:
        targets = tf.REDIS_RECORDS + tf.REDIS_PAYLOADS

        def check(data: Any, findings: Findings) -> None:
            try:
                what, bad = tf.redis_tamper_and_load(server, raw, data, targets,
                                                     with_filter=True)  # fmt: skip
            except tf.Hung as exc:
                findings.add(exc, "redis load")
                return
            for exc in bad:
                findings.add(exc, what)

        return _run_hypothesis("redis", seconds, st.data(), check)


# ------------------------------------------------------------------------------ atheris


def _seed_corpus(corpus: Path) -> None:
    import orjson
    from hypothesis import HealthCheck, given, settings

    import tests.test_fuzz as tf
    from graphdef.serde import dumps

    corpus.mkdir(parents=True, exist_ok=True)
    if any(corpus.iterdir()):
        return
    seeds: list[bytes] = [orjson.dumps({"__cg__": t, "v": [1]}) for t in tf.TAGS]

    @given(tf.valid_values)
    @settings(max_examples=200, database=None, suppress_health_check=list(HealthCheck))
    def collect(value: Any) -> None:
        seeds.append(dumps(value))

    collect()
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i:04d}").write_bytes(seed)


def serde_bytes_atheris(seconds: float) -> Findings:
    corpus = OUT / "corpus" / "serde"
    _seed_corpus(corpus)
    (OUT / "crashes").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "tests.fuzz_long", "--atheris-child",
           f"-max_total_time={max(1, int(seconds))}", "-timeout=30", "-rss_limit_mb=4096",
           f"-artifact_prefix={OUT / 'crashes'}/", "-print_final_stats=1", str(corpus)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )}  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                          timeout=seconds + 120)  # fmt: skip
    findings = Findings()
    runs = [line for line in proc.stderr.splitlines() if "stat::number_of_executed_units" in line]
    findings.examples = int(runs[-1].split(":")[-1]) if runs else 0
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-40:])
        findings.add(RuntimeError(f"atheris exit {proc.returncode}"), tail)
    print(f"serde-bytes (atheris): {findings.examples} executions, "
          f"{len(findings.seen)} distinct findings")  # fmt: skip
    return findings


def _atheris_child(libfuzzer_args: list[str]) -> None:
    import atheris

    with atheris.instrument_imports():
        import graphdef.serde  # noqa: F401

    import tests.test_fuzz as tf
    from graphdef.serde import SerdeError, loads

    where = Path(tempfile.mkdtemp(prefix="cg-fuzz-canary-"))
    with tf.canary_module(where) as flag:

        def one_input(data: bytes) -> None:
            wires = tf.Tripwires()
            try:
                with wires.armed():
                    loads(data)
            except SerdeError:
                pass
            if flag.exists() or tf.CANARY_MODULE in sys.modules or wires.calls:
                raise RuntimeError(f"decoding ran code: {wires.calls} {flag.exists()}")

        atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
        atheris.Fuzz()


# --------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--atheris-child"]:
        _atheris_child(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz_long")
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("FUZZ_SECONDS", "300")))  # fmt: skip
    parser.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    parser.add_argument("--only", nargs="*", choices=TARGETS, default=list(TARGETS))
    args = parser.parse_args(argv)
    has_atheris = importlib.util.find_spec("atheris") is not None
    if args.engine == "atheris" and not has_atheris:
        parser.error("atheris is not installed (pip install atheris)")
    use_atheris = has_atheris and args.engine != "hypothesis"
    print(f"fuzzing for {args.seconds:.0f} s; serde-bytes engine: "
          f"{'atheris' if use_atheris else 'hypothesis'}", flush=True)  # fmt: skip

    import tests.test_fuzz as tf

    total_share = sum(SHARE[t] for t in args.only)
    results: dict[str, Findings] = {}
    where = Path(tempfile.mkdtemp(prefix="cg-fuzz-canary-"))
    with tf.canary_module(where) as flag:
        for target in args.only:
            seconds = args.seconds * SHARE[target] / total_share
            if target == "serde-bytes":
                results[target] = (serde_bytes_atheris(seconds) if use_atheris
                                   else serde_bytes_hypothesis(seconds, tf, flag))  # fmt: skip
            elif target == "serde-tree":
                results[target] = serde_tree(seconds, tf, flag)
            elif target == "sqlite":
                results[target] = sqlite(seconds, tf, flag)
            else:
                results[target] = redis_target(seconds, tf, flag)

    print("\nsummary")
    found = 0
    for target, findings in results.items():
        print(f"  {target}: {findings.examples} examples, {len(findings.seen)} findings")
        for signature, (count, repro) in sorted(findings.seen.items()):
            found += 1
            print(f"    {count:6d} x {signature}\n             e.g. {repro[:300]}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
