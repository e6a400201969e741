"""The store's tables, as SQLAlchemy Core metadata (the schema alembic migrates to).

Analysts query these tables directly: names and columns are a contract. Every
table is insert-only; the database enforces it with triggers (``recorder.triggers``,
created by the migrations in ``migrations/versions``), which since revision 0003 let
through only a DELETE of ``events`` rows that a ``prunes`` row covers.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
)

from .envelope import RAW_BINARY, RAW_TEXT, RAW_TEXT_BASE64

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite makes only an INTEGER PRIMARY KEY an alias of the rowid; BIGINT elsewhere.
_ID = BigInteger().with_variant(Integer(), "sqlite")

#: Lifecycle events of a session in ``connection_log.event``.
CONNECTION_EVENTS: Final = (
    "opened",
    "subscribed",
    "subscribe-rejected",
    "replay-complete",
    "closed",
)

#: How ``events.raw`` holds a frame (see :mod:`recorder.envelope`).
RAW_KINDS: Final = (RAW_TEXT, RAW_BINARY, RAW_TEXT_BASE64)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK expression: ``column IN ('a', 'b')`` (values are constants of this module)."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


events = Table(
    "events",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True,
           comment="Strictly increasing in insert order"),
    Column("account_id", Text, nullable=False),
    Column("session_id", Text, nullable=False, comment="The connection that received the frame"),
    Column("received_at_ns", BigInteger, nullable=False,
           comment="UTC epoch nanoseconds, taken when the frame arrived"),
    Column("server_ts_ms", BigInteger, comment="Envelope timestamp; null when absent"),
    Column("sequence", BigInteger, comment="Envelope sequence; null when absent"),
    Column("msg_type", Text, comment="payload.type; null when the frame did not parse"),
    Column("trading_day", Date, nullable=False),
    Column("replayed", Boolean(create_constraint=False), nullable=False,
           comment="Sequenced frame received before the session's replay-complete"),
    Column("raw_kind", Text, nullable=False,
           comment="text: raw is the frame; binary / text-base64: raw is base64 of its bytes"),
    Column("raw", Text, nullable=False, comment="The frame exactly as received"),
    Column("chain_hash", Text, nullable=False,
           comment="sha256(previous chain_hash of the account || canonical row), hex"),
    CheckConstraint(_one_of("raw_kind", RAW_KINDS), name="raw_kind"),
    Index(None, "account_id", "trading_day", "sequence"),
    Index(None, "trading_day"),
    Index(None, "received_at_ns"),
    Index(None, "account_id", "id"),
    sqlite_autoincrement=True,
    comment="Every frame received, exactly as received; insert-only",
)  # fmt: skip

connection_log = Table(
    "connection_log",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("session_id", Text, nullable=False),
    Column("account_id", Text, nullable=False),
    Column("at_ns", BigInteger, nullable=False, comment="UTC epoch nanoseconds"),
    Column("event", Text, nullable=False),
    Column("detail", Text, comment="Close code and reason, error-notice text, ..."),
    Column("chain_hash", Text, nullable=False,
           comment="sha256(previous chain_hash of the account's log || canonical row), hex"),
    CheckConstraint(_one_of("event", CONNECTION_EVENTS), name="event"),
    Index(None, "account_id", "at_ns"),
    Index(None, "session_id"),
    Index(None, "account_id", "id"),
    sqlite_autoincrement=True,
    comment="The recorder's journal of session lifecycle events; insert-only",
)  # fmt: skip

#: ``store_meta`` names: facts about the store, each written once.
STORE_ID: Final = "store_id"
#: The IANA zone whose calendar dates are the store's ``trading_day`` values.
TRADING_DAY_TIMEZONE: Final = "trading_day_timezone"

store_meta = Table(
    "store_meta",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
    comment="Facts about the store written once by db upgrade (store_id, ...); insert-only",
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("account_id", Text, nullable=False),
    Column("at_ns", BigInteger, nullable=False, comment="UTC epoch nanoseconds of signing"),
    Column("events_count", BigInteger, nullable=False,
           comment="The account's events rows with id <= events_last_id"),
    Column("events_last_id", BigInteger, nullable=False, comment="0 when the account has none"),
    Column("events_head", Text, nullable=False, comment="chain_hash of that row (or genesis)"),
    Column("log_count", BigInteger, nullable=False),
    Column("log_last_id", BigInteger, nullable=False),
    Column("log_head", Text, nullable=False),
    Column("key_id", Text, nullable=False, comment="The signing key's id, 8 hex digits"),
    Column("note", Text, nullable=False, comment="The complete signed note (C2SP signed-note)"),
    Index(None, "account_id", "id"),
    sqlite_autoincrement=True,
    comment="Signed checkpoints of each account's chains (see recorder.checkpoint); insert-only",
)  # fmt: skip

prunes = Table(
    "prunes",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("account_id", Text, nullable=False),
    Column("trading_day", Date, nullable=False),
    Column("first_id", BigInteger, nullable=False, comment="The first events id pruned"),
    Column("last_id", BigInteger, nullable=False, comment="The last events id pruned"),
    Column("row_count", BigInteger, nullable=False, comment="events rows pruned"),
    Column("head_before", Text, nullable=False,
           comment="The account's chain_hash before the first pruned row (or genesis)"),
    Column("head_last", Text, nullable=False, comment="chain_hash of the last pruned row"),
    Column("manifest_sha256", Text, nullable=False,
           comment="SHA-256 of the archived manifest the rows were verified against"),
    Column("at_ns", BigInteger, nullable=False, comment="UTC epoch nanoseconds of the prune"),
    Column("os_user", Text, nullable=False, comment="Operating-system user who pruned"),
    Column("host", Text, nullable=False, comment="Host the prune ran on"),
    Index(None, "account_id", "trading_day"),
    Index(None, "account_id", "last_id"),
    sqlite_autoincrement=True,
    comment="One row per account and trading day pruned from events after archiving; insert-only",
)  # fmt: skip
