import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.chain import (
    CHAIN_FIELDS,
    GENESIS_HASH,
    canonical_bytes,
    canonical_frame,
    next_hash,
    verify_chain,
)


def row(n: int, raw: str | None = None) -> dict[str, Any]:
    return {
        "account_id": "100000",
        "session_id": "s-1",
        "received_at_ns": 1_718_030_400_123_000_000 + n,
        "server_ts_ms": 1_718_030_400_123 + n,
        "sequence": n,
        "msg_type": "order-update",
        "trading_day": dt.date(2024, 6, 10),
        "replayed": n % 2 == 0,
        "raw_kind": "text",
        "raw": raw
        if raw is not None
        else f'{{"sequence":{n},"payload":{{"type":"order-update"}}}}',
    }


def chained(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    previous = GENESIS_HASH
    out = []
    for i, r in enumerate(rows):
        previous = next_hash(previous, r)
        out.append({**r, "id": i + 1, "chain_hash": previous})
    return out


def test_known_vector_is_stable() -> None:
    # Pinned: changing the canonical encoding silently would orphan every stored chain.
    assert canonical_bytes(row(1)).startswith(b"srec1S\x00\x00\x00\x06100000S\x00\x00\x00\x03s-1I")
    assert next_hash(GENESIS_HASH, row(1)) == (
        "d2a66d0a62a8fe7aafc6a91bd340e5a2cc4a6e3cb797639f07d3a73bc192c806"
    )


def test_encoding_is_unambiguous_between_field_boundaries() -> None:
    a = {**row(1), "account_id": "ab", "session_id": "c"}
    b = {**row(1), "account_id": "a", "session_id": "bc"}
    assert canonical_bytes(a) != canonical_bytes(b)
    assert canonical_bytes({**row(1), "sequence": None}) != canonical_bytes(
        {**row(1), "sequence": 0}
    )
    assert canonical_bytes({**row(1), "msg_type": None}) != canonical_bytes(
        {**row(1), "msg_type": ""}
    )


def test_every_field_is_covered() -> None:
    base = canonical_bytes(row(1))
    changed = {
        "account_id": "100001",
        "session_id": "s-2",
        "received_at_ns": 1,
        "server_ts_ms": None,
        "sequence": 2,
        "msg_type": None,
        "trading_day": dt.date(2024, 6, 11),
        "replayed": True,
        "raw_kind": "binary",
        "raw": "x",
    }
    assert set(changed) == set(CHAIN_FIELDS)
    for name, value in changed.items():
        assert canonical_bytes({**row(1), name: value}) != base, name


def test_intact_chain_verifies() -> None:
    rows = chained([row(n) for n in range(1, 6)])
    broken, head, count = verify_chain(rows)
    assert broken is None
    assert head == rows[-1]["chain_hash"]
    assert count == 5


def test_changed_byte_is_detected_at_that_row() -> None:
    rows = chained([row(n) for n in range(1, 6)])
    rows[2] = {**rows[2], "raw": rows[2]["raw"].replace("order", "ordeR")}
    broken, _, _ = verify_chain(rows)
    assert broken is not None
    assert broken.row_id == 3


def test_removed_row_is_detected() -> None:
    rows = chained([row(n) for n in range(1, 6)])
    del rows[1]
    broken, _, _ = verify_chain(rows)
    assert broken is not None
    assert broken.row_id == 3  # the row after the hole no longer chains


def test_swapped_rows_are_detected() -> None:
    rows = chained([row(n) for n in range(1, 6)])
    rows[1], rows[2] = rows[2], rows[1]
    broken, _, _ = verify_chain(rows)
    assert broken is not None
    assert broken.index == 1


def test_inserted_row_is_detected() -> None:
    rows = chained([row(n) for n in range(1, 6)])
    forged = {**row(99), "id": 99, "chain_hash": next_hash(rows[1]["chain_hash"], row(99))}
    rows.insert(2, forged)  # even a correctly chained insert breaks the row after it
    broken, _, _ = verify_chain(rows)
    assert broken is not None
    assert broken.row_id == 3


def test_only_the_first_break_is_reported_and_chain_continues_from_stored() -> None:
    rows = chained([row(n) for n in range(1, 6)])
    rows[1] = {**rows[1], "sequence": 42}
    broken, head, count = verify_chain(rows)
    assert broken is not None
    assert broken.index == 1
    assert head == rows[-1]["chain_hash"]
    assert count == 5


def test_non_int64_and_unknown_types_are_refused() -> None:
    with pytest.raises(ValueError, match="64 bits"):
        canonical_bytes({**row(1), "sequence": 2**63})
    with pytest.raises(TypeError):
        canonical_bytes({**row(1), "sequence": 1.5})


@given(st.data())
def test_any_single_byte_change_of_raw_is_detected(data: st.DataObject) -> None:
    raws = data.draw(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=6))
    rows = chained([row(i, raw) for i, raw in enumerate(raws)])
    index = data.draw(st.integers(0, len(rows) - 1))
    encoded = bytearray(rows[index]["raw"].encode("utf-8"))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] ^= data.draw(st.integers(1, 255))
    try:
        tampered = encoded.decode("utf-8")
    except UnicodeDecodeError:  # a stored text column only holds valid text
        tampered = encoded.decode("latin-1")
    assert tampered != raws[index]
    rows[index] = {**rows[index], "raw": tampered}
    broken, _, _ = verify_chain(rows)
    assert broken is not None
    assert broken.index == index


INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


FRAME_FIELDS = st.tuples(
    st.text(),
    st.text(),
    INT64,
    st.none() | INT64,
    st.none() | INT64,
    st.none() | st.text(),
    st.dates(),
    st.booleans(),
    st.sampled_from(["text", "binary", "text-base64"]),
    st.text(),
)


@given(FRAME_FIELDS)
def test_fast_frame_encoding_equals_the_reference(fields: tuple[Any, ...]) -> None:
    row = dict(zip(CHAIN_FIELDS, fields, strict=True))
    assert canonical_frame(fields) == canonical_bytes(row)
