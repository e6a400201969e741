"""prunes: the audited deletion of archived days

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

* ``prunes``: one row per account and trading day that ``studio-recorder prune`` deleted
  from ``events`` once the archive held the day and it verified there: the id range, the
  row count, the chain heads before the first and at the last pruned row, the archived
  manifest's SHA-256, when, and by whom (operating-system user and host). Insert-only.
* ``events``' DELETE trigger now lets through a row that a ``prunes`` row covers (same
  account and trading day, id within the range); every other UPDATE, DELETE (and, on
  PostgreSQL, TRUNCATE) is refused as before. On PostgreSQL the table's trigger calls a
  new function (``recorder.triggers.PG_PRUNE_FUNCTION``); the other tables keep theirs.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from recorder import triggers

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"studio-recorder supports SQLite and PostgreSQL, not {dialect}")
    op.create_table(
        "prunes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("trading_day", sa.Date(), nullable=False),
        sa.Column("first_id", sa.BigInteger(), nullable=False, comment="The first events id pruned"),
        sa.Column("last_id", sa.BigInteger(), nullable=False, comment="The last events id pruned"),
        sa.Column("row_count", sa.BigInteger(), nullable=False, comment="events rows pruned"),
        sa.Column("head_before", sa.Text(), nullable=False,
                  comment="The account's chain_hash before the first pruned row (or genesis)"),
        sa.Column("head_last", sa.Text(), nullable=False,
                  comment="chain_hash of the last pruned row"),
        sa.Column("manifest_sha256", sa.Text(), nullable=False,
                  comment="SHA-256 of the archived manifest the rows were verified against"),
        sa.Column("at_ns", sa.BigInteger(), nullable=False,
                  comment="UTC epoch nanoseconds of the prune"),
        sa.Column("os_user", sa.Text(), nullable=False, comment="Operating-system user who pruned"),
        sa.Column("host", sa.Text(), nullable=False, comment="Host the prune ran on"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prunes")),
        sqlite_autoincrement=True,
        comment="One row per account and trading day pruned from events after archiving; "
        "insert-only",
    )  # fmt: skip
    op.create_index(op.f("ix_prunes_account_id_trading_day"), "prunes",
                    ["account_id", "trading_day"])  # fmt: skip
    op.create_index(op.f("ix_prunes_account_id_last_id"), "prunes", ["account_id", "last_id"])

    current = triggers.expected(dialect, ("events", "prunes"))
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS events_no_delete")
        op.execute(current["events_no_delete"][1])
        for name in triggers.sqlite_triggers("prunes"):
            op.execute(current[name][1])
    else:
        op.execute(triggers.pg_function_ddl(name=triggers.PG_PRUNE_FUNCTION))
        op.execute("DROP TRIGGER IF EXISTS events_append_only ON events")
        op.execute(current["events_append_only"][1])
        for name in triggers.pg_triggers("prunes"):
            op.execute(current[name][1])


def downgrade() -> None:
    # The store is append-only and a compliance record: migrations only add.
    raise NotImplementedError("studio-recorder migrations cannot be reverted")
