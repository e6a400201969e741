"""Pure parsing of a received frame's envelope, and how its raw bytes are stored.

Only the envelope is read (``payload.type``, ``sequence``, ``timestamp``, and for
acks/notices ``success``/``details``); the rest of the frame is never interpreted
here. :func:`parse_envelope` never raises: a frame that is not JSON, not an object,
or has fields of unexpected types still yields an :class:`Envelope`, with the
unusable parts set to None, so the frame is stored all the same.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Final, NamedTuple

import msgspec

from .instants import INT64_MAX, INT64_MIN

#: ``raw_kind`` values: how ``events.raw`` holds the frame.
RAW_TEXT: Final = "text"  # a text frame, stored exactly as received
RAW_BINARY: Final = "binary"  # a binary frame, stored as standard base64 of its bytes
RAW_TEXT_BASE64: Final = "text-base64"  # a text frame holding U+0000, which PostgreSQL
# text cannot store: kept as base64 of its UTF-8 bytes so nothing is lost

ACK_TYPE: Final = "subscribe-activity-ack"
REPLAY_COMPLETE_TYPE: Final = "replay-complete"
ERROR_NOTICE_TYPE: Final = "error-notice"
HEARTBEAT_TYPE: Final = "heartbeat"


class Envelope(NamedTuple):
    """What the recorder needs to know about a frame; None where absent or unusable.

    A named tuple: built once per received frame, it must be cheap to create.
    """

    msg_type: str | None
    sequence: int | None
    server_ts_ms: int | None
    success: bool | None = None  # ``payload.success`` of an ack
    details: str | None = None  # ``payload.details`` of an ack or error-notice

    @property
    def parsed(self) -> bool:
        """True when the frame was a JSON object with a string ``payload.type``."""
        return self.msg_type is not None


UNPARSEABLE: Final = Envelope(None, None, None)


def _int64(value: Any) -> int | None:
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:  # the common case, first
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        return value
    return None


class _Payload(msgspec.Struct):
    type: str
    success: bool | None = None
    details: str | None = None


class _Document(msgspec.Struct):
    timestamp: int | None = None
    sequence: int | None = None
    payload: _Payload | None = None


# Decodes only the envelope's fields (unknown fields are skipped), while still
# validating that the whole frame is JSON: ten times cheaper than json.loads. The
# fields are typed, so msgspec checks them in C; a frame whose envelope has other
# types (a float timestamp, a numeric type, ...) fails validation and goes through
# the reference reader, which decides what is usable.
_decode_fast = msgspec.json.Decoder(_Document).decode
_new_tuple = tuple.__new__


def parse_envelope(frame: str | bytes) -> Envelope:
    """Read the envelope of a text (str) or binary (bytes) frame. Never raises.

    The fast path (msgspec) handles well-formed frames; anything it refuses (not
    JSON by its strict reading, fields of other types, a payload that is not an
    object, ...) goes through :func:`parse_envelope_slow`, the reference, so both
    agree on every input. Binary frames (Studio sends none) always take the reference
    path: msgspec does not check the UTF-8 of the parts it skips, so it would read an
    envelope from bytes that are not valid JSON text.
    """
    if not isinstance(frame, str):
        return parse_envelope_slow(frame)
    try:
        document = _decode_fast(frame)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return parse_envelope_slow(frame)
    payload = document.payload
    if payload is None:
        return parse_envelope_slow(frame)
    timestamp = document.timestamp
    if timestamp is not None and not INT64_MIN <= timestamp <= INT64_MAX:
        timestamp = None
    sequence = document.sequence
    if sequence is not None and not INT64_MIN <= sequence <= INT64_MAX:
        sequence = None
    details = payload.details
    if not storable(payload.type) or (details is not None and not storable(details)):
        return parse_envelope_slow(frame)  # the reference decides what to keep of them
    # tuple.__new__: the NamedTuple's own __new__ is Python code, a quarter of this path.
    return _new_tuple(Envelope, (payload.type, sequence, timestamp, payload.success, details))


def parse_envelope_slow(frame: str | bytes) -> Envelope:
    """The reference envelope reader (the standard library's json). Never raises."""
    try:
        document = json.loads(frame)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return UNPARSEABLE
    if not isinstance(document, dict):
        return UNPARSEABLE
    payload = document.get("payload")
    msg_type = payload.get("type") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or not isinstance(msg_type, str) or not storable(msg_type):
        return Envelope(None, _int64(document.get("sequence")), _int64(document.get("timestamp")))
    success = payload.get("success")
    details = payload.get("details")
    return Envelope(
        msg_type=msg_type,
        sequence=_int64(document.get("sequence")),
        server_ts_ms=_int64(document.get("timestamp")),
        success=success if isinstance(success, bool) else None,
        details=storable_text(details) if isinstance(details, str) else None,
    )


def storable(text: str) -> bool:
    """Whether a string decoded from a frame can go into a text column as it is.

    JSON escapes can spell what no database text can hold: a lone surrogate
    (``"\\udc00"``, which has no UTF-8 encoding) or U+0000 (which PostgreSQL text
    refuses). A frame's ``type`` like that is treated as absent (the frame counts as
    unparseable; its raw text is stored all the same), so one hostile frame cannot
    make every batch it is in fail to insert.
    """
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable_text(details: str) -> str:
    """``details`` with what a text column cannot hold spelled as backslash escapes."""
    if storable(details):
        return details
    escaped = details.encode("utf-8", "backslashreplace").decode("utf-8")
    return escaped.replace("\x00", "\\x00")


def encode_raw(frame: str | bytes) -> tuple[str, str]:
    """``(raw_kind, raw)`` for storing ``frame`` losslessly in a text column."""
    if isinstance(frame, bytes | bytearray | memoryview):
        return RAW_BINARY, base64.b64encode(bytes(frame)).decode("ascii")
    if "\x00" in frame:
        return RAW_TEXT_BASE64, base64.b64encode(frame.encode("utf-8")).decode("ascii")
    return RAW_TEXT, frame


def decode_raw(raw_kind: str, raw: str) -> str | bytes:
    """The frame as received, from its stored ``(raw_kind, raw)``. Raises ValueError if unknown."""
    if raw_kind == RAW_TEXT:
        return raw
    if raw_kind == RAW_BINARY:
        return base64.b64decode(raw, validate=True)
    if raw_kind == RAW_TEXT_BASE64:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    raise ValueError(f"unknown raw_kind {raw_kind!r}")
