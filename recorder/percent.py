"""Percent-encoding of identifiers: one safe token for any string, defined once.

An account id may hold any character; where it must become one path segment (an
export's file name) or one token of a line (a checkpoint's ``account …`` line), its
UTF-8 bytes outside ``[A-Za-z0-9._-]`` are written as ``%XX`` with upper-case hex. The
encoding is canonical, so :func:`percent_decode` accepts exactly what
:func:`percent_encode` writes and nothing else: a text that could be spelt two ways
could be signed one way and compared the other.
"""

from __future__ import annotations

import re
from typing import Final

#: Bytes written as themselves; every other byte becomes ``%XX``.
SAFE: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")

_ENCODED: Final = re.compile(r"(?:[A-Za-z0-9._-]|%[0-9A-F]{2})*")


def percent_encode(text: str) -> str:
    """``text`` with its UTF-8 bytes outside ``[A-Za-z0-9._-]`` written as ``%XX``.

    ``"0042"`` stays ``"0042"``, ``"a/b"`` becomes ``"a%2Fb"``, ``"é"`` becomes
    ``"%C3%A9"``, ``"%"`` becomes ``"%25"``. ``.`` and ``..`` stay as they are: a
    caller that makes path segments encodes those itself. Raises UnicodeEncodeError
    (a ValueError) for a lone surrogate, which has no UTF-8 form.
    """
    return "".join(
        char if char in SAFE else "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
        for char in text
    )


def percent_decode(encoded: str) -> str:
    """The text that :func:`percent_encode` turned into ``encoded``.

    Raises ValueError when ``encoded`` is not exactly what :func:`percent_encode`
    writes: a byte outside the safe set left as is, lower-case hex, a ``%`` without
    two hex digits, bytes that are not UTF-8, or a safe character written as ``%XX``.
    """
    if _ENCODED.fullmatch(encoded) is None:
        raise ValueError("not percent-encoded: only [A-Za-z0-9._-] and %XX (upper-case hex)")
    data = bytearray()
    index = 0
    while index < len(encoded):
        if encoded[index] == "%":
            data.append(int(encoded[index + 1 : index + 3], 16))
            index += 3
        else:
            data += encoded[index].encode("ascii")
            index += 1
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("percent-encoded bytes are not UTF-8") from None
    if percent_encode(text) != encoded:
        raise ValueError("not canonically percent-encoded: a safe character is written as %XX")
    return text
