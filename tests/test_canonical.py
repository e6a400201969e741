"""The column-wise canonical encoding equals the row-wise reference, byte for byte."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from queries.canonical import canonical_array
from queries.contract import EVENTS_SCHEMA
from queries.verify import check_interleaved, check_rows
from recorder.chain import GENESIS_HASH, canonical_bytes, next_hash, verify_chain, verify_encoded

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=40)  # any code point, including NUL and astral ones

ROWS = st.fixed_dictionaries(
    {
        "id": st.integers(min_value=1, max_value=2**40),
        "account_id": TEXT,
        "session_id": TEXT,
        "received_at_ns": INT64,
        "server_ts_ms": st.none() | INT64,
        "sequence": st.none() | INT64,
        "msg_type": st.none() | TEXT,
        "trading_day": st.dates(min_value=dt.date(1970, 1, 1), max_value=dt.date(9999, 12, 31)),
        "replayed": st.booleans(),
        "raw_kind": st.sampled_from(["text", "binary", "text-base64"]),
        "raw": st.text(max_size=600),
        "chain_hash": st.just(GENESIS_HASH),
    }
)


DAY = dt.date(2024, 6, 10)


def _batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows, schema=EVENTS_SCHEMA)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(ROWS, min_size=1, max_size=12), cut=st.integers(min_value=0, max_value=11))
def test_equals_canonical_bytes_row_by_row(rows: list[dict[str, Any]], cut: int) -> None:
    batch = _batch(rows)
    assert canonical_array(batch).to_pylist() == [canonical_bytes(row) for row in rows]
    # A slice of a batch starts at an offset into the same buffers: still exact.
    cut = min(cut, len(rows) - 1)
    tail = batch.slice(cut)
    assert canonical_array(tail).to_pylist() == [canonical_bytes(row) for row in rows[cut:]]


def test_values_whose_big_endian_bytes_end_in_zeros() -> None:
    # Lengths like 256 and integers like 2**8 end in a zero byte: nothing may trim them.
    row = {
        "id": 1, "account_id": "0042", "session_id": "s", "received_at_ns": 256,
        "server_ts_ms": -(2**63), "sequence": 0, "msg_type": None,
        "trading_day": dt.date(2024, 6, 10), "replayed": False, "raw_kind": "text",
        "raw": "x" * 256, "chain_hash": GENESIS_HASH,
    }  # fmt: skip
    assert canonical_array(_batch([row])).to_pylist() == [canonical_bytes(row)]


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(ROWS, min_size=1, max_size=8), bad=st.integers(min_value=0, max_value=7))
def test_fast_verifier_reports_what_the_reference_reports(
    rows: list[dict[str, Any]], bad: int
) -> None:
    previous = GENESIS_HASH
    for row in rows:
        row["chain_hash"] = previous = next_hash(previous, row)
    bad = min(bad, len(rows) - 1)
    rows[bad]["chain_hash"] = "f" * 64  # a tampered stored hash
    canonicals = canonical_array(_batch(rows)).to_pylist()
    fast = verify_encoded(
        zip(canonicals, [r["chain_hash"] for r in rows], strict=True), [r["id"] for r in rows]
    )
    reference = verify_chain(rows)
    assert fast == reference
    assert fast[0] is not None
    assert fast[0].row_id == rows[bad]["id"]


ACCOUNTS = ("100000", "0042", "7")


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(st.sampled_from(ACCOUNTS), ROWS), min_size=1, max_size=30),
    tamper=st.none() | st.integers(min_value=0),
    how=st.sampled_from(["raw", "split"]),
    size=st.integers(min_value=1, max_value=8),
)
def test_interleaved_accounts_in_one_pass_agree_with_each_account_alone(
    rows: list[tuple[str, dict[str, Any]]], tamper: int | None, how: str, size: int
) -> None:
    """:func:`check_interleaved` (the evening's one pass over every account) says of each
    account what :func:`check_rows` says of it alone, or hands it to that reference."""
    anchors = {a: hashlib.sha256(a.encode()).hexdigest() for a in ACCOUNTS}  # earlier rows
    heads, stored = dict(anchors), []
    for n, (account, row) in enumerate(rows, start=1):
        row = {**row, "id": n, "account_id": account}
        heads[account] = row["chain_hash"] = next_hash(heads[account], row)
        stored.append(row)
    if tamper is not None:
        at = tamper % len(stored)
        victim = stored[at]
        if how == "raw" or at + 1 == len(stored):
            victim["raw"] += "!"  # its stored hash no longer matches
        else:  # half of its hash moved to the next row: joined, the hashes read the same
            after = stored[at + 1]
            head, tail = victim["chain_hash"][:32], victim["chain_hash"][32:]
            victim["chain_hash"], after["chain_hash"] = head, tail + after["chain_hash"]
    batches = [_batch(stored[i : i + size]) for i in range(0, len(stored), size)]
    asked: list[tuple[str, int]] = []

    def anchor(account: str, first_id: int) -> str:
        asked.append((account, first_id))
        return anchors[account]

    chains, broken = check_interleaved(batches, anchor, DAY)
    assert sorted(chains) == sorted({a for a, _ in rows})
    for account, chain in chains.items():
        mine = [r for r in stored if r["account_id"] == account]
        reference = check_rows(account, [_batch(mine)], anchors[account], DAY)
        assert (account in broken) == (not reference.ok)
        assert (account, mine[0]["id"]) in asked
        if account not in broken:
            assert chain.check == reference
            for n, row in enumerate(mine, start=1):  # every row's hash, as the reference's
                seen: dict[int, tuple[int, str] | None] = {row["id"]: None}
                check_rows(account, [_batch(mine)], anchors[account], DAY, seen=seen)
                expected = seen[row["id"]]
                assert expected is not None
                assert expected[0] == n
                assert chain.hash_at(row["id"]) == expected
            assert chain.hash_at(10**9) is None
