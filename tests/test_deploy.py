"""The deploy files parse, and cannot drift from the code they start.

Checked against the package itself: every `CELERYGRAPH_*` name is one `scheduler/settings.py`
reads, every `celery -A <app> ...` names a module of this package exposing the Celery `app`
with the tasks that role runs, every `-Q` queue is one the settings define or one the deploy
README lists, and Flower never runs without basic auth.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlparse

import pytest
import yaml

from scheduler.localcluster import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
APP_ROLES = {"worker", "flower", "beat"}


# ---- what the code defines ---------------------------------------------------------------


class _RecordingEnviron(dict):
    """An empty environment that remembers which names were looked up."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def settings_names() -> set[str]:
    """The CELERYGRAPH_* variables `Settings.from_env` reads, found by running it."""
    from scheduler.settings import Settings

    recorder = _RecordingEnviron()
    # Only the mapping `os.environ.get` sees is swapped; the process environment is untouched.
    with mock.patch.object(os, "environ", recorder):
        Settings.from_env()
    return {name for name in recorder.read if name.startswith("CELERYGRAPH_")}


def server_settings_names() -> set[str]:
    """The CELERYGRAPH_* variables only the HTTP server reads (`ServerSettings.from_env`):
    its API keys are secrets, so they are set on the server alone, never in the ConfigMap."""
    from scheduler.server.config import ServerSettings

    recorder = _RecordingEnviron()
    with mock.patch.object(os, "environ", recorder):
        ServerSettings.from_env()
    return {name for name in recorder.read if name.startswith("CELERYGRAPH_")}


def default_queues() -> set[str]:
    from scheduler.settings import Settings

    defaults = Settings(broker_url="redis://x", store_url="redis://x")
    return {defaults.node_queue, defaults.scheduler_queue}


def readme_queues() -> set[str]:
    """Queues listed in the `## Queues` table of deploy/README.md."""
    text = (DEPLOY / "README.md").read_text()
    section = text.split("\n## Queues\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.M))


# ---- reading the deploy files ------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def k8s_objects() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in k8s_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((path.name, doc))
    return out


def k8s_containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, workload object, container) for every container of every workload."""
    out = []
    for name, obj in k8s_objects():
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            out.append((f"{name}:{obj['metadata']['name']}", obj, container))
    return out


def procfile() -> dict[str, str]:
    lines = (DEPLOY / "Procfile").read_text().splitlines()
    out = {}
    for line in lines:
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            out[name.strip()] = command.strip()
    return out


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line.strip())
        if match:
            out[match[1]] = match[2]
    return out


ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def shell_assignments(line: str) -> dict[str, str]:
    """The `NAME=value` assignments a Procfile line puts before its last command."""
    argv = shlex.split(re.split(r"&&|;", line)[-1])
    out = {}
    for token in argv:
        if not ASSIGNMENT.match(token):
            break
        name, value = token.split("=", 1)
        out[name] = value
    return out


def shell_commands(line: str) -> list[list[str]]:
    """A Procfile line as argv lists: split on `&&` and `;`, without leading `NAME=value`
    assignments and `exec`."""
    out = []
    for part in re.split(r"&&|;", line):
        argv = shlex.split(part)
        while argv and ASSIGNMENT.match(argv[0]):
            argv = argv[1:]
        if argv and argv[0] == "exec":
            argv = argv[1:]
        if argv:
            out.append(argv)
    return out


def dockerfile_cmd() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text()
    cmds = re.findall(r"^CMD\s+(\[.*\])\s*$", text, flags=re.M)
    assert len(cmds) == 1, cmds
    return json.loads(cmds[0])


def all_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command the deploy files run."""
    out: list[tuple[str, list[str]]] = [("Dockerfile:CMD", dockerfile_cmd())]
    for name, service in compose()["services"].items():
        command = service.get("command")
        if command:
            argv = shlex.split(command) if isinstance(command, str) else list(command)
            out.append((f"compose:{name}", argv))
    for where, _, container in k8s_containers():
        argv = list(container.get("command", [])) + list(container.get("args", []))
        if argv:
            out.append((f"k8s:{where}", argv))
    for name, line in procfile().items():
        out += [(f"Procfile:{name}", argv) for argv in shell_commands(line)]
    return out


