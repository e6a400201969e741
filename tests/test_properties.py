"""Property-based tests (hypothesis) of the pure parts, beyond the ones beside each module.

tests/test_envelope.py already checks that parsing never raises on any text or bytes and
that the fast path agrees with the reference on arbitrary input; tests/test_chain.py that a
byte flipped in ``raw`` is found; tests/test_tradingday.py that the trading day matches
zoneinfo on uniformly random instants. Here:

* envelope: real frames with random byte edits (the inputs a flaky network or a buggy
  server produce, close to valid JSON where the two parsers' paths differ), a model of
  what the envelope must say for any JSON document, and text vs its UTF-8 bytes;
* chain: a change of any single byte of any field (not only ``raw``), the deletion,
  insertion or swap of any rows, anywhere in the chain;
* trading day: instants around every DST transition of zones with awkward rules
  (transitions at midnight, 30-minute and negative DST), and day bounds that tile time.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from recorder.chain import (
    CHAIN_FIELDS,
    GENESIS_HASH,
    canonical_bytes,
    next_hash,
    verify_chain,
)
from recorder.envelope import parse_envelope, parse_envelope_slow, storable, storable_text
from recorder.simulator.flow import ActivityFlow
from recorder.simulator.ledger import DayLedger
from recorder.tradingday import TradingDayCache, day_bounds_ns, trading_day

PROPERTY = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])

# -- envelope ---------------------------------------------------------------------------------


@cache
def studio_frames() -> tuple[str, ...]:
    """Frames as the simulator sends them (every sequenced type), plus the unsequenced ones."""
    flow, ledger = ActivityFlow("100000", seed=5), DayLedger()
    frames = []
    for n in range(40):
        frame = ledger.append(flow.next_record(1_718_031_000_000 + n), 1_718_031_000_000 + n)
        if frame is not None:
            frames.append(frame)
    frames += [
        '{"timestamp":1718030400123,"payload":{"type":"subscribe-activity-ack",'
        '"account_id":"100000","success":true,"details":"Subscribed successfully"}}',
        '{"timestamp":1718030400310,"payload":{"type":"replay-complete"}}',
        '{"timestamp":1718031030000,"payload":{"type":"heartbeat"}}',
        '{"timestamp":1718030430001,"payload":{"type":"error-notice",'
        '"details":"Auth expired; please reconnect"}}',
    ]
    return tuple(frames)


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["replace", "insert", "delete"]), st.integers(0), st.integers(0, 255)
    ),
    min_size=1,
    max_size=4,
)


def edited(frame: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(frame)
    for kind, position, byte in edits:
        at = position % (len(data) + 1)
        if kind == "insert":
            data.insert(at, byte)
        elif data:
            at = min(at, len(data) - 1)
            if kind == "replace":
                data[at] = byte
            else:
                del data[at]
    return bytes(data)


@PROPERTY
@given(st.sampled_from(studio_frames()), EDITS)
# Found by this test: invalid UTF-8 in a key msgspec skips ("t\x80mestamp") was read as an
# envelope from a binary frame, while the reference (and JSON) refuses the frame.
@example('{"timestamp":1,"payload":{"type":"heartbeat"}}', [("replace", 3, 0x80)])
def test_damaged_real_frames_never_raise_and_both_parsers_agree(
    frame: str, edits: list[tuple[str, int, int]]
) -> None:
    damaged = edited(frame.encode(), edits)
    assert parse_envelope(damaged) == parse_envelope_slow(damaged)
    try:
        text = damaged.decode("utf-8")
    except UnicodeDecodeError:
        return  # a text frame is valid UTF-8 (the WebSocket layer refuses anything else)
    assert parse_envelope(text) == parse_envelope_slow(text)


def test_undamaged_real_frames_parse_fully() -> None:
    for frame in studio_frames():
        document = json.loads(frame)
        envelope = parse_envelope(frame)
        assert envelope.msg_type == document["payload"]["type"]
        assert envelope.sequence == document.get("sequence")
        assert envelope.server_ts_ms == document["timestamp"]


def _int64_model(value: object) -> int | None:
    """What the envelope keeps of a number: an int64, also when written as ``42.0``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value
    return None


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
MAYBE = st.just(...) | JSON_VALUES  # ``...``: the key is absent


def _put(document: dict[str, Any], key: str, value: object) -> None:
    if value is not ...:
        document[key] = value


