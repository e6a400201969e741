"""The wire between the recorder and its writer process (recorder.handoff), pure."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.handoff import (
    MAX_MESSAGE_BYTES,
    Fatal,
    Progress,
    Ready,
    Unframer,
    apply_state,
    batch_of,
    decode_batch,
    decode_reply,
    encode,
    state_fields,
)
from recorder.records import FrameRecord, LogRecord, Record
from recorder.state import WriterState
from recorder.writerprocess import split_queue

_frames = st.builds(
    FrameRecord,
    account_id=st.text(max_size=8),
    session_id=st.text(max_size=8),
    received_at_ns=st.integers(0, 2**63 - 1),
    server_ts_ms=st.none() | st.integers(-(2**63), 2**63 - 1),
    sequence=st.none() | st.integers(-(2**63), 2**63 - 1),
    msg_type=st.none() | st.text(max_size=12),
    trading_day=st.dates(dt.date(1970, 1, 1), dt.date(2100, 1, 1)),
    replayed=st.booleans(),
    raw_kind=st.sampled_from(["text", "binary", "text-base64"]),
    raw=st.text(),
)
_logs = st.builds(
    LogRecord,
    session_id=st.text(max_size=8),
    account_id=st.text(max_size=8),
    at_ns=st.integers(0, 2**63 - 1),
    event=st.sampled_from(["opened", "subscribed", "closed"]),
    detail=st.none() | st.text(max_size=20),
)


@given(st.lists(_frames | _logs, max_size=30), st.lists(st.integers(1, 50), max_size=10))
def test_records_arrive_as_sent_in_order_whatever_the_stream_splits(
    records: list[Record], cuts: list[int]
) -> None:
    """Frames and lifecycle rows keep their order (a ``closed`` row after its session's last
    frame), every field exactly, however the socket splits the bytes."""
    stream = encode(batch_of(records[:10])) + encode(batch_of(records[10:]))
    unframer, bodies, at = Unframer(), [], 0
    for cut in [*cuts, len(stream)]:
        bodies += unframer.feed(stream[at : at + cut])
        at += cut
    bodies += unframer.feed(stream[at:])
    assert unframer.pending == 0
    received = [r for body in bodies for r in decode_batch(body).records()]
    assert received == records
    assert [type(r) for r in received] == [type(r) for r in records]


def test_a_partial_message_is_held_until_it_is_complete() -> None:
    message = encode(batch_of([LogRecord("s", "a", 1, "opened")]))
    unframer = Unframer()
    assert unframer.feed(message[:-1]) == []
    assert unframer.pending == len(message) - 1
    assert len(unframer.feed(message[-1:])) == 1


def test_a_length_beyond_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="over the limit"):
        Unframer().feed((MAX_MESSAGE_BYTES + 1).to_bytes(4, "big"))


def test_replies_round_trip_and_state_applies_known_fields_only() -> None:
    state = WriterState(rows_written=7, failing="database is locked", busy_since=1.5)
    fields = state_fields(state)
    for reply in (Ready(42), Progress(fields, [0.25]), Fatal("the writer failed: x")):
        assert decode_reply(encode(reply)[4:]) == reply
    mirror = WriterState()
    apply_state(mirror, {**fields, "from_a_newer_writer": 1})
    assert mirror == state


@pytest.mark.parametrize("queue", [1, 2, 3, 10, 8192, 100_000])
def test_channel_and_window_together_hold_the_queue(queue: int) -> None:
    channel, window = split_queue(queue)
    assert channel >= 1
    assert window >= 1
    assert channel + window == max(queue, 2)
