"""Checkpoint ids: UUIDv7-shaped strings whose text order is their creation order.

Savers find "the newest checkpoint" and "checkpoints before X" by comparing ids as strings,
so ids made in one process must sort in creation order even within one millisecond (a
counter takes over from the clock) and must not collide across processes (the counter
starts at a random value each millisecond, and again in a forked child).
"""

from __future__ import annotations

import os
import secrets
import threading
import time

_SEQ_BITS = 74  # the 12-bit rand_a and 62-bit rand_b fields of a UUIDv7
_lock = threading.Lock()
_last_ms = 0
_seq = 0


def _reset_after_fork() -> None:
    global _last_ms
    _last_ms = 0


os.register_at_fork(after_in_child=_reset_after_fork)


def new_checkpoint_id() -> str:
    """A fresh id greater than every id this process made before."""
    global _last_ms, _seq
    with _lock:
        now = time.time_ns() // 1_000_000
        if now > _last_ms:
            # Start low enough that counting up within the millisecond cannot overflow.
            _last_ms, _seq = now, secrets.randbits(_SEQ_BITS - 1)
        else:
            _seq += 1
            if _seq >> _SEQ_BITS:
                _last_ms, _seq = _last_ms + 1, 0
        ms, seq = _last_ms, _seq
    value = (ms << 80) | (0x7 << 76) | ((seq >> 62) << 64) | (0b10 << 62) | (seq & (2**62 - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
