"""The message contract: every message goes through `scheduler.protocol.Sender`, and the
README's wire format is the protocol module's."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from scheduler import protocol
from scheduler.protocol import Advance, NodeRef, RunNodes, Sender, StartRun
from tests.recording_app import RecordingApp

ROOT = Path(__file__).resolve().parent.parent


def test_only_the_protocol_module_sends_tasks() -> None:
    callers = []
    for package in ("scheduler", "worker"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr == "send_task":
                    callers.append(str(path.relative_to(ROOT)))
    assert set(callers) == {"scheduler/protocol.py"}


def _wire_table(text: str) -> dict[str, str]:
    return dict(re.findall(r"^- `(celerygraph\.[a-z_]+)`, on [^:]+: (.*?)(?=^- |\n\n)",
                           text, flags=re.M | re.S))


def test_the_readme_documents_the_protocols_wire_format() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = _wire_table(protocol.__doc__ or "")
    assert set(documented) == {protocol.START_TASK, protocol.START_AND_RUN_TASK,
                               protocol.ADVANCE_TASK,
                               protocol.NODE_TASK, protocol.NODES_TASK,
                               protocol.CRON_TASK, protocol.WEBHOOK_TASK}
    for name, arguments in documented.items():
        row = re.search(rf"^\| `{re.escape(name)}` \|[^\n]*$", readme, flags=re.M)
        assert row, f"README has no wire-format row for {name}"
        for argument_list in re.findall(r"`(\[[^`]+\])`", arguments):
            assert argument_list in row.group(0), (name, argument_list)


@pytest.mark.parametrize("message, expected", [
    (StartRun("t", "r"), (protocol.START_TASK, [], {"thread_id": "t", "run_id": "r"})),
    (Advance("t", "r", "c"), (protocol.ADVANCE_TASK, ["t", "r", "c"], {})),
    (RunNodes("t", "run-1234567", "c", (NodeRef("a", ["__pregel_pull", "n"]),)),
     (protocol.NODE_TASK, ["t", "run-1234567", "c", "a", ["__pregel_pull", "n"]], {})),
    (RunNodes("t", "r", "c", (NodeRef("a"), NodeRef("b", ["__pregel_push", 1]))),
     (protocol.NODES_TASK, ["t", "r", "c", [["a", None], ["b", ["__pregel_push", 1]]]], {})),
])
def test_messages_keep_their_argument_order(message: object, expected: tuple) -> None:
    app = CapturingApp()
    send = Sender(app, "scheduler")
    if isinstance(message, StartRun):
        send.start(message)
    elif isinstance(message, Advance):
        send.advance(message)
    else:
        assert isinstance(message, RunNodes)
        send.nodes(message, queue="nodes", shadow="g.n")
    [(name, args, kwargs, options)] = app.calls
    assert (name, args, kwargs) == expected
    if name in (protocol.NODE_TASK, protocol.NODES_TASK):
        assert options["headers"] == {protocol.RUN_HEADER: args[1],
                                      protocol.THREAD_HEADER: args[0]}
        assert options["shadow"] == "g.n"


def test_a_start_on_a_node_queue_keeps_its_argument_order() -> None:
    app = CapturingApp()
    Sender(app, "scheduler").start_and_run("t", "r", "nodes")
    [(name, args, kwargs, options)] = app.calls
    assert (name, args, kwargs, options["queue"]) == (
        protocol.START_AND_RUN_TASK, ["t", "r"], {}, "nodes")


def test_a_redispatch_carries_the_same_headers_and_a_task_id_of_its_own() -> None:
    app = CapturingApp()
    message = RunNodes("t", "run-1234567", "c", (NodeRef("a"),))
    Sender(app, "scheduler").nodes(message, queue="nodes", shadow="g.a")
    Sender(app, "scheduler").nodes(message, queue="nodes", shadow="g.a", attempt=2)
    first, again = (options for *_, options in app.calls)
    assert first["headers"] == again["headers"]
    assert first["task_id"] != again["task_id"]


class CapturingApp(RecordingApp):
    """Keeps every argument of each send."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list, dict, dict]] = []

    def send_task(self, name, args=None, kwargs=None, **options):  # noqa: ANN001, ANN201
        self.calls.append((name, list(args or ()), dict(kwargs or {}), options))
