"""Conflicting duplicates: copies of one sequenced frame that disagree.

Replays re-deliver the whole day, so every sequence is stored once per session; the copies
are meant to be the same message. When two copies of ``(account, trading day, sequence)``
carry different payloads — a replay that disagrees with what was received live — the
analytics keep the first copy (lowest ``id``) and a compliance reviewer must hear about it.

What is compared is the frame's ``payload`` object, as JSON (the protocol does not say
whether a replayed frame keeps its top-level ``timestamp``, and newer channels add
top-level fields such as ``channel``, so those may differ between copies without a
conflict); a frame that is not a JSON object with a ``payload`` is compared whole.
"""

from __future__ import annotations

from typing import Any, Final

from .duck import Workspace

#: The ``events`` columns the check needs besides what gaps and audit read.
COLUMNS: Final = ("id", "account_id", "sequence", "trading_day", "raw_kind", "raw")
#: At most this many conflicts are listed per account (all are counted).
LISTED_MAX: Final = 100

_SQL: Final = """
WITH sequenced AS (
    SELECT id, account_id, sequence, raw_kind, raw FROM {events}
    WHERE sequence IS NOT NULL AND trading_day = ?
), repeated AS (
    SELECT account_id, sequence FROM sequenced GROUP BY ALL HAVING count(*) > 1
), hashed AS (
    SELECT s.account_id, s.sequence, s.id,
           md5(CASE WHEN s.raw_kind = 'text' AND json_valid(s.raw)
                         AND json_type(s.raw, '$.payload') IS NOT NULL
                    THEN json_extract(s.raw, '$.payload')::VARCHAR
                    ELSE s.raw_kind || ':' || s.raw END) AS payload_hash
    FROM sequenced s SEMI JOIN repeated USING (account_id, sequence)
)
SELECT account_id, sequence, count(*), count(DISTINCT payload_hash), list(id ORDER BY id)
FROM hashed GROUP BY account_id, sequence HAVING count(DISTINCT payload_hash) > 1
ORDER BY account_id, sequence
"""


def conflicting_duplicates(ws: Workspace) -> dict[str, list[dict[str, Any]]]:
    """Per account, every sequence of the day whose stored copies disagree, in order."""
    found: dict[str, list[dict[str, Any]]] = {}
    sql = _SQL.format(events=ws.events_with(COLUMNS))
    for account, sequence, copies, distinct, ids in ws.rows(sql, [ws.day]):
        found.setdefault(str(account), []).append(
            {"sequence": sequence, "copies": copies, "distinct_payloads": distinct, "ids": ids}
        )
    return found


def report_fields(found: dict[str, list[dict[str, Any]]], account: str) -> dict[str, Any]:
    """The JSON fields of one account: ``conflicting_duplicates`` (the count) and
    ``conflicts`` (the first :data:`LISTED_MAX`)."""
    conflicts = found.get(account, [])
    return {"conflicting_duplicates": len(conflicts), "conflicts": conflicts[:LISTED_MAX]}
