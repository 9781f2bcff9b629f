"""`get_graph().draw_mermaid()`: the compiled graph as a Mermaid flowchart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from graphdef.constants import END, START

if TYPE_CHECKING:
    from graphdef.pregel import Pregel


@dataclass
class GraphView:
    """Nodes and edges as drawn: solid for fixed edges, dotted for conditional ones."""

    nodes: list[str]
    edges: list[tuple[str, str, bool]] = field(default_factory=list)

    @classmethod
    def from_pregel(cls, graph: Pregel) -> GraphView:
        builder = getattr(graph, "builder", None)
        if builder is None:
            return cls([START, graph.name, END], [(START, graph.name, False),
                                                   (graph.name, END, False)])
        names = list(builder.nodes)
        edges: list[tuple[str, str, bool]] = sorted((s, e, False) for s, e in builder.edges)
        for starts, end in builder.waiting_edges:
            edges.extend((s, end, False) for s in starts)
        for source, branches in builder.branches.items():
            for branch in branches:
                targets = list(dict.fromkeys(branch.path_map.values())) if branch.path_map else [
                    *names, END
                ]
                edges.extend((source, t, True) for t in targets)
        sources = {s for s, _, _ in edges}
        edges.extend((n, END, False) for n in names if n not in sources)
        used = {n for s, e, _ in edges for n in (s, e)}
        nodes = [START, *names] + ([END] if END in used else [])
        return cls(nodes, edges)

    def draw_mermaid(self) -> str:
        lines = ["graph TD;"]
        for node in self.nodes:
            if node == START:
                lines.append(f"\t{node}([<p>{node}</p>]):::first")
            elif node == END:
                lines.append(f"\t{node}([<p>{node}</p>]):::last")
            else:
                lines.append(f"\t{node}({node})")
        for source, target, conditional in self.edges:
            arrow = "-.->" if conditional else "-->"
            lines.append(f"\t{source} {arrow} {target};")
        lines += [
            "\tclassDef default fill:#f2f0ff,line-height:1.2",
            "\tclassDef first fill-opacity:0",
            "\tclassDef last fill:#bfb6fc",
        ]
        return "\n".join(lines) + "\n"
