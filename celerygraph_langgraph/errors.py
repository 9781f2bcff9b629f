"""The error a LangGraph graph that celerygraph cannot run raises when it is converted."""

from __future__ import annotations

from graphdef.errors import CeleryGraphError


class ConversionError(CeleryGraphError):
    """A part of a LangGraph graph has no graphdef counterpart. The message names the part
    (`node 'x': ...`, `subgraph 'sub' > node 'y': ...`): converting it anyway would run a
    different graph without a word, so the conversion stops instead."""
