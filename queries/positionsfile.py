"""The broker's end-of-day positions file: CSV with columns ``account_id,symbol,quantity``.

A header row naming those three columns is required (other columns are ignored, a
UTF-8 byte-order mark is accepted). Account ids and symbols are kept as text
(leading zeros matter); quantities are exact decimals. Anything else — a missing
file or column, an empty cell, a quantity that is not a finite decimal, the same
account and symbol twice — is a :class:`QueryError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final

from .errors import QueryError

COLUMNS: Final = ("account_id", "symbol", "quantity")


def read_positions(path: str | Path) -> dict[tuple[str, str], Decimal]:
    """``{(account_id, symbol): quantity}`` from the broker's positions file."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            text = handle.read()

    except FileNotFoundError:
        raise QueryError(f"positions file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QueryError(f"cannot read positions file {path}: {exc}") from None
    return _parse(path, text)


def _parse(path: Path, text: str) -> dict[tuple[str, str], Decimal]:
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise QueryError(f"{path}: not valid CSV: {exc}") from None
    if not rows:
        raise QueryError(f"{path}: empty positions file (expected a header {','.join(COLUMNS)})")
    header = [name.strip() for name in rows[0]]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise QueryError(
            f"{path}: line 1: header lacks {', '.join(missing)} (expected {','.join(COLUMNS)})"
        )
    index = [header.index(name) for name in COLUMNS]
    positions: dict[tuple[str, str], Decimal] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise QueryError(f"{path}: line {number}: {len(row)} fields, header has {len(header)}")
        account, symbol, text = (row[i].strip() for i in index)
        if not account or not symbol:
            raise QueryError(f"{path}: line {number}: empty account_id or symbol")
        try:
            quantity = Decimal(text)
        except InvalidOperation:
            raise QueryError(f"{path}: line {number}: quantity {text!r} is not a decimal") from None
        if not quantity.is_finite():
            raise QueryError(f"{path}: line {number}: quantity {text!r} is not a finite decimal")
        if (account, symbol) in positions:
            raise QueryError(f"{path}: line {number}: {account} {symbol} appears twice")
        positions[(account, symbol)] = quantity
    return positions
