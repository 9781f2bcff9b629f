"""LangGraph graphs a node calls inside its function, swapped for their conversions.

A node may run a compiled graph itself (`subgraph.invoke(...)` in its body) rather than be
one. Run by LangGraph inside a graphdef task, that graph would neither checkpoint under the
node nor pause the run on an interrupt: it would be a separate run. So a node or
entrypoint function that reaches a LangGraph graph through its closure or its module's
globals is called as a copy of itself that reaches the graph's conversion instead: new
closure cells, and globals that shadow those names and read every other name from the
module as it is when read. The user's function, cells and module are left untouched.
"""

from __future__ import annotations

import dis
import types
from collections.abc import Callable
from typing import Any

from langgraph.pregel import Pregel as LgPregel

from celerygraph_langgraph.errors import ConversionError

Convert = Callable[[Any, str], Any]


class _Shadowed(dict[str, Any]):
    """A module's globals with some names shadowed; a name not shadowed is read from the
    module at each read (CPython looks a function's globals up through `__missing__` when
    they are a dict subclass)."""

    def __init__(self, module: dict[str, Any], shadowed: dict[str, Any]) -> None:
        # A function's builtins come from its globals' `__builtins__`, read without
        # `__missing__`: it is copied in.
        builtins = {k: module[k] for k in ("__builtins__",) if k in module}
        super().__init__({**builtins, **shadowed})
        self._module = module

    def __missing__(self, name: str) -> Any:
        return self._module[name]


def with_inner_graphs(function: Any, where: str, convert: Convert) -> tuple[Any, list[Any]]:
    """`function`, or a copy of it that reaches the conversions of the LangGraph graphs it
    holds in its closure or loads from its globals (`convert(graph, where)` each), and
    those conversions."""
    code = getattr(function, "__code__", None)
    if code is None:
        return function, []
    cells = list(function.__closure__ or ())
    converted = []
    for i, cell in enumerate(cells):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell: a variable not yet bound
            continue
        if isinstance(value, LgPregel):
            converted.append(convert(value, f"{where}: the graph it calls > "))
            cells[i] = types.CellType(converted[-1])
    module = function.__globals__
    loaded = {i.argval for i in dis.get_instructions(code) if i.opname == "LOAD_GLOBAL"}
    shadowed = {name: convert(module[name], f"{where}: the graph {name!r} it calls > ")
                for name in sorted(loaded)
                if isinstance(module.get(name), LgPregel)}
    converted.extend(shadowed.values())
    if not converted:
        return function, []
    if shadowed and any(i.opname in ("STORE_GLOBAL", "DELETE_GLOBAL")
                        for i in dis.get_instructions(code)):
        raise ConversionError(f"{where}: its function assigns module globals and calls the "
                              f"LangGraph graph {min(shadowed)!r} from them")
    copy = types.FunctionType(code, _Shadowed(module, shadowed) if shadowed else module,
                              function.__name__, function.__defaults__, tuple(cells) or None)
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    copy.__module__ = function.__module__
    copy.__annotations__ = function.__annotations__
    copy.__dict__.update(function.__dict__)
    return copy, converted
