"""The HTTP server's pure parts: which stream entries become which SSE events, and values
as the JSON HTTP clients get."""

from __future__ import annotations

import dataclasses
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from langchain_core.messages import AIMessageChunk

from graphdef.types import Interrupt
from scheduler import beat
from scheduler.server import encode, sse
from scheduler.server.backend import assistant_id
from scheduler.server.http import ApiError
from scheduler.streams import StreamPart


def chunk(mode, data, ns=()):
    return StreamPart("1-0", "chunk", ns=ns, mode=mode, data=data)


def test_events_are_named_after_api_modes_and_namespaces():
    plain = sse.Selection(frozenset({"values", "messages-tuple", "custom"}), subgraphs=False)
    assert plain.event(chunk("values", {"a": 1})) == ("values", {"a": 1})
    assert plain.event(chunk("messages", ("m", {})))[0] == "messages"
    assert plain.event(chunk("updates", {"n": {}})) is None  # not asked for
    assert plain.event(chunk("custom", 1, ns=("inner:1",))) is None  # no subgraphs
    nested = sse.Selection(frozenset({"custom"}), subgraphs=True)
    assert nested.event(chunk("custom", 1, ns=("inner:1", "deep:2"))) == (
        "custom|inner:1|deep:2", 1)


def test_an_interrupt_reaches_a_client_that_asked_for_neither_values_nor_updates():
    custom = sse.Selection(frozenset({"custom"}), subgraphs=False)
    assert custom.graph_modes == ["custom", "updates"]
    paused = {"__interrupt__": [Interrupt("ok?", "i1")]}
    assert custom.event(chunk("updates", paused)) == ("values", paused)
    assert custom.event(chunk("updates", {"node": {}})) is None
    with_values = sse.Selection(frozenset({"values"}), subgraphs=False)
    assert with_values.graph_modes == ["values"]


def test_the_end_of_a_failed_run_is_an_error_event():
    selection = sse.Selection(frozenset({"values"}), subgraphs=False)
    failed = StreamPart("2-0", "end", status="failed",
                        error={"type": "ValueError", "message": "boom"})
    assert selection.event(failed) == ("error", {"error": "ValueError", "message": "boom"})
    assert selection.event(StreamPart("2-0", "end", status="done")) is None
    assert selection.event(StreamPart("2-0", "abandoned", task="t", attempt="2")) is None


def test_stream_modes_are_checked_and_unimplemented_ones_named():
    assert sse.api_modes("values") == {"values"}
    assert sse.api_modes(["values", "messages-tuple"]) == {"values", "messages-tuple"}
    assert sse.api_modes(["messages"]) == {"messages"}
    with pytest.raises(ApiError) as raised:
        sse.api_modes(["events"])
    assert raised.value.status == 422 and "events" in raised.value.detail
    with pytest.raises(ApiError):
        sse.api_modes(["valuez"])


def test_messages_mode_without_langchain_core_is_refused_naming_it(monkeypatch):
    # A None entry in sys.modules is how Python marks a module that cannot be imported.
    monkeypatch.setitem(sys.modules, "langchain_core", None)
    with pytest.raises(ApiError) as raised:
        sse.api_modes(["messages"])
    assert raised.value.status == 422 and "langchain-core" in raised.value.detail
    assert sse.api_modes(["messages-tuple"]) == {"messages-tuple"}


