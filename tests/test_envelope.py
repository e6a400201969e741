import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.envelope import (
    RAW_BINARY,
    RAW_TEXT,
    RAW_TEXT_BASE64,
    UNPARSEABLE,
    decode_raw,
    encode_raw,
    parse_envelope,
    parse_envelope_slow,
)

ORDER = (
    '{"timestamp":1718031000456,"sequence":42,"payload":{"type":"order-update","data":'
    '{"order_id":"12390213","strategy":{"type":"twap"},"symbol":"AAPL"}}}'
)


def test_sequenced_frame() -> None:
    env = parse_envelope(ORDER)
    assert (env.msg_type, env.sequence, env.server_ts_ms) == ("order-update", 42, 1718031000456)
    assert env.parsed


def test_ack_and_error_notice_fields() -> None:
    ack = parse_envelope(
        '{"timestamp":1,"payload":{"type":"subscribe-activity-ack","success":false,"details":"no"}}'
    )
    assert (ack.msg_type, ack.success, ack.details, ack.sequence) == (
        "subscribe-activity-ack",
        False,
        "no",
        None,
    )
    notice = parse_envelope('{"payload":{"type":"error-notice","details":"Auth expired"}}')
    assert (notice.msg_type, notice.details, notice.server_ts_ms) == (
        "error-notice",
        "Auth expired",
        None,
    )


def test_unknown_type_and_fields_are_kept_as_parsed() -> None:
    env = parse_envelope('{"channel":"x","timestamp":5,"payload":{"type":"brand-new","z":1}}')
    assert env.msg_type == "brand-new"
    assert env.server_ts_ms == 5


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "not json",
        "[1,2]",
        '"str"',
        "null",
        '{"payload":{}}',
        '{"payload":{"type":7}}',
        '{"payload":"x"}',
        "[" * 100_000,
        b"\xff\xfe\x00garbage",
    ],
)
def test_unparseable_frames_give_null_type(frame: str | bytes) -> None:
    assert parse_envelope(frame).msg_type is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, None), ("42", None), (42.0, 42), (42.5, None), (2**63, None), (-(2**63), -(2**63))],
)
def test_sequence_must_be_a_64_bit_integer(value: object, expected: int | None) -> None:
    frame = json.dumps({"sequence": value, "payload": {"type": "order-update"}})
    assert parse_envelope(frame).sequence == expected


def test_binary_frame_with_json_is_parsed() -> None:
    assert parse_envelope(ORDER.encode()).sequence == 42


def test_raw_encoding_round_trips_and_flags_kind() -> None:
    assert encode_raw("héllo ✓") == (RAW_TEXT, "héllo ✓")
    kind, raw = encode_raw(b"\x00\xffbin")
    assert kind == RAW_BINARY
    assert base64.b64decode(raw) == b"\x00\xffbin"
    kind, raw = encode_raw('{"a":"\x00"}')
    assert kind == RAW_TEXT_BASE64
    assert decode_raw(kind, raw) == '{"a":"\x00"}'
    with pytest.raises(ValueError, match="unknown raw_kind"):
        decode_raw("weird", "x")


@given(st.one_of(st.text(), st.binary()))
def test_never_raises_on_any_text_or_bytes(frame: str | bytes) -> None:
    env = parse_envelope(frame)
    assert env is UNPARSEABLE or env.msg_type is None or isinstance(env.msg_type, str)
    kind, raw = encode_raw(frame)
    assert decode_raw(kind, raw) == frame


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_never_raises_on_any_json(document: object) -> None:
    frame = json.dumps({"payload": document, "sequence": document, "timestamp": document})
    env = parse_envelope(frame)
    assert env.sequence is None or isinstance(env.sequence, int)


@given(st.one_of(st.text(), st.binary(), JSON_VALUES.map(json.dumps)))
def test_fast_path_agrees_with_the_reference_on_anything(frame: str | bytes) -> None:
    assert parse_envelope(frame) == parse_envelope_slow(frame)


@given(JSON_VALUES, JSON_VALUES, JSON_VALUES)
def test_fast_path_agrees_on_envelope_shaped_documents(
    payload: object, sequence: object, timestamp: object
) -> None:
    for document in (
        {"timestamp": timestamp, "sequence": sequence, "payload": payload},
        {
            "payload": {
                "type": "order-update",
                "success": payload,
                "details": sequence,
                "data": timestamp,
            },
            "sequence": sequence,
        },
        {"payload": {"type": payload}, "timestamp": timestamp},
    ):
        frame = json.dumps(document)
        assert parse_envelope(frame) == parse_envelope_slow(frame)


@pytest.mark.parametrize(
    "frame",
    [
        '{"payload":{"type":"a"},"sequence":NaN}',
        '{"payload":{"type":"a","type":"b"}}',
        '{"sequence":1,"sequence":2,"payload":{"type":"x"}}',
        '{"payload":{"type":"x"}} ',
        '\\ufeff{"payload":{"type":"x"}}',
        '{"payload":{"type":"x"},"sequence":1e3}',
        '{"payload":{"type":"x"},"sequence":123456789012345678901234567890}',
    ],
)
def test_fast_path_agrees_on_json_corner_cases(frame: str) -> None:
    assert parse_envelope(frame) == parse_envelope_slow(frame)
