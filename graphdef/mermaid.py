"""`get_graph().draw_mermaid()`: the compiled graph as a Mermaid flowchart."""

from __future__ import annotations

import inspect
import string
import typing
from dataclasses import dataclass, field
from typing import Any, Protocol

from graphdef.constants import END, START


class DrawnGraph(Protocol):
    """A compiled graph as drawn (a `graphdef.pregel.Pregel`), declared here so that this
    module does not import the one that calls it. A `builder` attribute, when it has one
    (a compiled `StateGraph`), gives the nodes and edges."""

    name: str

_SAFE_ID_CHARS = frozenset(string.ascii_letters + string.digits + "_-")


def _safe_id(name: str) -> str:
    """A Mermaid node id for any node name (langchain-core's escaping: `\\<hex>`)."""
    return "".join(c if c in _SAFE_ID_CHARS else "\\" + format(ord(c), "x") for c in name)


def _label(text: str) -> str:
    """Node or edge text, quoted when it holds characters Mermaid would parse."""
    if all(c in _SAFE_ID_CHARS or c == " " for c in text):
        return text
    return '"' + text.replace('"', "#quot;") + '"'


def _literal_targets(path: Any) -> list[str] | None:
    """Destinations a path function declares with `-> Literal[...]`, as LangGraph reads them."""
    if inspect.isfunction(path) or inspect.ismethod(path):
        func = path
    elif inspect.ismethod(getattr(path, "__call__", None)):  # noqa: B004 - a callable object
        func = path.__call__
    else:
        return None
    try:
        rtn = typing.get_type_hints(func).get("return")
    except Exception:
        return None
    if typing.get_origin(rtn) is typing.Literal:
        return [str(v) for v in typing.get_args(rtn)]
    return None


@dataclass
class GraphView:
    """Nodes and edges as drawn: solid for fixed edges, dotted for conditional ones.

    An edge is (source, target, conditional, label); the label is the path-map key that
    leads to the target when it differs from the target's name.
    """

    nodes: list[str]
    edges: list[tuple[str, str, bool, str | None]] = field(default_factory=list)

    @classmethod
    def from_pregel(cls, graph: DrawnGraph) -> GraphView:
        builder = getattr(graph, "builder", None)
        if builder is None:
            return cls([START, graph.name, END], [(START, graph.name, False, None),
                                                   (graph.name, END, False, None)])
        names = list(builder.nodes)
        edges: list[tuple[str, str, bool, str | None]] = sorted(
            (s, e, False, None) for s, e in builder.edges
        )
        for starts, end in builder.waiting_edges:
            edges.extend((s, end, False, None) for s in starts)
        for source, branches in builder.branches.items():
            for branch in branches:
                if branch.path_map is not None:
                    targets = [(t, str(k) if str(k) != t else None)
                               for k, t in branch.path_map.items()]
                else:
                    declared = _literal_targets(branch.path)
                    # Undeclared destinations: the branch may go to any node, or end.
                    targets = [(t, None) for t in (declared or [*names, END])]
                edges.extend((source, t, True, label) for t, label in targets)
        for name, spec in builder.nodes.items():
            items = spec.ends.items() if isinstance(spec.ends, dict) else (
                (e, None) for e in spec.ends
            )
            edges.extend((name, t, True, label) for t, label in items)
        # One edge per (source, target): the first one drawn wins, as in LangGraph.
        first: dict[tuple[str, str], tuple[str, str, bool, str | None]] = {}
        for edge in edges:
            first.setdefault(edge[:2], edge)
        edges = list(first.values())
        sources = {s for s, _, _, _ in edges}
        edges.extend((n, END, False, None) for n in names if n not in sources)
        used = {n for s, e, _, _ in edges for n in (s, e)}
        nodes = [START, *names] + ([END] if END in used else [])
        return cls(nodes, edges)

    def draw_mermaid(self) -> str:
        lines = ["graph TD;"]
        for node in self.nodes:
            if node == START:
                lines.append(f"\t{_safe_id(node)}([<p>{node}</p>]):::first")
            elif node == END:
                lines.append(f"\t{_safe_id(node)}([<p>{node}</p>]):::last")
            else:
                lines.append(f"\t{_safe_id(node)}({_label(node)})")
        for source, target, conditional, label in self.edges:
            if label is not None:
                text = label.replace('"', "#quot;")
                arrow = (
                    f"-. &nbsp;{text}&nbsp; .->" if conditional else f"-- &nbsp;{text}&nbsp; -->"
                )
            else:
                arrow = "-.->" if conditional else "-->"
            lines.append(f"\t{_safe_id(source)} {arrow} {_safe_id(target)};")
        lines += [
            "\tclassDef default fill:#f2f0ff,line-height:1.2",
            "\tclassDef first fill-opacity:0",
            "\tclassDef last fill:#bfb6fc",
        ]
        return "\n".join(lines) + "\n"
