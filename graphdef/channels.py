"""Channels: where state keys, edges and sends hold their values between supersteps.

Each channel decides what a superstep's batch of writes does to it (`update`) and whether
it is readable (`is_available`). `update` returns True when the value changed, which is
what bumps the channel's version and so triggers the nodes subscribed to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from graphdef.errors import EmptyChannelError, InvalidUpdateError
from graphdef.types import Overwrite


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class BaseChannel:
    """One value slot with LangGraph's update rules; `checkpoint()` is what gets stored."""

    __slots__ = ("key", "value")

    def __init__(self, key: str = "") -> None:
        self.key = key
        self.value: Any = MISSING

    def clone_empty(self) -> BaseChannel:
        raise NotImplementedError

    def from_checkpoint(self, stored: Any) -> BaseChannel:
        channel = self.clone_empty()
        channel.value = stored
        return channel

    def copy(self) -> BaseChannel:
        return self.from_checkpoint(self.checkpoint())

    def checkpoint(self) -> Any:
        return self.value

    def is_available(self) -> bool:
        return self.value is not MISSING

    def get(self) -> Any:
        if self.value is MISSING:
            raise EmptyChannelError(self.key)
        return self.value

    def update(self, values: Sequence[Any]) -> bool:
        raise NotImplementedError

    def consume(self) -> bool:
        return False

    def finish(self) -> bool:
        """Told when a superstep leaves no node to run; True if that made it available
        (only the channels of deferred nodes care)."""
        return False


class LastValue(BaseChannel):
    """A plain state key: at most one write per superstep."""

    __slots__ = ()

    def clone_empty(self) -> LastValue:
        return LastValue(self.key)

    def update(self, values: Sequence[Any]) -> bool:
        if not values:
            return False
        if len(values) > 1:
            raise InvalidUpdateError(
                f"At key '{self.key}': Can receive only one value per step. "
                "Use an Annotated key to handle multiple values."
            )
        self.value = values[-1]
        return True


class BinaryOperatorAggregate(BaseChannel):
    """A reducer key (`Annotated[list, operator.add]`): folds every write into the value."""

    __slots__ = ("operator", "initial")

    def __init__(self, key: str, operator: Callable[[Any, Any], Any], initial: Callable[[], Any]):
        super().__init__(key)
        self.operator = operator
        self.initial = initial
        self.value = self._initial_value()

    def _initial_value(self) -> Any:
        try:
            return self.initial()
        except Exception:
            return MISSING

    def clone_empty(self) -> BinaryOperatorAggregate:
        return BinaryOperatorAggregate(self.key, self.operator, self.initial)

    def from_checkpoint(self, stored: Any) -> BaseChannel:
        channel = self.clone_empty()
        if stored is not MISSING:
            channel.value = stored
        return channel

    def update(self, values: Sequence[Any]) -> bool:
        if not values:
            return False
        overwrites = [v for v in values if isinstance(v, Overwrite)]
        if len(overwrites) > 1:
            raise InvalidUpdateError(
                f"At key '{self.key}': Can receive only one Overwrite value per super-step."
            )
        if overwrites:
            self.value = overwrites[0].value
            return True
        for v in values:
            self.value = v if self.value is MISSING else self.operator(self.value, v)
        return True


class EphemeralValue(BaseChannel):
    """Holds a write for exactly one superstep: how edges trigger their target."""

    __slots__ = ()

    def clone_empty(self) -> EphemeralValue:
        return EphemeralValue(self.key)

    def update(self, values: Sequence[Any]) -> bool:
        if not values:
            if self.value is MISSING:
                return False
            self.value = MISSING
            return True
        self.value = values[-1]
        return True


class Topic(BaseChannel):
    """Collects a superstep's writes as a list, replaced each step: pending `Send`s."""

    __slots__ = ()

    def clone_empty(self) -> Topic:
        return Topic(self.key)

    def is_available(self) -> bool:
        return bool(self.value) and self.value is not MISSING

    def get(self) -> list[Any]:
        if not self.is_available():
            raise EmptyChannelError(self.key)
        return self.value

    def update(self, values: Sequence[Any]) -> bool:
        had = self.is_available()
        self.value = list(values) if values else MISSING
        return had or bool(values)


