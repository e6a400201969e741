"""Conflicting duplicates: copies of one sequenced frame that disagree.

Replays re-deliver the whole day, so every sequence is stored once per session; the copies
are meant to be the same message. When two copies of ``(account, trading day, sequence)``
carry different payloads — a replay that disagrees with what was received live — the
analytics keep the first copy (lowest ``id``) and a compliance reviewer must hear about it.

What is compared is the frame's ``payload`` object, as JSON values (key order and spacing do
not matter; the protocol does not say whether a replayed frame keeps its top-level
``timestamp``, and newer channels add top-level fields such as ``channel``, so those may
differ between copies without a conflict); a frame without a JSON ``payload`` object is
compared byte for byte. Only copies whose stored bytes differ are parsed: DuckDB pairs the
copies when the workspace holds ``raw`` (or can read it from an export); a light workspace
of a store asks the store, which pairs them on its (account, day, sequence) index.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from itertools import groupby
from typing import Any, Final

from recorder.envelope import decode_raw

from .duck import Workspace

#: The ``events`` columns the check reads from an export.
COLUMNS: Final = ("id", "account_id", "sequence", "trading_day", "raw_kind", "raw")
#: At most this many conflicts are listed per account (all are counted).
LISTED_MAX: Final = 100

_DIFFERING_SQL: Final = """
WITH sequenced AS (
    SELECT id, account_id, sequence, raw_kind, raw FROM {events}
    WHERE sequence IS NOT NULL AND trading_day = ?
), differing AS (
    SELECT account_id, sequence FROM sequenced GROUP BY ALL
    HAVING count(DISTINCT raw_kind || ':' || raw) > 1
)
SELECT id, account_id, sequence, raw_kind, raw FROM sequenced
SEMI JOIN differing USING (account_id, sequence) ORDER BY id
"""


def conflicting_duplicates(ws: Workspace) -> dict[str, list[dict[str, Any]]]:
    """Per account, every sequence of the day whose stored copies disagree, in order
    (asked once per workspace: gaps and audit of one evening share it)."""
    if ws.day is None:
        return {}
    if "conflicts" not in ws.memo:
        ws.memo["conflicts"] = _conflicts(ws)
    found: dict[str, list[dict[str, Any]]] = ws.memo["conflicts"]
    return found


def _conflicts(ws: Workspace) -> dict[str, list[dict[str, Any]]]:
    assert ws.day is not None
    if ws.store is not None and not ws.payload:  # raw is not loaded: the store pairs them
        accounts = list(ws.accounts) if ws.filtered else None
        copies = ws.store.differing_copies(ws.day, accounts).to_pylist()
    else:
        sql = _DIFFERING_SQL.format(events=ws.events_with(COLUMNS))
        names = ("id", "account_id", "sequence", "raw_kind", "raw")
        copies = [dict(zip(names, row, strict=True)) for row in ws.rows(sql, [ws.day])]
    return conflicts_among(copies)


def conflicts_among(copies: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group stored copies (``id``, ``account_id``, ``sequence``, ``raw_kind``, ``raw``) by
    sequence and keep the sequences whose payloads differ."""
    found: dict[str, list[dict[str, Any]]] = {}
    key = lambda row: (str(row["account_id"]), int(row["sequence"]))  # noqa: E731
    for (account, sequence), group in groupby(sorted(copies, key=key), key=key):
        rows = sorted(group, key=lambda row: int(row["id"]))
        distinct = len({_payload(row["raw_kind"], row["raw"]) for row in rows})
        if distinct > 1:
            found.setdefault(account, []).append(
                {"sequence": sequence, "copies": len(rows), "distinct_payloads": distinct,
                 "ids": [int(row["id"]) for row in rows]}
            )  # fmt: skip
    return found


def _payload(raw_kind: str, raw: str) -> str:
    """The copy's payload in a canonical form: its JSON ``payload`` object with sorted keys,
    else the stored bytes."""
    try:
        frame = decode_raw(raw_kind, raw)
        payload = json.loads(frame)["payload"]
    except (ValueError, KeyError, TypeError):
        return f"raw:{raw_kind}:{raw}"
    if not isinstance(payload, dict):
        return f"raw:{raw_kind}:{raw}"
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def report_fields(found: dict[str, list[dict[str, Any]]], account: str) -> dict[str, Any]:
    """The JSON fields of one account: ``conflicting_duplicates`` (the count) and
    ``conflicts`` (the first :data:`LISTED_MAX`)."""
    conflicts = found.get(account, [])
    return {"conflicting_duplicates": len(conflicts), "conflicts": conflicts[:LISTED_MAX]}
