"""`celerygraph watch RUN`: live progress of a run, from its replayable event stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from scheduler.client import Event, RunHandle
from scheduler.records import SETTLED


@dataclass
class Progress:
    """What the events so far say about a run."""

    status: str = "queued"
    step: int | None = None
    nodes: dict[str, str] = field(default_factory=dict)
    interrupts: list[Any] = field(default_factory=list)
    redispatched: int = 0
    error: dict[str, Any] | None = None

    def apply(self, event: Event) -> None:
        data = event.data
        if event.type == "started":
            self.status = "running"
        elif event.type == "dispatched":
            self.step = data.get("step")
            self.nodes = {name: "running" for name in data.get("tasks", [])}
        elif event.type == "task_finished":
            self.nodes[data.get("node", "?")] = data.get("outcome", "finished")
        elif event.type == "task_redispatched":
            self.redispatched += 1
            self.nodes[data.get("node", "?")] = "re-dispatched"
        elif event.type in SETTLED:
            self.status = event.type
            self.interrupts = list(data.get("interrupts") or [])
            self.error = data.get("error")

    def table(self, handle: RunHandle) -> Table:
        table = Table(title=f"run {handle.id} on thread {handle.thread_id}")
        table.add_column("node")
        table.add_column("state")
        for name, state in sorted(self.nodes.items()):
            table.add_row(name, state)
        caption = f"status: {self.status}   superstep: {self.step}"
        if self.redispatched:
            caption += f"   re-dispatched: {self.redispatched}"
        if self.interrupts:
            waiting = ", ".join(repr(getattr(i, "value", i)) for i in self.interrupts)
            caption += f"\nwaiting on interrupts: {waiting}"
        if self.error:
            caption += f"\nerror: {self.error.get('type')}: {self.error.get('message')}"
        table.caption = caption
        return table


def watch(handle: RunHandle, console: Console | None = None,
          timeout: float | None = None) -> Progress:
    """Follow the run until it settles, redrawing a table of its current superstep."""
    console = console or Console()
    progress = Progress()
    with Live(progress.table(handle), console=console, auto_refresh=False) as live:
        for event in handle.events(follow=True, timeout=timeout):
            progress.apply(event)
            live.update(progress.table(handle), refresh=True)
    return progress
