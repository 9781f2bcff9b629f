"""How a running task's chunks are stored in its run's stream (`scheduler.streams`): a batch
entry keeps a model call's metadata once, and reads back as the chunks went in."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk

from graphdef.serde import SerdeError
from scheduler.streams import LiveEncoder, StreamPart, batch_fields, decode


def _stored(fields: dict[str, bytes | str]) -> dict[bytes, bytes]:
    """An entry's fields as Redis gives them back."""
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}


def _tokens(meta: dict[str, Any], words: list[str]) -> list[Any]:
    return [((), "messages", (AIMessageChunk(content=w, id="m1"), meta)) for w in words]


META_A = {"langgraph_node": "agent", "langgraph_step": 1, "langgraph_path": ("__pregel_pull",
                                                                             "agent")}
META_B = {"langgraph_node": "other", "langgraph_step": 1}


def _batch() -> tuple[list[Any], dict[bytes, bytes]]:
    chunks = [*_tokens(META_A, ["a", "b"]), ((), "custom", {"x": 1}),
              *_tokens(META_B, ["c"]), *_tokens(META_A, ["d"])]
    encoder = LiveEncoder()
    return chunks, _stored(batch_fields([encoder.encode(c) for c in chunks], "t1", "att"))


def test_a_batch_reads_back_as_its_chunks_went_in() -> None:
    chunks, fields = _batch()
    parts = decode(b"5-0", fields)
    assert [p.id for p in parts] == [f"5-0/{i}" for i in range(len(chunks))]
    assert [(p.ns, p.mode, p.data) for p in parts] == list(chunks)
    assert {(p.task, p.attempt) for p in parts} == {("t1", "att")}
    # One metadata dict per model call, shared by its tokens, as in-process.
    metas = [p.data[1] for p in parts if p.mode == "messages"]
    assert metas[0] is metas[1] is metas[3] and metas[2] is not metas[0]
    assert metas[0]["langgraph_path"] == ("__pregel_pull", "agent")


def test_a_model_calls_metadata_is_stored_once_per_batch() -> None:
    _, fields = _batch()
    assert fields[b"d"].count(b"langgraph_node") == 2  # META_A once, META_B once


def test_reading_on_from_the_middle_of_a_batch_keeps_earlier_metadata() -> None:
    chunks, fields = _batch()
    parts = decode(b"5-0", fields, skip=3)
    assert [p.id for p in parts] == ["5-0/4"]
    assert parts[0].data == chunks[4][2]


def test_a_metadata_reference_outside_the_batch_is_an_error() -> None:
    fields = {b"k": b"b", b"t": b"", b"a": b"",
              b"d": b'[[[],"messages","hi",3]]'}
    with pytest.raises(ValueError, match="metadata of chunk 3"):
        decode(b"1-0", fields)


def test_single_chunks_and_batches_of_other_modes_are_unchanged() -> None:
    encoder = LiveEncoder()
    chunk = (("sub:1",), "updates", {"node": {"v": (1, 2)}})
    parts: list[StreamPart] = decode(b"2-0", _stored(batch_fields([encoder.encode(chunk)],
                                                                   "t", "a")))
    assert [(p.ns, p.mode, p.data) for p in parts] == [chunk]
    with pytest.raises(SerdeError):
        decode(b"3-0", {b"k": b"b", b"t": b"", b"a": b"", b"d": b'[[[],"m",{"__cg__":1}]]'})
