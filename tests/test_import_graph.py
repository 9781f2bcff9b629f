"""The packages' module import graph, read from the source with `ast`, and its cycles.

Every import counts: module level, inside functions and under `if TYPE_CHECKING:`. A
circle that only a function-level import keeps from failing at load time is still a circle
in the design; and one that only exists for the type checker still ties the modules
together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Candidate module names an import statement loads, most specific first per name."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    # `from pkg import name` loads `pkg.name` when that is a module, else takes a name of `pkg`.
    return [f"{target}.{alias.name}" for alias in node.names] + [target]


def import_graph(packages: Iterable[str], root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports (imports of anything else are left out)."""
    files = {
        _module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            candidates = _imported(node, module, is_package)
            if isinstance(node, ast.Import):
                deps.update(c for c in candidates if c in files)
                continue
            submodules = [c for c in candidates[:-1] if c in files]
            deps.update(submodules)
            if len(submodules) < len(candidates) - 1 and candidates[-1] in files:
                deps.add(candidates[-1])
        deps.discard(module)
        graph[module] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's import circles: each strongly connected component of more than one
    module, sorted (Tarjan's algorithm, iterative so deep graphs do not hit the recursion
    limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return sorted(cycles)


def test_find_cycles_reports_each_circle_once() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert find_cycles(graph) == [["a", "b", "c"], ["d", "e"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_counts_function_level_and_type_checking_imports() -> None:
    graph = import_graph(["graphdef"])
    assert "graphdef.algo" in graph["graphdef.loop"]
    assert "graphdef.checkpoint.base" in graph["graphdef.checkpoint.memory"]
    # `checkpoint/__init__` imports the Redis saver inside a function.
    assert "graphdef.checkpoint.redis" in graph["graphdef.checkpoint"]


LAYERS = ("graphdef", "scheduler", "worker")  # each may import only those before it


def _external_imports(package: str) -> set[str]:
    """Top-level names of what `package` imports from outside the project."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
    return found - set(LAYERS)


def test_no_import_cycles_anywhere() -> None:
    assert find_cycles(import_graph(LAYERS)) == []


def test_imports_point_one_way_worker_scheduler_graphdef() -> None:
    graph = import_graph(LAYERS)
    wrong = sorted(
        (module, dep)
        for module, deps in graph.items()
        for dep in deps
        if LAYERS.index(dep.split(".")[0]) > LAYERS.index(module.split(".")[0])
    )
    assert wrong == []


def test_graphdef_imports_no_celery() -> None:
    assert not _external_imports("graphdef") & {"celery", "kombu", "billiard"}


# The one door from the layers to the LangGraph bridge: the registry converts a LangGraph
# graph found in a CELERYGRAPH_GRAPHS module, importing celerygraph_langgraph inside the
# function that meets one, so a process whose graph modules hold none never imports it.
BRIDGE_DOORS = {"scheduler.registry"}


def _bridge_imports(package: str) -> list[tuple[str, bool]]:
    """(module, inside a function) for each import of celerygraph_langgraph in `package`."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        in_functions = {
            id(node)
            for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
            for node in ast.walk(function)
        }
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "celerygraph_langgraph" for name in names):
                found.append((_module_name(path, ROOT), id(node) in in_functions))
    return found


def test_langgraph_stays_an_optional_extra() -> None:
    """Only celerygraph_langgraph imports langgraph; it builds on graphdef alone, and the
    layers reach it only through the registry's door, inside a function, so installing or
    running celerygraph without LangGraph graphs never needs langgraph."""
    doors = []
    for package in LAYERS:
        assert "langgraph" not in _external_imports(package), package
        doors.extend(_bridge_imports(package))
    assert doors and all(module in BRIDGE_DOORS and inside for module, inside in doors), doors
    bridge = import_graph([*LAYERS, "celerygraph_langgraph"])
    used = {
        dep.split(".")[0]
        for module, deps in bridge.items()
        if module.startswith("celerygraph_langgraph")
        for dep in deps
    }
    assert used <= {"graphdef", "celerygraph_langgraph"}
    assert find_cycles(bridge) == []


def test_the_layer_check_catches_a_wrong_import(tmp_path: Path) -> None:
    for package, source in (("graphdef", "from scheduler import x\n"), ("scheduler", "")):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "x.py").write_text(source)
    graph = import_graph(["graphdef", "scheduler"], root=tmp_path)
    assert graph["graphdef.x"] == {"scheduler.x"}
