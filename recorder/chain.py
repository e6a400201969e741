"""The per-account hash chain that makes the store tamper-evident.

For each account, rows in ``id`` order form a chain::

    chain_hash[0] = sha256(GENESIS ‖ canonical(row[0]))
    chain_hash[n] = sha256(chain_hash[n-1] ‖ canonical(row[n]))

(hashes concatenated as their 32 raw bytes, stored as 64 lower-case hex digits).
Changing any byte of a recorded field, deleting, inserting or reordering rows
changes every later hash, so recomputing the chain detects it. ``id`` itself is
not hashed: it is assigned by the database, and the chain already fixes the order.

Canonical encoding, version 1 (one pure function, used by the writer and every
verifier alike): the ASCII tag ``srec1`` followed by each field of
:data:`CHAIN_FIELDS` in that order, each as one type byte and a value:

* ``N`` — null (no value follows)
* ``I`` + 8 bytes — a signed 64-bit big-endian integer
* ``T`` / ``F`` — boolean true / false
* ``S`` + 4-byte big-endian length + UTF-8 bytes — a string (dates as ISO ``YYYY-MM-DD``)

Length prefixes make the encoding unambiguous: no two different rows encode to
the same bytes.

``connection_log`` rows form a second chain per account, with the same genesis rule
and encoding, tagged ``slog1`` and over the fields of :data:`LOG_CHAIN_FIELDS`
(``session_id``, ``account_id``, ``at_ns``, ``event``, ``detail``): the tags keep
a log row from ever encoding like a frame.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .instants import INT64_MAX, INT64_MIN
from .records import FrameRecord, LogRecord

#: The hash the first row of every account's chain extends.
GENESIS_HASH: Final = "0" * 64
ENCODING_TAG: Final = b"srec1"
LOG_ENCODING_TAG: Final = b"slog1"

#: The recorded fields of an ``events`` row covered by the chain, in encoding order: the
#: fields of :class:`~recorder.records.FrameRecord` (every column but ``id`` and the hash).
CHAIN_FIELDS: Final[tuple[str, ...]] = FrameRecord._fields
#: The recorded fields of a ``connection_log`` row covered by its chain, in encoding order.
LOG_CHAIN_FIELDS: Final = tuple(f.name for f in dataclasses.fields(LogRecord))


def _encode_value(value: object, out: bytearray) -> None:
    if value is None:
        out += b"N"
    elif isinstance(value, bool):  # before int: bool is an int subclass
        out += b"T" if value else b"F"
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"integer {value} does not fit in 64 bits")
        out += b"I" + value.to_bytes(8, "big", signed=True)
    elif isinstance(value, str):
        data = value.encode("utf-8")
        out += b"S" + len(data).to_bytes(4, "big") + data
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        _encode_value(value.isoformat(), out)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} in a chain row")


def canonical_bytes(row: Mapping[Any, Any]) -> bytes:
    """Canonical encoding (version 1) of an ``events`` row's recorded fields.

    ``row`` must hold every name in :data:`CHAIN_FIELDS`; extra keys are ignored.
    Raises KeyError for a missing field, TypeError/ValueError for a value of the
    wrong type (a bug in the caller, never bad input from the wire).
    """
    return _canonical(row, ENCODING_TAG, CHAIN_FIELDS)


def canonical_log_bytes(row: Mapping[Any, Any]) -> bytes:
    """Canonical encoding (version 1) of a ``connection_log`` row's recorded fields
    (:data:`LOG_CHAIN_FIELDS`); errors as for :func:`canonical_bytes`."""
    return _canonical(row, LOG_ENCODING_TAG, LOG_CHAIN_FIELDS)


def _canonical(row: Mapping[Any, Any], tag: bytes, fields: Sequence[str]) -> bytes:
    out = bytearray(tag)
    for name in fields:
        _encode_value(row[name], out)
    return bytes(out)


#: A canonical encoder: :func:`canonical_bytes` or :func:`canonical_log_bytes`.
Encoder = Callable[[Mapping[Any, Any]], bytes]

_pack_int = struct.Struct(">cq").pack
_pack_len = struct.Struct(">cI").pack


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return _pack_len(b"S", len(data)) + data


@functools.lru_cache(maxsize=4096)
def _head(account_id: str, session_id: str) -> bytes:
    return ENCODING_TAG + _text(account_id) + _text(session_id)


@functools.lru_cache(maxsize=4096)
def _middle(msg_type: str | None, trading_day: dt.date, replayed: bool, raw_kind: str) -> bytes:
    kind = b"N" if msg_type is None else _text(msg_type)
    return kind + _text(trading_day.isoformat()) + (b"T" if replayed else b"F") + _text(raw_kind)


def canonical_frame(frame: FrameRecord) -> bytes:
    """:func:`canonical_bytes` of a frame record (the writer's fast path).

    A few times quicker than the generic encoder: the encodings of the fields shared by
    most frames of a session (account, session, type, day, flags) are cached. It must
    produce exactly the same bytes, which the test suite checks on random rows. Raises
    struct.error for an integer outside 64 bits.
    """
    (account_id, session_id, received_at_ns, server_ts_ms, sequence, msg_type,
     trading_day, replayed, raw_kind, raw) = frame  # fmt: skip
    data = raw.encode("utf-8")
    return b"".join(
        (
            _head(account_id, session_id),
            _pack_int(b"I", received_at_ns),
            b"N" if server_ts_ms is None else _pack_int(b"I", server_ts_ms),
            b"N" if sequence is None else _pack_int(b"I", sequence),
            _middle(msg_type, trading_day, replayed, raw_kind),
            _pack_len(b"S", len(data)),
            data,
        )
    )


def next_hash(previous_hex: str, row: Mapping[Any, Any], encode: Encoder = canonical_bytes) -> str:
    """The chain hash of ``row`` given the previous row's hash (or :data:`GENESIS_HASH`).

    ``encode`` is :func:`canonical_bytes` for ``events`` rows, :func:`canonical_log_bytes`
    for ``connection_log`` rows.
    """
    digest = hashlib.sha256(bytes.fromhex(previous_hex))
    digest.update(encode(row))
    return digest.hexdigest()


def chain_log_rows(
    rows: Iterable[Sequence[Any]], heads: dict[str, str] | None = None
) -> list[tuple[Any, ...]]:
    """``connection_log`` rows (values in :data:`LOG_CHAIN_FIELDS` order, any accounts, in
    insert order) with each account's chain hash appended; ``heads`` (account → hash of
    its last stored row, genesis when absent) is advanced in place."""
    heads = {} if heads is None else heads
    account_at = LOG_CHAIN_FIELDS.index("account_id")
    chained = []
    for values in rows:
        row = dict(zip(LOG_CHAIN_FIELDS, values, strict=True))
        account = values[account_at]
        heads[account] = next_hash(heads.get(account, GENESIS_HASH), row, canonical_log_bytes)
        chained.append((*values, heads[account]))
    return chained


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first row whose stored hash does not match the recomputed chain."""

    index: int  # position in the rows given to :func:`verify_chain`
    row_id: Any  # the row's ``id`` when it had one, else None
    expected: str
    stored: str