@PROPERTY
@given(
    timestamp=MAYBE,
    sequence=MAYBE,
    msg_type=st.just(...) | st.text(max_size=20) | JSON_VALUES,
    success=MAYBE,
    details=MAYBE,
    extra=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3),
    payload_is_object=st.booleans(),
    ensure_ascii=st.booleans(),
)
def test_envelope_says_what_the_document_says(
    timestamp: object,
    sequence: object,
    msg_type: object,
    success: object,
    details: object,
    extra: dict[str, Any],
    payload_is_object: bool,
    ensure_ascii: bool,
) -> None:
    payload: dict[str, Any] = dict(extra)
    _put(payload, "type", msg_type)
    _put(payload, "success", success)
    _put(payload, "details", details)
    document: dict[str, Any] = {"channel": "activity", **extra}
    _put(document, "timestamp", timestamp)
    _put(document, "sequence", sequence)
    document["payload"] = payload if payload_is_object else [payload]
    frame = json.dumps(document, ensure_ascii=ensure_ascii)
    envelope = parse_envelope(frame)
    # A type no text column can hold (U+0000, a lone surrogate) counts as absent.
    typed = payload_is_object and isinstance(payload.get("type"), str) and storable(payload["type"])
    assert envelope.msg_type == (payload["type"] if typed else None)
    assert envelope.sequence == _int64_model(document.get("sequence"))
    assert envelope.server_ts_ms == _int64_model(document.get("timestamp"))
    got_success = payload.get("success") if typed else None
    assert envelope.success == (got_success if isinstance(got_success, bool) else None)
    got_details = payload.get("details") if typed else None
    assert envelope.details == (
        storable_text(got_details) if isinstance(got_details, str) else None
    )
    # The same frame received as a binary frame (its UTF-8 bytes) says the same.
    assert parse_envelope(frame.encode("utf-8")) == envelope
    assert parse_envelope_slow(frame) == envelope


# -- chain ------------------------------------------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
ROWS = st.fixed_dictionaries(
    {
        "account_id": st.text(min_size=1, max_size=8),
        "session_id": st.text(max_size=8),
        "received_at_ns": INT64,
        "server_ts_ms": st.none() | INT64,
        "sequence": st.none() | INT64,
        "msg_type": st.none() | st.text(max_size=12),
        "trading_day": st.dates(),
        "replayed": st.booleans(),
        "raw_kind": st.sampled_from(["text", "binary", "text-base64"]),
        "raw": st.text(max_size=40),
    }
)
CHAINS = st.lists(ROWS, min_size=1, max_size=8)