def test_messages_mode_accumulates_each_message_as_the_reference_server():
    from langchain_core.messages import AIMessageChunk, HumanMessage

    from scheduler.server.messages import MessageAccumulator

    accumulator = MessageAccumulator()
    meta = {"langgraph_node": "model"}
    first = accumulator.events((AIMessageChunk(content="hel", id="m1"), meta))
    assert first[0] == ("messages/metadata", {"m1": {"metadata": meta}})
    name, [message] = first[1]
    assert (name, message.type, message.content) == ("messages/partial", "ai", "hel")
    [(name, [message])] = accumulator.events((AIMessageChunk(content="lo", id="m1"), meta))
    assert (name, message.content) == ("messages/partial", "hello")
    whole = accumulator.events((HumanMessage(content="hi", id="m2"), meta))
    assert [n for n, _ in whole] == ["messages/metadata", "messages/complete"]
    assert whole[1][1][0].content == "hi"
    # A chunk that came as a dict stays a chunk, as the reference server keeps it.
    as_dict = accumulator.events(({"type": "AIMessageChunk", "content": "x", "id": "m3"}, meta))
    assert as_dict[1][0] == "messages/partial" and as_dict[1][1][0].type == "AIMessageChunk"
    selection = sse.Selection(frozenset({"messages"}), subgraphs=False)
    assert selection.accumulates(chunk("messages", ("m", {})))
    assert not selection.accumulates(chunk("messages", ("m", {}), ns=("inner:1",)))
    both = sse.Selection(frozenset({"messages", "messages-tuple"}), subgraphs=False)
    assert not both.accumulates(chunk("messages", ("m", {})))  # the tuples win, as there


def test_sse_frames():
    assert sse.frame("values", {"a": 1}, "5-0") == (
        b'event: values\r\ndata: {"a":1}\r\nid: 5-0\r\n\r\n')
    assert sse.frame("metadata", {"run_id": "r"}) == (
        b'event: metadata\r\ndata: {"run_id":"r"}\r\n\r\n')


def test_values_as_plain_json():
    @dataclasses.dataclass
    class Point:
        x: int

    value = {"i": Interrupt("ok?", "i1"), "m": AIMessageChunk(content="hi", id="m1"),
             "s": {1}, "t": (1, 2), "d": Decimal("1.5"), "b": b"\x00", "p": Point(1),
             "e": ValueError("bad"), "u": uuid.UUID(int=0)}
    out = orjson.loads(encode.dumps(value))
    assert out["i"] == {"value": "ok?", "id": "i1"}
    assert out["m"]["content"] == "hi" and out["m"]["type"] == "AIMessageChunk"
    assert out["s"] == [1] and out["t"] == [1, 2] and out["d"] == "1.5"
    assert out["b"] == "AA==" and out["p"] == {"x": 1}
    assert out["e"] == {"error": "ValueError", "message": "bad"}
    with pytest.raises(TypeError):
        encode.dumps(object())


def test_assistant_ids_are_the_reference_servers_for_a_graph_name():
    # langgraph-api: uuid5(UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), graph_id)
    assert assistant_id("agent") == "fe096781-5601-53d2-b2f6-0d3403f7e9ca"


def test_a_zoned_schedule_keeps_its_wall_clock_across_daylight_saving_time():
    new_york = beat.zone("America/New_York")
    nine = beat.parse("0 9 * * *")
    # 2026-03-08: New York moves from UTC-5 to UTC-4 at 02:00.
    assert beat.next_tick(nine, datetime(2026, 3, 7, 15, tzinfo=UTC), new_york).astimezone(
        UTC) == datetime(2026, 3, 8, 13, tzinfo=UTC)
    assert beat.next_tick(nine, datetime(2026, 3, 6, 15, tzinfo=UTC), new_york).astimezone(
        UTC) == datetime(2026, 3, 7, 14, tzinfo=UTC)
    assert beat.latest_tick(nine, datetime(2026, 3, 8, 13, 0, 30, tzinfo=UTC),
                            new_york).astimezone(UTC) == datetime(2026, 3, 8, 13, tzinfo=UTC)
    # Beat runs in UTC: whole-hour zones fire on the schedule's minutes, others every minute.
    assert beat.beat_schedule("*/5 9 * * 1", "Europe/Paris") == "*/5 * * * *"
    assert beat.beat_schedule("30 9 * * *", "Asia/Kolkata") == "* * * * *"
    assert beat.beat_schedule("30 9 * * *", None) == "30 9 * * *"
    with pytest.raises(ValueError, match="timezone"):
        beat.zone("Nowhere/Else")
