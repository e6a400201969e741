"""The text of a checkpoint: what a signed note attests about one account's chains.

A checkpoint says, for one account of one store, how many rows its ``events`` and
``connection_log`` chains hold, the id of the last of each and the chain hash at
that row, and when this was said::

    studio-recorder checkpoint v1 <store id>
    account <percent-encoded account id>
    events <count> <last id> <head: 64 lower-case hex>
    log <count> <last id> <head>
    at <unix time in ns>

Each line ends in a newline. :meth:`Checkpoint.parse` accepts exactly what
:meth:`Checkpoint.text` writes, so a checkpoint has one spelling and a signature
over it means one thing. Pure: no I/O, no signing (see :mod:`recorder.signing`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .chain import GENESIS_HASH
from .percent import SAFE, percent_decode, percent_encode

HEADER: Final = "studio-recorder checkpoint v1"
#: Counts, ids and times are signed 64-bit integers in the store.
MAX_INT: Final = 2**63 - 1

_INT: Final = r"(0|[1-9][0-9]*)"
_HEAD: Final = r"([0-9a-f]{64})"
_STORE_ID: Final = r"([A-Za-z0-9._-]+)"
#: Each line: (name, pattern, its shape in error messages).
_LINES: Final = (
    ("header", re.compile(rf"{re.escape(HEADER)} {_STORE_ID}"), f"{HEADER} STORE_ID"),
    ("account", re.compile(r"account ((?:[A-Za-z0-9._-]|%[0-9A-F]{2})+)"), "account ACCOUNT"),
    ("events", re.compile(rf"events {_INT} {_INT} {_HEAD}"), "events COUNT LAST_ID HEAD"),
    ("log", re.compile(rf"log {_INT} {_INT} {_HEAD}"), "log COUNT LAST_ID HEAD"),
    ("at", re.compile(rf"at {_INT}"), "at UNIX_NS"),
)  # fmt: skip


class CheckpointFormatError(ValueError):
    """A text is not a checkpoint (one line saying which line is wrong and how)."""


def _check_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise ValueError(f"{name} must be an integer from 0 to 2**63-1 (got {value!r})")


@dataclass(frozen=True)
class ChainState:
    """One chain of one account at one row: rows so far, last row's id, chain hash there."""

    count: int
    last_id: int
    head: str

    def __post_init__(self) -> None:
        _check_int("count", self.count)
        _check_int("last_id", self.last_id)
        if not isinstance(self.head, str) or re.fullmatch(_HEAD, self.head) is None:
            raise ValueError(f"head must be 64 lower-case hex digits (got {self.head!r})")


#: A chain that holds no row yet.
GENESIS: Final = ChainState(count=0, last_id=0, head=GENESIS_HASH)


@dataclass(frozen=True)
class Checkpoint:
    """What one checkpoint attests; :meth:`text` is what gets signed.

    Raises ValueError on construction for a value the text could not carry (an empty
    or unsafe store id, an empty account id, an integer out of range).
    """

    store_id: str
    account_id: str
    events: ChainState
    log: ChainState
    at_ns: int

    def __post_init__(self) -> None:
        if not self.store_id or not set(self.store_id) <= SAFE:
            raise ValueError(f"store_id must be non-empty [A-Za-z0-9._-] (got {self.store_id!r})")
        if not self.account_id:
            raise ValueError("account_id must not be empty")
        _check_int("at_ns", self.at_ns)

    def text(self) -> str:
        """The checkpoint's text, five lines each ending in a newline."""
        return (
            f"{HEADER} {self.store_id}\n"
            f"account {percent_encode(self.account_id)}\n"
            f"events {self.events.count} {self.events.last_id} {self.events.head}\n"
            f"log {self.log.count} {self.log.last_id} {self.log.head}\n"
            f"at {self.at_ns}\n"
        )

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """The checkpoint whose :meth:`text` is exactly ``text``.

        Raises CheckpointFormatError naming the first line that is not as
        :meth:`text` writes it (wrong shape, signs or leading zeros, upper-case hex, an
        integer above 2**63-1, an account not canonically percent-encoded).
        """
        if not text.endswith("\n"):
            raise CheckpointFormatError("not a checkpoint: the text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) != len(_LINES):
            raise CheckpointFormatError(
                f"not a checkpoint: {len(lines)} lines, expected {len(_LINES)}"
            )
        fields: dict[str, tuple[str, ...]] = {}
        for number, (line, (key, pattern, shape)) in enumerate(zip(lines, _LINES, strict=True), 1):
            match = pattern.fullmatch(line)
            if match is None:
                raise CheckpointFormatError(
                    f"checkpoint line {number} must be '{shape}' (got {line[:80]!r})"
                )
            fields[key] = match.groups()
        try:
            account_id = percent_decode(fields["account"][0])
            events, log = (
                ChainState(int(count), int(last_id), head)
                for count, last_id, head in (fields["events"], fields["log"])
            )
            return cls(
                store_id=fields["header"][0],
                account_id=account_id,
                events=events,
                log=log,
                at_ns=int(fields["at"][0]),
            )
        except ValueError as exc:
            raise CheckpointFormatError(f"not a checkpoint: {exc}") from None