def parse_celery(argv: list[str]) -> dict[str, Any] | None:
    """`celery -A app <role> ...` as {app, role, queues, options}; None if not celery."""
    if not argv or Path(argv[0]).name != "celery":
        return None
    app = role = None
    queues: list[str] = []
    options: list[str] = []
    tokens = iter(argv[1:])
    for token in tokens:
        if token in ("-A", "--app"):
            app = next(tokens)
        elif token.startswith("--app="):
            app = token.split("=", 1)[1]
        elif role is None and not token.startswith("-"):
            role = token
        elif token in ("-Q", "--queues"):
            queues += next(tokens).split(",")
        elif token.startswith("--queues="):
            queues += token.split("=", 1)[1].split(",")
        else:
            options.append(token)
    return {"app": app, "role": role, "queues": queues, "options": options}


def celery_commands() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for where, argv in all_commands():
        parsed = parse_celery(argv)
        if parsed is not None:
            out.append((where, parsed))
    return out


# ---- parsing -----------------------------------------------------------------------------


def test_compose_and_every_manifest_parse():
    services = compose()["services"]
    assert {"redis", "scheduler", "worker", "flower"} <= set(services)
    kinds = {(obj["kind"], obj["metadata"]["name"]) for _, obj in k8s_objects()
             if "metadata" in obj}
    assert {
        ("ConfigMap", "celerygraph-env"),
        ("Deployment", "celerygraph-worker"),
        ("Deployment", "celerygraph-scheduler"),
        ("Deployment", "celerygraph-flower"),
        ("ScaledObject", "celerygraph-worker"),
    } <= kinds
    assert any(kind == "StatefulSet" and name == "redis" for kind, name in kinds)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in k8s_files()} - {"kustomization.yaml"}
    assert listed == present


def test_every_workload_uses_the_image_kustomize_rewrites():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    image_names = {image["name"] for image in kustomization["images"]}
    for where, _, container in k8s_containers():
        if container["image"].startswith("redis:"):
            continue
        assert container["image"].split(":", 1)[0] in image_names, where


# ---- compose -----------------------------------------------------------------------------


def test_compose_scales_workers():
    """`--scale worker=N` needs no fixed container name and no host port on workers."""
    for name, service in compose()["services"].items():
        assert "container_name" not in service, name
        parsed = parse_celery(list(service.get("command") or []))
        if parsed and parsed["role"] == "worker":
            assert "ports" not in service, f"{name} publishes ports: --scale would collide"


def test_redis_is_durable_and_never_evicts():
    redis_compose = compose()["services"]["redis"]["command"]
    [redis_k8s] = [c for _, o, c in k8s_containers() if o["kind"] == "StatefulSet"]
    redis_procfile = shell_commands(procfile()["redis"])[-1]
    for argv in (redis_compose, redis_k8s["args"], redis_procfile):
        flags = dict(zip(argv[1::2], argv[2::2], strict=False))
        assert argv[0] == "redis-server", argv
        assert flags["--appendonly"] == "yes", argv
        assert flags["--appendfsync"] in ("everysec", "always"), argv
        assert flags["--maxmemory-policy"] == "noeviction", argv
    assert compose()["services"]["redis"]["volumes"], "Redis data must outlive the container"


# ---- Flower ------------------------------------------------------------------------------


