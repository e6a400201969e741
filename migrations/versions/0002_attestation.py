"""store identity, connection_log chain, signed checkpoints

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03

* ``store_meta``: facts about the store written once; this revision writes the store's
  random id (``store_id``), which every signed checkpoint names.
* ``connection_log.chain_hash``: a per-account chain over the journal, as ``events``
  has; the rows already there are chained here, in id order (encoding v1, tag
  ``slog1``: ``recorder.chain.canonical_log_bytes``).
* ``checkpoints``: the signed notes the writer appends.

Both new tables are insert-only like the others (SQLite triggers, the PostgreSQL
trigger function of 0001). To chain the existing journal the revision lifts the
journal's own insert-only triggers for the duration of this transaction, and puts
them back before it commits.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from recorder import triggers
from recorder.chain import LOG_CHAIN_FIELDS, chain_log_rows

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NEW_TABLES = triggers.TABLES_0002


def _connection_log(chain_nullable: bool) -> sa.Table:
    """The journal as 0001 made it, plus ``chain_hash`` (for SQLite's table rebuild)."""
    return sa.Table(
        "connection_log",
        sa.MetaData(),
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("at_ns", sa.BigInteger(), nullable=False, comment="UTC epoch nanoseconds"),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), comment="Close code and reason, error-notice text, ..."),
        sa.Column("chain_hash", sa.Text(), nullable=chain_nullable,
                  comment="sha256(previous chain_hash of the account's log || canonical row), hex"),
        sa.CheckConstraint(
            "event IN ('opened', 'subscribed', 'subscribe-rejected', 'replay-complete', 'closed')",
            name="ck_connection_log_event",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_connection_log"),
        sa.Index("ix_connection_log_account_id_at_ns", "account_id", "at_ns"),
        sa.Index("ix_connection_log_session_id", "session_id"),
        sqlite_autoincrement=True,
        comment="The recorder's journal of session lifecycle events; insert-only",
    )  # fmt: skip


def _chain_the_journal(bind: sa.Connection) -> None:
    rows = bind.execute(
        sa.text(f"SELECT id, {', '.join(LOG_CHAIN_FIELDS)} FROM connection_log ORDER BY id")
    ).all()
    chained = chain_log_rows(tuple(row[1:]) for row in rows)
    updates = [{"id": row[0], "h": values[-1]} for row, values in zip(rows, chained, strict=True)]
    if updates:
        bind.execute(sa.text("UPDATE connection_log SET chain_hash = :h WHERE id = :id"), updates)


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"studio-recorder supports SQLite and PostgreSQL, not {dialect}")

    op.create_table(
        "store_meta",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_store_meta")),
        comment="Facts about the store written once by db upgrade (store_id, ...); insert-only",
    )
    op.execute(
        sa.text("INSERT INTO store_meta (name, value) VALUES ('store_id', :id)").bindparams(
            id=secrets.token_hex(16)
        )
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("at_ns", sa.BigInteger(), nullable=False, comment="UTC epoch nanoseconds of signing"),
        sa.Column("events_count", sa.BigInteger(), nullable=False,
                  comment="The account's events rows with id <= events_last_id"),
        sa.Column("events_last_id", sa.BigInteger(), nullable=False,
                  comment="0 when the account has none"),
        sa.Column("events_head", sa.Text(), nullable=False,
                  comment="chain_hash of that row (or genesis)"),
        sa.Column("log_count", sa.BigInteger(), nullable=False),
        sa.Column("log_last_id", sa.BigInteger(), nullable=False),
        sa.Column("log_head", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False, comment="The signing key's id, 8 hex digits"),
        sa.Column("note", sa.Text(), nullable=False,
                  comment="The complete signed note (C2SP signed-note)"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sqlite_autoincrement=True,
        comment="Signed checkpoints of each account's chains (see recorder.checkpoint); insert-only",
    )  # fmt: skip
    op.create_index(op.f("ix_checkpoints_account_id_id"), "checkpoints", ["account_id", "id"])

    if dialect == "sqlite":
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER connection_log_no_{action}")
        op.add_column("connection_log", sa.Column("chain_hash", sa.Text(), nullable=True))
        _chain_the_journal(bind)
        # SQLite cannot make a column NOT NULL in place: rebuild the table (ids, the
        # autoincrement counter, constraints and indexes kept), then its triggers.
        with op.batch_alter_table(
            "connection_log", recreate="always", copy_from=_connection_log(chain_nullable=True)
        ) as batch:
            batch.alter_column("chain_hash", existing_type=sa.Text(), nullable=False)
        for table in ("connection_log", *NEW_TABLES):
            for statement in triggers.sqlite_triggers(table).values():
                op.execute(statement)
    else:
        op.execute("ALTER TABLE connection_log DISABLE TRIGGER connection_log_append_only")
        op.add_column(
            "connection_log",
            sa.Column("chain_hash", sa.Text(), nullable=True,
                      comment="sha256(previous chain_hash of the account's log || canonical row), hex"),
        )  # fmt: skip
        _chain_the_journal(bind)
        op.alter_column("connection_log", "chain_hash", existing_type=sa.Text(), nullable=False)
        op.execute("ALTER TABLE connection_log ENABLE TRIGGER connection_log_append_only")
        for table in NEW_TABLES:
            for statement in triggers.pg_triggers(table).values():
                op.execute(statement)
    op.create_index(op.f("ix_connection_log_account_id_id"), "connection_log", ["account_id", "id"])


def downgrade() -> None:
    # The store is append-only and a compliance record: migrations only add.
    raise NotImplementedError("studio-recorder migrations cannot be reverted")