def verify_chain(
    rows: Iterable[Mapping[Any, Any]],
    previous_hex: str = GENESIS_HASH,
    resume: Mapping[Any, str] | None = None,
    encode: Encoder = canonical_bytes,
    *,
    seen: dict[Any, tuple[int, str] | None] | None = None,
) -> tuple[ChainBreak | None, str, int]:
    """Recompute a chain over ``rows`` (one account, ``id`` order).

    Returns ``(first break or None, last recomputed hash, rows checked)``. After a
    break the recomputation continues from the *stored* hash so that only the
    first bad row is reported, not every row after it. ``resume`` maps row ids to
    the hash their predecessor in the full chain had: for rows that are a subset
    of an account's chain (one trading day, with rows of another day in between).
    """
    ids: list[Any] = []

    def encoded() -> Iterator[tuple[bytes, str]]:
        for row in rows:
            ids.append(row.get("id"))
            yield encode(row), row["chain_hash"]

    return verify_encoded(encoded(), ids, previous_hex, resume, seen=seen)


def verify_encoded(
    rows: Iterable[tuple[bytes, str]],
    ids: Sequence[Any],
    previous_hex: str = GENESIS_HASH,
    resume: Mapping[Any, str] | None = None,
    *,
    seen: dict[Any, tuple[int, str] | None] | None = None,
) -> tuple[ChainBreak | None, str, int]:
    """:func:`verify_chain` over rows already encoded: ``(canonical bytes, stored hash)``.

    ``ids[i]`` is the ``id`` of the i-th row (None when unknown); it must be readable by
    the time row i is consumed (a list filled while ``rows`` is iterated will do). The
    verifier's fast path: callers that encode whole columns at once (Arrow) hand over
    the encodings and skip a dict per row. Same results as :func:`verify_chain`.

    ``seen`` maps the ids of rows to watch (a signed checkpoint's last row, say) to
    anything; each watched row's entry becomes ``(rows checked up to it, recomputed
    hash)``.
    """
    current = bytes.fromhex(previous_hex)
    count = 0
    first_break: ChainBreak | None = None
    sha256 = hashlib.sha256
    for index, (canonical, stored) in enumerate(rows):
        if resume and ids[index] in resume:
            current = bytes.fromhex(resume[ids[index]])
        digest = sha256(current)
        digest.update(canonical)
        current = digest.digest()
        expected = current.hex()
        count += 1
        if seen and ids[index] in seen:
            seen[ids[index]] = (count, expected)
        if expected != stored:
            if first_break is None:
                first_break = ChainBreak(index, ids[index], expected, stored)
            # Continue from the stored hash so one edited row is reported once, not
            # once per later row; a stored value that is not a hash cannot be chained.
            if _is_hash(stored):
                current = bytes.fromhex(stored)
    return first_break, current.hex(), count


def _is_hash(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 64:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True