def test_flower_never_runs_without_basic_auth():
    flowers = [(w, p) for w, p in celery_commands() if p["role"] == "flower"]
    sources = {where.split(":", 1)[0] for where, _ in flowers}
    assert sources == {"compose", "k8s", "Procfile"}, flowers
    k8s_env = {f"k8s:{where}": container.get("env", [])
               for where, _, container in k8s_containers()}
    for where, parsed in flowers:
        auth = [o.split("=", 1)[1] for o in parsed["options"] if o.startswith("--basic-auth=")]
        assert len(auth) == 1, f"{where}: Flower without --basic-auth"
        assert not any("unauthenticated" in o for o in parsed["options"]), where
        if where.startswith("k8s:"):
            # Kubernetes expands $(VAR) from the container's env; the env comes from a
            # Secret that is not optional, so the pod does not start without it.
            match = re.fullmatch(r"\$\(([A-Z_]+)\)", auth[0])
            assert match, f"{where}: credentials must come from the environment"
            [entry] = [e for e in k8s_env[where] if e["name"] == match[1]]
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref.get("optional") is not True, where
            assert not any(e["name"] == "FLOWER_UNAUTHENTICATED_API" for e in k8s_env[where])
        else:
            # Compose interpolation and sh both stop on ${VAR:?message} when VAR is unset.
            assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", auth[0]), (where, auth)
    # No credentials ship with the manifests: the Secret is created by the operator.
    for name, obj in k8s_objects():
        assert obj.get("kind") != "Secret", f"{name} ships a Secret"
    env_text = (DEPLOY / "local.env").read_text()
    assert not re.search(r"^FLOWER_BASIC_AUTH=", env_text, flags=re.M)


def test_flower_listens_only_on_localhost_in_the_procfile():
    [parsed] = [p for w, p in celery_commands() if w == "Procfile:flower"]
    assert "--address=127.0.0.1" in parsed["options"]


# ---- environment variables ---------------------------------------------------------------


def test_every_celerygraph_name_in_deploy_is_one_the_settings_read():
    known = settings_names() | server_settings_names()
    assert {"CELERYGRAPH_BROKER_URL", "CELERYGRAPH_STORE_URL", "CELERYGRAPH_GRAPHS"} <= known
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        used = set(re.findall(r"\bCELERYGRAPH_[A-Z0-9_]+", path.read_text()))
        assert used <= known, f"{path.relative_to(ROOT)}: unknown {sorted(used - known)}"


def test_every_setting_is_set_in_each_deployment_and_documented():
    known = settings_names()
    services = compose()["services"]
    for name, service in services.items():
        if parse_celery(list(service.get("command") or [])):
            assert set(service["environment"]) == known, name
    [configmap] = [o for _, o in k8s_objects() if o.get("kind") == "ConfigMap"]
    assert set(configmap["data"]) == known
    assert all(isinstance(v, str) for v in configmap["data"].values()), configmap["data"]
    for where, _, container in k8s_containers():
        if parse_celery(list(container.get("command", []))):
            refs = [e["configMapRef"]["name"] for e in container.get("envFrom", [])
                    if "configMapRef" in e]
            assert refs == [configmap["metadata"]["name"]], where
    assert {k for k in env_file(DEPLOY / "local.env") if k.startswith("CELERYGRAPH_")} == known
    readme = (DEPLOY / "README.md").read_text()
    assert {n for n in known if f"| `{n}` |" not in readme} == set()


def test_the_http_api_runs_only_with_keys_from_a_secret_or_on_loopback():
    """Compose and Kubernetes bind the API on every interface: keys required, from the
    operator (a required variable, a Secret), never in the shared env or ConfigMap. The
    Procfile's runs on loopback, where the server allows no keys."""
    api = compose()["services"]["api"]
    assert api["command"][:2] == ["celerygraph", "serve"]
    keys = api["environment"]["CELERYGRAPH_API_KEYS"]
    assert re.fullmatch(r"\$\{CELERYGRAPH_API_KEYS:\?[^}]+\}", keys), keys
    assert "CELERYGRAPH_API_KEYS" not in compose()["x-celerygraph-env"]
    assert {k for k in api["environment"] if k != "CELERYGRAPH_API_KEYS"} == settings_names()
    [configmap] = [o for _, o in k8s_objects() if o.get("kind") == "ConfigMap"]
    assert "CELERYGRAPH_API_KEYS" not in configmap["data"]
    [(_, _, container)] = [c for c in k8s_containers() if c[0].endswith(":celerygraph-api")]
    assert container["command"][:2] == ["celerygraph", "serve"]
    [entry] = [e for e in container["env"] if e["name"] == "CELERYGRAPH_API_KEYS"]
    assert entry["valueFrom"]["secretKeyRef"].get("optional") is not True
    assert container["readinessProbe"]["httpGet"]["path"] == "/ok"
    argv = shell_commands(procfile()["api"])[-1]
    assert argv[:2] == ["celerygraph", "serve"] and argv[argv.index("--host") + 1] == "127.0.0.1"


