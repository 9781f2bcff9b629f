"""Security settings: Redis with a password, JSON-only messages, no secrets in logs or events.

The password cluster is a private redis-server started with ``--requirepass`` (never 6379);
workers and the scheduler get the password only through CELERYGRAPH_BROKER_URL and
CELERYGRAPH_STORE_URL, as an operator would configure them. Flower's authentication in
``deploy/`` is checked by ``tests/test_deploy.py`` and ``tests/test_flower.py``; this module
adds only the check they lack (no switch that opens Flower's API).

TLS (``rediss://``) is documented, not exercised against a server: the tests below only
check that the store and the Celery app accept such a URL without connecting.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis

from graphdef.checkpoint.redis import RedisSaver
from scheduler.celery_app import make_app
from scheduler.client import Client
from scheduler.localcluster import ROOT
from scheduler.settings import Settings
from tests.cluster import Cluster, RedisServer
from worker.celery_app import create_app

# Characters that must survive URL quoting on the way to Redis, kombu and redis-py.
PASSWORD = f"pw/{uuid.uuid4().hex}@:%x"
USER_SECRET = "api_key=user-" + uuid.uuid4().hex
CONFIG_SECRET = "cfg-" + uuid.uuid4().hex


def secret_forms(password: str) -> list[str]:
    return [password, quote(password, safe=""), quote(password)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), password=PASSWORD)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    assert quote(PASSWORD, safe="") in server.url
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), server.url)
    try:
        cluster.start("worker1", concurrency=2)
        cluster.start_scheduler()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def finished(cluster: Cluster) -> dict[str, Any]:
    """A run through the password cluster whose input and config carry secrets of the user."""
    client = cluster.client()
    handle = client.submit(
        "tests.dist_graphs:chain",
        {"log": [USER_SECRET]},
        thread_id=f"secure-{uuid.uuid4().hex[:8]}",
        config={"configurable": {"api_key": CONFIG_SECRET}},
    )
    output = handle.result(timeout=60)
    failing = client.submit("tests.dist_graphs:failing", {"log": [USER_SECRET]},
                            thread_id=f"secure-fail-{uuid.uuid4().hex[:8]}")  # fmt: skip
    assert failing.wait(timeout=60) == "failed"
    return {"client": client, "handle": handle, "output": output, "failing": failing}


# ------------------------------------------------------------------------- password


def test_a_graph_runs_to_completion_on_redis_with_a_password(finished: dict[str, Any]) -> None:
    assert finished["output"] == {"log": [USER_SECRET, "a", "b", "slow", "d"]}
    assert finished["handle"].status() == "done"


@pytest.mark.parametrize("auth", ["", ":wrong@"], ids=["no password", "wrong password"])
def test_a_producer_without_the_password_gets_an_authentication_error(
    server: RedisServer, auth: str
) -> None:
    url = f"redis://{auth}127.0.0.1:{server.port}/0"
    client = Client(Settings(broker_url=url, store_url=url))
    with pytest.raises(redis.AuthenticationError):
        client.submit("tests.dist_graphs:single", {"log": []}, thread_id="intruder")
    with server.client() as raw:
        assert not raw.keys("*intruder*"), "a refused producer stored something"


def test_the_password_is_in_no_log(cluster: Cluster, finished: dict[str, Any]) -> None:
    for name in ("worker1", "scheduler"):
        log = cluster.log(name)
        assert "redis://:**@" in log, f"{name}: the broker banner should show a masked URL"
        for form in secret_forms(PASSWORD):
            assert form not in log, f"{name}'s log shows the Redis password"


def _events(handle: Any) -> list[Any]:
    return list(handle.events())


def test_the_password_is_in_no_event_and_no_stored_value(
    server: RedisServer, finished: dict[str, Any]
) -> None:
    for handle in (finished["handle"], finished["failing"]):
        events = _events(handle)
        assert events and events[-1].type in ("done", "failed")
        text = json.dumps([(e.type, e.data) for e in events], default=repr)
        for form in secret_forms(PASSWORD):
            assert form not in text, f"an event of {handle} shows the Redis password"
    with server.client() as raw:
        for key in raw.scan_iter(count=1000):
            blob = repr(_value(raw, key))
            for form in secret_forms(PASSWORD):
                assert form not in blob, f"Redis key {key!r} stores the Redis password"


def _value(raw: redis.Redis, key: bytes) -> Any:
    kind = raw.type(key)
    if kind == b"string":
        return raw.get(key)
    if kind == b"hash":
        return raw.hgetall(key)
    if kind == b"list":
        return raw.lrange(key, 0, -1)
    if kind == b"set":
        return raw.smembers(key)
    if kind == b"zset":
        return raw.zrange(key, 0, -1)
    if kind == b"stream":
        return raw.xrange(key)
    return None


def test_user_values_reach_events_only_as_the_run_output(finished: dict[str, Any]) -> None:
    """Input values are the user's own data and come back in the `done` event's output (as
    `result()` returns them); config values never appear in events; a failed run's events
    carry the error, not the input."""
    events = _events(finished["handle"])
    carrying = [e.type for e in events if USER_SECRET in json.dumps(e.data, default=repr)]
    assert carrying == ["done"]
    assert not [e for e in events if CONFIG_SECRET in json.dumps(e.data, default=repr)]
    failed = _events(finished["failing"])
    assert not [e for e in failed if USER_SECRET in json.dumps(e.data, default=repr)]


def test_settings_repr_masks_the_password() -> None:
    url = f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:1/0"
    text = repr(Settings(broker_url=url, store_url=url))
    for form in secret_forms(PASSWORD):
        assert form not in text


# ----------------------------------------------------------------------- serializers


@pytest.mark.parametrize("celery_app", [create_app(Settings("redis://x:1/0", "redis://x:1/0")),
                                        make_app(Settings("redis://x:1/0", "redis://x:1/0"))],
                         ids=["worker.app", "make_app"])  # fmt: skip
def test_the_app_accepts_json_only(celery_app: Any) -> None:
    conf = celery_app.conf
    assert list(conf.accept_content) == ["json"]
    assert conf.result_accept_content in (None, ["json"])  # None: falls back to accept_content
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"
    assert conf.event_serializer == "json"


# ------------------------------------------------------------------------------- TLS

TLS_URL = f"rediss://:{quote(PASSWORD, safe='')}@redis.example.invalid:6380/0"


def test_a_rediss_url_is_accepted_by_the_store_without_connecting() -> None:
    saver = RedisSaver.from_url(TLS_URL + "?ssl_cert_reqs=required")
    try:
        pool = saver.client.connection_pool
        assert pool.connection_class is redis.SSLConnection
        assert pool.connection_kwargs["ssl_cert_reqs"] == "required"
        assert pool.connection_kwargs["password"] == PASSWORD
    finally:
        saver.close()
    with RedisSaver.from_url(TLS_URL) as plain:  # redis-py verifies certificates by default
        assert plain.client.connection_pool.connection_class is redis.SSLConnection


def test_a_rediss_url_is_accepted_by_the_celery_app_without_connecting() -> None:
    url = TLS_URL + "?ssl_cert_reqs=required"
    celery_app = make_app(Settings(broker_url=url, store_url=url))
    conn = celery_app.connection_for_write()
    assert conn.transport_cls == "rediss"
    assert conn.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert PASSWORD not in conn.as_uri()


def test_a_bare_rediss_broker_url_verifies_certificates() -> None:
    celery_app = make_app(Settings(broker_url=TLS_URL, store_url=TLS_URL))
    ssl_options = celery_app.connection_for_write().ssl
    assert ssl_options and ssl_options.get("ssl_cert_reqs") == ssl.CERT_REQUIRED


# ---------------------------------------------------------------------------- Flower


def test_no_deploy_file_opens_flowers_api_without_auth() -> None:
    """test_deploy checks every Flower command has --basic-auth and the k8s env; here: no
    deploy file anywhere (compose env files, Dockerfile, Procfile, README recipes) turns on
    Flower's unauthenticated API or names an auth-less Flower."""
    deploy = ROOT / "deploy"
    for path in sorted(p for p in deploy.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        body = "\n".join(lines)
        assert "unauthenticated_api" not in body.lower(), path
        assert "FLOWER_UNAUTHENTICATED_API" not in body, path
        for line in lines:
            if "celery" in line and " flower" in line and "-A" in line:
                assert "--basic-auth" in line or _continues(lines, line), (path, line)


def _continues(lines: list[str], line: str) -> bool:
    """A command split over lines (YAML lists, shell continuations): auth on the next line."""
    index = lines.index(line)
    following = "\n".join(lines[index : index + 3])
    return "--basic-auth" in following