class NamedBarrierValue(BaseChannel):
    """A join edge: available once every named source has written in this cycle."""

    __slots__ = ("names",)

    def __init__(self, key: str, names: frozenset[str]) -> None:
        super().__init__(key)
        self.names = names
        self.value = set()

    def clone_empty(self) -> NamedBarrierValue:
        return NamedBarrierValue(self.key, self.names)

    def from_checkpoint(self, stored: Any) -> BaseChannel:
        channel = self.clone_empty()
        if stored is not MISSING:
            channel.value = set(stored)
        return channel

    def checkpoint(self) -> Any:
        return sorted(self.value) if self.value else MISSING

    def is_available(self) -> bool:
        return self.value == self.names

    def get(self) -> None:
        if not self.is_available():
            raise EmptyChannelError(self.key)
        return None

    def update(self, values: Sequence[Any]) -> bool:
        changed = False
        for name in values:
            if name not in self.names:
                raise InvalidUpdateError(f"At key '{self.key}': value {name!r} not in {self.names}")
            if name not in self.value:
                self.value.add(name)
                changed = True
        return changed

    def consume(self) -> bool:
        if self.value == self.names:
            self.value = set()
            return True
        return False


class LastValueAfterFinish(BaseChannel):
    """A deferred node's trigger: holds its last write, readable only once the run has no
    other work left (`finish`), then cleared when the node runs."""

    __slots__ = ("finished",)

    def __init__(self, key: str = "") -> None:
        super().__init__(key)
        self.finished = False

    def clone_empty(self) -> LastValueAfterFinish:
        return LastValueAfterFinish(self.key)

    def from_checkpoint(self, stored: Any) -> BaseChannel:
        channel = self.clone_empty()
        if stored is not MISSING:
            channel.value, channel.finished = stored
        return channel

    def checkpoint(self) -> Any:
        return MISSING if self.value is MISSING else (self.value, self.finished)

    def is_available(self) -> bool:
        return self.finished and self.value is not MISSING

    def get(self) -> Any:
        if not self.is_available():
            raise EmptyChannelError(self.key)
        return self.value

    def update(self, values: Sequence[Any]) -> bool:
        if not values:
            return False
        self.finished = False
        self.value = values[-1]
        return True

    def consume(self) -> bool:
        if self.finished:
            self.finished = False
            self.value = MISSING
            return True
        return False

    def finish(self) -> bool:
        if not self.finished and self.value is not MISSING:
            self.finished = True
            return True
        return False


class NamedBarrierValueAfterFinish(NamedBarrierValue):
    """A join edge into a deferred node: complete, and then only once no other work is left."""

    __slots__ = ("finished",)

    def __init__(self, key: str, names: frozenset[str]) -> None:
        super().__init__(key, names)
        self.finished = False

    def clone_empty(self) -> NamedBarrierValueAfterFinish:
        return NamedBarrierValueAfterFinish(self.key, self.names)

    def from_checkpoint(self, stored: Any) -> BaseChannel:
        channel = self.clone_empty()
        if stored is not MISSING:
            seen, channel.finished = stored
            channel.value = set(seen)
        return channel

    def checkpoint(self) -> Any:
        return (sorted(self.value), self.finished) if self.value else MISSING

    def is_available(self) -> bool:
        return self.finished and self.value == self.names

    def consume(self) -> bool:
        if self.finished and self.value == self.names:
            self.finished = False
            self.value = set()
            return True
        return False

    def finish(self) -> bool:
        if not self.finished and self.value == self.names:
            self.finished = True
            return True
        return False


# The channel kinds whose availability changes only through `apply_writes` (an update, a
# consume, a clear, a finish), so a loop may track which could hold a value.
STANDARD_CHANNELS = frozenset({
    LastValue, BinaryOperatorAggregate, EphemeralValue, Topic, NamedBarrierValue,
    LastValueAfterFinish, NamedBarrierValueAfterFinish,
})
