"""A channel's list stored as the items appended to an earlier stored version of it.

LangGraph hands a saver each changed channel whole, so a list that grows by a few items a
step (`Annotated[list, operator.add]`, a conversation's messages) would be stored whole at
every version: quadratic in the thread's length. When the saver remembers the list it
stored last for the channel and the new one extends it, it stores only the appended items
and the field of that earlier blob (its base).

A blob record is either the serde's JSON of the whole value (what earlier releases wrote;
JSON never starts with `D`), empty (the channel is unset), or `D<base field>\\n<serde JSON
of the appended items>`. A reader gets a field's whole chain, base after base, in one
script on the server (`CHAIN_LUA`); pruning keeps every base a kept blob needs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from graphdef import serde

MARK = b"D"
# Past this many deltas in a row a version is stored whole, so a read rebuilds from a
# bounded chain.
MAX_DEPTH = 256

# KEYS[1] the blob hash; ARGV the fields to read. For each field, its records from itself
# back to the first whole one (false where a record is missing).
CHAIN_LUA = """
local out = {}
for i, field in ipairs(ARGV) do
  local chain, current = {}, field
  while current do
    local record = redis.call('HGET', KEYS[1], current)
    table.insert(chain, record)
    current = nil
    if record and string.sub(record, 1, 1) == 'D' then
      current = string.sub(record, 2, string.find(record, '\\n', 1, true) - 1)
    end
  end
  out[i] = chain
end
return out
"""

# Lua that adds to the table `live` every base the fields already in it need.
LIVE_BASES_LUA = """
local pending = {}
for field, _ in pairs(live) do table.insert(pending, field) end
while #pending > 0 do
  local record = redis.call('HGET', blob, table.remove(pending))
  if record and string.sub(record, 1, 1) == 'D' then
    local base = string.sub(record, 2, string.find(record, '\\n', 1, true) - 1)
    if not live[base] then live[base] = true; table.insert(pending, base) end
  end
end
"""


def delta_record(base_field: str, appended: list[Any]) -> bytes:
    return MARK + base_field.encode() + b"\n" + serde.dumps(appended)


def base_of(record: bytes) -> str | None:
    if not record.startswith(MARK):
        return None
    return record[1:record.index(b"\n")].decode()


def rebuild(chain: list[bytes | None], field: str) -> tuple[bool, Any]:
    """A field's value from its chain (itself first); (False, None) for an unset channel."""
    if not chain or chain[-1] is None:
        raise LookupError(f"blob {field!r} or one of its bases is missing")
    first = chain[-1]
    if first == b"":
        return False, None
    value = serde.loads(first)
    for record in reversed(chain[:-1]):
        assert record is not None
        value = value + serde.loads(record[record.index(b"\n") + 1:])
    return True, value


class RecentLists:
    """What list each (thread, namespace, channel) got stored last, and under which field:
    a bounded cache, so a miss only costs a whole copy."""

    def __init__(self, max_entries: int = 2048) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str, str], tuple[str, list[Any], int]] = (
            OrderedDict())

    def encode(self, key: tuple[str, str, str], field: str, value: Any
               ) -> tuple[bytes, str | None]:
        """The record to store `value` under `field`, and the base field it needs, if any."""
        with self._lock:
            known = self._entries.get(key)
        if type(value) is list and known is not None:
            base, items, depth = known
            if depth < MAX_DEPTH and len(value) >= len(items) and value[:len(items)] == items:
                self._remember(key, field, value, depth + 1)
                return delta_record(base, value[len(items):]), base
        if type(value) is list:
            self._remember(key, field, value, 0)
        return serde.dumps(value), None

    def whole(self, key: tuple[str, str, str], field: str, value: Any) -> bytes:
        """The record of `value` stored whole (its base is gone), remembered as such."""
        if type(value) is list:
            self._remember(key, field, value, 0)
        return serde.dumps(value)

    def forget(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def forget_thread(self, thread_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == thread_id]:
                del self._entries[key]

    def _remember(self, key: tuple[str, str, str], field: str, value: list[Any],
                  depth: int) -> None:
        with self._lock:
            self._entries[key] = (field, list(value), depth)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