def chained(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    previous, out = GENESIS_HASH, []
    for i, row in enumerate(rows):
        previous = next_hash(previous, row)
        out.append({**row, "id": i + 1, "chain_hash": previous})
    return out


def _flip_byte(value: object, position: int, mask: int) -> object:
    """``value`` with one byte of its canonical content changed (same type where possible)."""
    if value is None:
        return 0  # a null that becomes a value
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        data = bytearray(value.to_bytes(8, "big", signed=True))
        data[position % 8] ^= mask
        return int.from_bytes(data, "big", signed=True)
    if isinstance(value, dt.date):
        return (
            value + dt.timedelta(days=1 + position % 300)
            if value < dt.date(9000, 1, 1)
            else (value - dt.timedelta(days=1 + position % 300))
        )
    assert isinstance(value, str)
    data = bytearray(value.encode("utf-8"))
    if not data:
        return "\x00"  # an empty string that gains a byte
    data[position % len(data)] ^= mask
    return data.decode("utf-8", errors="surrogateescape")


@PROPERTY
@given(
    CHAINS,
    st.integers(0),
    st.sampled_from(CHAIN_FIELDS),
    st.integers(0),
    st.integers(1, 255),
)
def test_a_change_of_any_byte_of_any_field_is_found_at_that_row(
    rows: list[dict[str, Any]], which: int, name: str, position: int, mask: int
) -> None:
    stored = chained(rows)
    index = which % len(stored)
    changed = _flip_byte(stored[index][name], position, mask)
    assert changed != stored[index][name]
    stored[index] = {**stored[index], name: changed}
    try:
        canonical_bytes(stored[index])
    except UnicodeEncodeError:  # a surrogate: no database column can hold it
        assume(False)
    broken, _, _ = verify_chain(stored)
    assert broken is not None
    assert broken.index == index


@PROPERTY
@given(ROWS, ROWS)
def test_the_canonical_encoding_is_injective(a: dict[str, Any], b: dict[str, Any]) -> None:
    assume(a != b)
    assert canonical_bytes(a) != canonical_bytes(b)


@PROPERTY
@given(CHAINS, st.integers(0), st.integers(1, 3))
def test_deleting_rows_anywhere_is_found(rows: list[dict[str, Any]], at: int, count: int) -> None:
    stored = chained(rows)
    start = at % len(stored)
    end = min(start + count, len(stored))
    head = stored[-1]["chain_hash"]
    kept = stored[:start] + stored[end:]
    broken, recomputed_head, checked = verify_chain(kept)
    if end < len(stored):
        assert broken is not None  # the row after the hole no longer chains
        assert broken.index == start
    else:
        # Rows cut off the end leave a valid but shorter chain: the head (kept by the
        # export manifest and by the store's newest row) no longer matches.
        assert broken is None
        assert recomputed_head != head
    assert checked == len(kept)


@PROPERTY
@given(CHAINS, st.integers(0), ROWS, st.booleans())
def test_inserting_a_row_anywhere_is_found_even_correctly_chained(
    rows: list[dict[str, Any]], at: int, forged: dict[str, Any], chain_it: bool
) -> None:
    stored = chained(rows)
    position = at % (len(stored) + 1)
    previous = stored[position - 1]["chain_hash"] if position else GENESIS_HASH
    fake_hash = next_hash(previous, forged) if chain_it else "f" * 64
    head = stored[-1]["chain_hash"]
    tampered = [
        *stored[:position],
        {**forged, "id": 99, "chain_hash": fake_hash},
        *stored[position:],
    ]
    broken, recomputed_head, _ = verify_chain(tampered)
    if chain_it and position == len(stored):
        assert broken is None  # an appended, correctly chained row extends the chain...
        assert recomputed_head != head  # ...but not to the head that was recorded
    else:
        assert broken is not None
        assert broken.index == (position + 1 if chain_it else position)


@PROPERTY
@given(CHAINS, st.integers(0), st.integers(0))
def test_swapping_two_rows_is_found(rows: list[dict[str, Any]], i: int, j: int) -> None:
    stored = chained(rows)
    i, j = sorted((i % len(stored), j % len(stored)))
    assume(canonical_bytes(stored[i]) != canonical_bytes(stored[j]))
    stored[i], stored[j] = stored[j], stored[i]
    broken, _, _ = verify_chain(stored)
    assert broken is not None
    assert broken.index == i


# -- trading day ------------------------------------------------------------------------------

#: New York (the default), and zones whose rules are awkward for a "calendar day":
#: DST at midnight (the day starts at 01:00: São Paulo until 2019, Havana, Santiago),
#: 30-minute DST (Lord Howe), negative DST (Dublin), a skipped calendar day (Apia, 2011).
ZONES = (
    "America/New_York",
    "America/Sao_Paulo",
    "America/Havana",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Europe/Dublin",
    "Pacific/Apia",
)


@cache
def transitions_ms(zone: str) -> tuple[int, ...]:
    """Every UTC offset change of ``zone`` between 1970 and 2040 (epoch ms), by bisection."""
    tz = ZoneInfo(zone)

    def offset(seconds: int) -> dt.timedelta | None:
        return dt.datetime.fromtimestamp(seconds, tz).utcoffset()

    found = []
    step = 86_400 * 7
    t = 0
    end = int(dt.datetime(2040, 1, 1, tzinfo=dt.UTC).timestamp())
    while t < end:
        if offset(t) != offset(t + step):
            low, high = t, t + step  # offset(low) != offset(high)
            while high - low > 1:
                middle = (low + high) // 2
                if offset(middle) == offset(low):
                    low = middle
                else:
                    high = middle
            found.append(high * 1000)
        t += step
    return tuple(found)


def test_zones_have_the_transitions_they_are_chosen_for() -> None:
    assert len(transitions_ms("America/New_York")) > 100
    for zone in ZONES:
        assert transitions_ms(zone), zone
    # A transition at local midnight: the day that starts at 01:00.
    sao_paulo = ZoneInfo("America/Sao_Paulo")
    midnight_starts = [
        t
        for t in transitions_ms("America/Sao_Paulo")
        if dt.datetime.fromtimestamp(t / 1000, sao_paulo).time() == dt.time(1, 0)
    ]
    assert midnight_starts


@st.composite
def around_transitions(draw: st.DrawFn) -> tuple[int, str]:
    zone = draw(st.sampled_from(ZONES))
    at = draw(st.sampled_from(transitions_ms(zone)))
    delta = draw(
        st.sampled_from([-1, 0, 1, -3_600_000, 3_600_000, -1_800_000, 1_800_000])
        | st.integers(-26 * 3_600_000, 26 * 3_600_000)
    )
    return at + delta, zone


@PROPERTY
@given(around_transitions())
def test_trading_day_matches_zoneinfo_around_every_dst_transition(case: tuple[int, str]) -> None:
    server_ms, zone = case
    tz = ZoneInfo(zone)
    expected = (
        (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=server_ms))
        .astimezone(tz)
        .date()
    )
    assert trading_day(server_ms, 0, tz) == expected
    assert trading_day(None, server_ms * 1_000_000, tz) == expected
    cache_ = TradingDayCache(tz)
    assert cache_(server_ms, 0) == expected
    assert cache_(server_ms, 0) == expected  # served from the cached bounds
    start, end = day_bounds_ns(expected, tz)
    assert start <= server_ms * 1_000_000 < end


@PROPERTY
@given(st.sampled_from(ZONES), st.dates(dt.date(1970, 1, 2), dt.date(2039, 12, 30)))
def test_day_bounds_tile_time_and_their_edges_belong_to_their_day(zone: str, day: dt.date) -> None:
    tz = ZoneInfo(zone)
    start, end = day_bounds_ns(day, tz)
    next_start, _ = day_bounds_ns(day + dt.timedelta(days=1), tz)
    assert end == next_start  # no gap, no overlap between consecutive days
    hours = (end - start) / 3.6e12
    assert 0 <= hours <= 25  # Apia skipped 2011-12-30 entirely (a day of zero length)
    if end > start:
        assert trading_day(start // 1_000_000, 0, tz) == day
        assert trading_day((end - 1) // 1_000_000, 0, tz) == day
    assert trading_day(end // 1_000_000, 0, tz) > day
