"""Keyword arguments of LangGraph's builders that graphdef refuses or renames.

LangGraph takes `**kwargs` on its builders and ignores names it does not know; here every
name is either honoured, mapped from its deprecated spelling, or refused with an error that
names it, so nothing a ported program passes is dropped without a word.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from graphdef.errors import NotImplementedFeatureError


def refuse(where: str, **given: Any) -> None:
    """Raise for each parameter given a value (not None/False) that graphdef lacks."""
    for name, value in given.items():
        if value is not None and value is not False:
            raise NotImplementedFeatureError(
                f"{where}: parameter {name!r} is not supported by graphdef"
            )


def deprecated(
    where: str, kwargs: dict[str, Any], renamed: Mapping[str, str], current: dict[str, Any]
) -> dict[str, Any]:
    """`current` with LangGraph's deprecated names in `kwargs` mapped to their new ones (a
    DeprecationWarning each, as LangGraph warns); any other leftover name is a TypeError."""
    result = dict(current)
    for old, value in kwargs.items():
        new = renamed.get(old)
        if new is None:
            raise TypeError(f"{where}() got an unexpected keyword argument {old!r}")
        warnings.warn(f"`{old}` is deprecated; use `{new}`", DeprecationWarning, stacklevel=3)
        if result.get(new) is None:
            result[new] = value
    return result
