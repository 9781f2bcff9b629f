"""Every error the project raises derives from one base, and keeps the built-in bases of the
LangGraph error of the same name, so LangGraph-era `except` clauses still catch it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import langgraph.errors
import pytest

import graphdef
import scheduler
import worker
from graphdef.errors import CeleryGraphError


def _project_errors() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (graphdef, scheduler, worker):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if (inspect.isclass(value) and issubclass(value, BaseException)
                        and value.__module__ == info.name and not name.startswith("_")):
                    found[f"{info.name}.{name}"] = value
    return found


ERRORS = _project_errors()


def test_the_error_classes_were_found() -> None:
    names = {cls.__name__ for cls in ERRORS.values()}
    assert {"GraphRecursionError", "NotSerializableError", "CorruptStorageError",
            "ThreadBusyError", "UnknownGraphError", "StaleTaskError"} <= names


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_every_error_derives_from_the_project_base(name: str) -> None:
    assert issubclass(ERRORS[name], CeleryGraphError)


@pytest.mark.parametrize("name", sorted(n for n in ERRORS if n.startswith("graphdef.errors.")
                                        and hasattr(langgraph.errors, n.rsplit(".", 1)[1])))
def test_langgraph_named_errors_keep_langgraph_builtin_bases(name: str) -> None:
    ours = ERRORS[name]
    theirs = getattr(langgraph.errors, ours.__name__)
    builtin_bases = {c for c in theirs.__mro__ if c.__module__ == "builtins"}
    assert builtin_bases <= set(ours.__mro__), (ours.__mro__, theirs.__mro__)
