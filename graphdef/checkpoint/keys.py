"""Redis key names of a thread, shared by the checkpoint saver and the distributed run store.

Every key of a thread starts with ``<prefix>:{<tag>}:``: one hash tag per thread, so that a
thread's checkpoints, memos, runs, leases and events share one Redis Cluster slot and every
Lua script touches one slot. The tag is chosen here, once, for both.
"""

from __future__ import annotations

import base64

DEFAULT_PREFIX = "cg"


def b64(text: str) -> str:
    """base64url without padding: no ':', braces or glob characters."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def check_prefix(prefix: str) -> str:
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"key prefix {prefix!r} must not contain '{{' or '}}'")
    return prefix


def thread_tag(thread_id: str) -> str:
    """The thread id itself when it is a safe hash tag, else ``~`` + base64url of it.

    Raw tags never start with ``~``, so the two forms cannot collide; the empty id and ids
    with braces (which would end or empty the hash tag) are always encoded.
    """
    if thread_id and "{" not in thread_id and "}" not in thread_id and thread_id[0] != "~":
        return thread_id
    return "~" + b64(thread_id)


def thread_of_tag(tag: str) -> str:
    """The thread id a tag stands for; ValueError for a ``~`` tag that is not base64url."""
    return unb64(tag[1:]) if tag.startswith("~") else tag


def thread_prefix(prefix: str, thread_id: str) -> str:
    """What every key of the thread starts with: ``<prefix>:{<tag>}:``."""
    return f"{prefix}:{{{thread_tag(thread_id)}}}:"


def glob_escape(text: str) -> str:
    """`text` as a literal inside a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def threads_matching(keys: list[str], prefix: str, suffix: str) -> set[str]:
    """The threads of the keys ``<prefix>:{<tag>}<suffix>`` among `keys`; others are skipped
    (keys this project did not write, or a malformed ``~`` tag)."""
    head = f"{prefix}:{{"
    found = set()
    for key in keys:
        end = key.find("}", len(head))
        if not key.startswith(head) or end < 0 or key[end + 1:] != suffix:
            continue
        try:
            found.add(thread_of_tag(key[len(head):end]))
        except ValueError:
            continue
    return found