def test_every_worker_and_scheduler_serves_metrics_on_a_port_scrapers_find():
    """Compose and Kubernetes expose and annotate the metrics port (one per container or
    pod); the Procfile's processes share a host, so each has a port of its own."""
    [configmap] = [o for _, o in k8s_objects() if o.get("kind") == "ConfigMap"]
    port = configmap["data"]["CELERYGRAPH_METRICS_PORT"]
    assert compose()["x-celerygraph-env"]["CELERYGRAPH_METRICS_PORT"] == port
    for name, service in compose()["services"].items():
        parsed = parse_celery(list(service.get("command") or []))
        if parsed and parsed["role"] == "worker":
            assert port in [str(p) for p in service["expose"]], name
            assert service["labels"]["prometheus.io/scrape"] == "true", name
            assert service["labels"]["prometheus.io/port"] == port, name
    for where, obj, container in k8s_containers():
        parsed = parse_celery(list(container.get("command", [])))
        if parsed and parsed["role"] == "worker":
            annotations = obj["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true", where
            assert annotations["prometheus.io/port"] == port, where
            assert int(port) in [p["containerPort"] for p in container["ports"]], where
    ports = {name: shell_assignments(line).get("CELERYGRAPH_METRICS_PORT")
             for name, line in procfile().items()
             if (p := parse_celery(shell_commands(line)[-1])) and p["role"] == "worker"}
    assert all(ports.values()) and len(set(ports.values())) == len(ports), ports


def test_queue_settings_match_the_queues_commands_consume():
    consumed = {(p["app"], q) for _, p in celery_commands() if p["role"] == "worker"
                for q in p["queues"]}
    [configmap] = [o for _, o in k8s_objects() if o.get("kind") == "ConfigMap"]
    envs = [compose()["x-celerygraph-env"], configmap["data"], env_file(DEPLOY / "local.env")]
    for env in envs:
        assert ("worker", env["CELERYGRAPH_NODE_QUEUE"]) in consumed, env
        assert ("scheduler", env["CELERYGRAPH_SCHEDULER_QUEUE"]) in consumed, env


# ---- commands against the code -----------------------------------------------------------


def test_every_celery_command_names_an_app_of_this_package():
    from celery import Celery

    from scheduler.protocol import ADVANCE_TASK, NODE_TASK, START_TASK

    commands = celery_commands()
    assert len(commands) >= 10, commands
    for where, parsed in commands:
        assert parsed["app"], f"{where}: no -A"
        assert parsed["role"] in APP_ROLES, f"{where}: celery {parsed['role']}"
        module = importlib.import_module(parsed["app"])
        assert Path(module.__file__).resolve().is_relative_to(ROOT), where
        assert isinstance(getattr(module, "app", None), Celery), f"{where}: no `app`"
        tasks = set(module.app.tasks)
        if parsed["role"] == "worker":
            assert parsed["queues"], f"{where}: a worker must name its queues with -Q"
            if parsed["app"] == "scheduler":
                assert {START_TASK, ADVANCE_TASK} <= tasks, where
            else:
                assert parsed["app"] == "worker", where
                assert NODE_TASK in tasks, where


def test_every_deployment_runs_beat_with_the_schedule_in_redis():
    """Crons fire only if a beat runs: `celery -A scheduler beat`, whose app keeps the
    schedule in Redis (RedBeat) and whose scheduler role runs the fired task."""
    from scheduler.protocol import CRON_TASK, WEBHOOK_TASK

    beats = [(where, p) for where, p in celery_commands() if p["role"] == "beat"]
    assert {where.split(":")[0] for where, _ in beats} == {"compose", "k8s", "Procfile"}, beats
    for where, parsed in beats:
        assert parsed["app"] == "scheduler", where
        assert not any(o in ("-S", "--scheduler") for o in parsed["options"]), where
    app = importlib.import_module("scheduler").app
    assert app.conf.beat_scheduler == "redbeat.RedBeatScheduler"
    assert {CRON_TASK, WEBHOOK_TASK} <= set(app.tasks)


def test_every_queue_is_a_settings_queue_or_a_documented_routing_queue():
    allowed = default_queues() | readme_queues()
    assert default_queues() <= readme_queues(), "document the default queues too"
    for where, parsed in celery_commands():
        unknown = set(parsed["queues"]) - allowed
        assert not unknown, f"{where}: queue(s) {sorted(unknown)} not in deploy/README.md"
        if parsed["role"] == "beat":
            assert not parsed["queues"], where
        elif parsed["app"] == "scheduler":
            assert parsed["queues"] == ["scheduler"], where
            assert "-P" in parsed["options"], f"{where}: the scheduler runs a thread pool"
        elif parsed["role"] == "worker":
            assert "scheduler" not in parsed["queues"], where


def test_dockerfile_builds_a_non_root_image_of_the_package():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, flags=re.M)
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert re.search(r'^RUN pip install "\.\[flower,server\]"(\s|$)', text, flags=re.M)
    assert "[test" not in text and "[bench" not in text
    for src in re.findall(r"^COPY\s+(?!--)(.+?)\s+\S+\s*$", text, flags=re.M):
        for path in src.split():
            assert (ROOT / path).exists(), f"COPY {path}: not in the repository"
    assert parse_celery(dockerfile_cmd()) == {
        "app": "worker", "role": "worker", "queues": ["nodes"],
        "options": ["--loglevel", "INFO"],
    }


