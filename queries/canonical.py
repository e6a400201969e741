"""The chain's canonical encoding of whole Arrow batches at once.

:func:`recorder.chain.canonical_bytes` encodes one row; verifying a day of a million
rows that way builds a dict and walks ten fields per row in Python. Here each field is
encoded as a column with Arrow compute kernels (and :mod:`array` for the big-endian
integers) and the pieces are joined row-wise, so the only per-row Python work left is
the SHA-256 of the chain itself (:func:`recorder.chain.verify_encoded`).

The bytes are exactly :func:`recorder.chain.canonical_bytes` of each row (version 1,
described there); the test suite checks it on random rows. Pure: no I/O.
"""

from __future__ import annotations

import array
import sys
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from recorder.chain import CHAIN_FIELDS, ENCODING_TAG

_NULL: Final = pa.scalar(b"N", pa.binary())
_INT: Final = pa.scalar(b"I", pa.binary())
_TEXT: Final = pa.scalar(b"S", pa.binary())
_TRUE: Final = pa.scalar(b"T", pa.binary())
_FALSE: Final = pa.scalar(b"F", pa.binary())
_NOTHING: Final = pa.scalar(b"", pa.binary())
_LITTLE_ENDIAN: Final = sys.byteorder == "little"
#: An :mod:`array` typecode of unsigned 32-bit integers on this platform.
_UINT32: Final = next(code for code in "IL" if array.array(code).itemsize == 4)


def _big_endian(values: pa.Array, typecode: str, width: int) -> pa.Array:
    """Each value of an integer column as ``width`` big-endian bytes (nulls as zeros)."""
    filled = pc.fill_null(values, 0)
    data = filled.buffers()[1]
    assert data is not None  # a primitive column always has a data buffer
    start = filled.offset * width
    numbers = array.array(typecode)
    numbers.frombytes(memoryview(data)[start : start + len(filled) * width])
    if _LITTLE_ENDIAN:
        numbers.byteswap()
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(filled), [None, pa.py_buffer(numbers.tobytes())]
    )
    return fixed.cast(pa.binary())


def _or_null(values: pa.Array, encoded: pa.Array) -> pa.Array:
    if values.null_count == 0:
        return encoded
    return pc.if_else(pc.is_null(values), _NULL, encoded)


def _integer(values: pa.Array) -> pa.Array:
    encoded = pc.binary_join_element_wise(
        _INT, _big_endian(values.cast(pa.int64()), "q", 8), _NOTHING
    )
    return _or_null(values, encoded)


def _text(values: pa.Array) -> pa.Array:
    if pa.types.is_date32(values.type) or pa.types.is_date64(values.type):
        values = values.cast(pa.string())  # ISO YYYY-MM-DD, as recorder.chain encodes dates
    data = values.cast(pa.binary())
    lengths = _big_endian(pc.binary_length(data).cast(pa.uint32()), _UINT32, 4)
    return _or_null(values, pc.binary_join_element_wise(_TEXT, lengths, data, _NOTHING))


def _boolean(values: pa.Array) -> pa.Array:
    return _or_null(values, pc.if_else(values, _TRUE, _FALSE))


def canonical_array(batch: pa.RecordBatch) -> pa.Array:
    """The canonical encoding of every row of ``batch`` (binary, one value per row).

    ``batch`` holds the columns named in :data:`recorder.chain.CHAIN_FIELDS` with the
    store's types (strings, int64, date32, bool); other columns are ignored. Raises
    KeyError for a missing column.
    """
    names = batch.schema.names
    pieces: list[pa.Array] = [pa.repeat(pa.scalar(ENCODING_TAG, pa.binary()), batch.num_rows)]
    for name in CHAIN_FIELDS:
        if name not in names:
            raise KeyError(name)
        column = batch.column(names.index(name))
        if pa.types.is_boolean(column.type):
            pieces.append(_boolean(column))
        elif pa.types.is_integer(column.type):
            pieces.append(_integer(column))
        else:
            pieces.append(_text(column))
    return pc.binary_join_element_wise(*pieces, _NOTHING)
