"""events and connection_log, append-only

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Creates both tables, their indexes, and the triggers that make them insert-only:
SQLite triggers that abort UPDATE and DELETE, a PostgreSQL trigger function that
raises on UPDATE, DELETE and TRUNCATE.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from recorder import triggers

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLES = triggers.TABLES_0001


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True,
                  comment="Strictly increasing in insert order"),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False,
                  comment="The connection that received the frame"),
        sa.Column("received_at_ns", sa.BigInteger(), nullable=False,
                  comment="UTC epoch nanoseconds, taken when the frame arrived"),
        sa.Column("server_ts_ms", sa.BigInteger(), comment="Envelope timestamp; null when absent"),
        sa.Column("sequence", sa.BigInteger(), comment="Envelope sequence; null when absent"),
        sa.Column("msg_type", sa.Text(), comment="payload.type; null when the frame did not parse"),
        sa.Column("trading_day", sa.Date(), nullable=False),
        sa.Column("replayed", sa.Boolean(create_constraint=False), nullable=False,
                  comment="Sequenced frame received before the session's replay-complete"),
        sa.Column("raw_kind", sa.Text(), nullable=False,
                  comment="text: raw is the frame; binary / text-base64: raw is base64 of its bytes"),
        sa.Column("raw", sa.Text(), nullable=False, comment="The frame exactly as received"),
        sa.Column("chain_hash", sa.Text(), nullable=False,
                  comment="sha256(previous chain_hash of the account || canonical row), hex"),
        sa.CheckConstraint("raw_kind IN ('text', 'binary', 'text-base64')",
                           name=op.f("ck_events_raw_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sqlite_autoincrement=True,
        comment="Every frame received, exactly as received; insert-only",
    )  # fmt: skip
    op.create_index(
        op.f("ix_events_account_id_trading_day_sequence"),
        "events",
        ["account_id", "trading_day", "sequence"],
    )
    op.create_index(op.f("ix_events_trading_day"), "events", ["trading_day"])
    op.create_index(op.f("ix_events_received_at_ns"), "events", ["received_at_ns"])
    op.create_index(op.f("ix_events_account_id_id"), "events", ["account_id", "id"])

    op.create_table(
        "connection_log",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("at_ns", sa.BigInteger(), nullable=False, comment="UTC epoch nanoseconds"),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), comment="Close code and reason, error-notice text, ..."),
        sa.CheckConstraint(
            "event IN ('opened', 'subscribed', 'subscribe-rejected', 'replay-complete', 'closed')",
            name=op.f("ck_connection_log_event"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_log")),
        sqlite_autoincrement=True,
        comment="The recorder's journal of session lifecycle events; insert-only",
    )
    op.create_index(
        op.f("ix_connection_log_account_id_at_ns"), "connection_log", ["account_id", "at_ns"]
    )
    op.create_index(op.f("ix_connection_log_session_id"), "connection_log", ["session_id"])

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for _table, statement in triggers.expected(dialect, TABLES, prunable=()).values():
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(triggers.pg_function_ddl())
        for _table, statement in triggers.expected(dialect, TABLES, prunable=()).values():
            op.execute(statement)
    else:
        raise NotImplementedError(
            f"studio-recorder supports SQLite and PostgreSQL, not {dialect}: "
            "append-only triggers cannot be created"
        )


def downgrade() -> None:
    # The store is append-only and a compliance record: migrations only add.
    raise NotImplementedError("studio-recorder migrations cannot be reverted")