def test_keda_scales_each_worker_pool_on_the_list_of_its_queue():
    objects = [o for _, o in k8s_objects()]
    deployments = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Deployment"}
    scaled = [o for o in objects if o.get("kind") == "ScaledObject"]
    assert scaled
    [configmap] = [o for o in objects if o.get("kind") == "ConfigMap"]
    broker = urlparse(configmap["data"]["CELERYGRAPH_BROKER_URL"])
    for obj in scaled:
        target = deployments[obj["spec"]["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"], "KEDA owns the replica count"
        [container] = target["spec"]["template"]["spec"]["containers"]
        queues = parse_celery(container["command"])["queues"]
        for trigger in obj["spec"]["triggers"]:
            meta = trigger["metadata"]
            assert trigger["type"] == "redis"
            # KEDA's CRD types trigger metadata as a map of strings.
            assert all(isinstance(v, str) for v in meta.values()), meta
            assert meta["listName"] in queues, (meta, queues)
            assert int(meta["listLength"]) > 0
            assert meta["address"] == f"{broker.hostname}:{broker.port}"
            assert meta.get("databaseIndex", "0") == broker.path.strip("/")


def test_procfile_runs_the_same_roles_on_its_own_redis():
    roles = {name: shell_commands(line)[-1] for name, line in procfile().items()}
    workers = [n for n, argv in roles.items()
               if (p := parse_celery(argv)) and p["app"] == "worker" and p["role"] == "worker"]
    assert len(workers) == 2, roles
    assert any((p := parse_celery(a)) and p["app"] == "scheduler" for a in roles.values())
    redis_argv = roles["redis"]
    port = int(redis_argv[redis_argv.index("--port") + 1])
    assert port != 6379, "never the system Redis"
    env = env_file(DEPLOY / "local.env")
    for key in ("CELERYGRAPH_BROKER_URL", "CELERYGRAPH_STORE_URL"):
        assert urlparse(env[key]).port == port, (key, env[key], port)


@pytest.mark.parametrize("module", sorted({"worker", "scheduler"}))
def test_app_modules_resolve_the_way_the_celery_cli_finds_them(module):
    """`celery -A <module>` looks for an attribute `app` (or `celery`) on the module."""
    from celery.app.utils import find_app

    app = find_app(module)
    assert app.main == "celerygraph"
