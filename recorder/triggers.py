"""The append-only triggers: their one definition, a check that they are all there and
exactly as made, and their repair.

The migrations create them from here; ``db check``, ``status`` and the recorder's health
check compare the database against them; ``db upgrade --repair`` puts back what is
missing or altered. SQLite keeps each trigger's statement as written, so it is compared
whole; PostgreSQL is compared on what decides the behaviour: each trigger's definition as
the server prints it (schema names left out), that it is enabled, and the trigger
function's body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, text

#: Tables made insert-only by revision 0001 and by revision 0002.
TABLES_0001: Final = ("events", "connection_log")
TABLES_0002: Final = ("store_meta", "checkpoints")
TABLES: Final = TABLES_0001 + TABLES_0002

PG_FUNCTION: Final = "studio_recorder_refuse_change"
#: The function's body exactly as revision 0001 wrote it (PostgreSQL keeps it verbatim).
PG_FUNCTION_BODY: Final = (
    "\n            BEGIN\n"
    "                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP\n"
    "                    USING ERRCODE = 'insufficient_privilege';\n"
    "            END\n            "
)


def pg_function_ddl(*, replace: bool = False) -> str:
    verb = "CREATE OR REPLACE" if replace else "CREATE"
    return (
        f"{verb} FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql "
        f"AS $${PG_FUNCTION_BODY}$$"
    )


def sqlite_triggers(table: str) -> dict[str, str]:
    """Trigger name → its statement, for one table on SQLite."""
    return {
        f"{table}_no_{action.lower()}": (
            f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
        )
        for action in ("UPDATE", "DELETE")
    }


def pg_triggers(table: str) -> dict[str, str]:
    """Trigger name → its statement, for one table on PostgreSQL."""
    return {
        f"{table}_append_only": (
            f"CREATE TRIGGER {table}_append_only BEFORE DELETE OR UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()"
        ),
        f"{table}_no_truncate": (
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()"
        ),
    }


def expected(dialect: str, tables: tuple[str, ...] = TABLES) -> dict[str, tuple[str, str]]:
    """Trigger name → (table, statement) of every append-only trigger on ``dialect``."""
    make = sqlite_triggers if dialect == "sqlite" else pg_triggers
    return {name: (table, ddl) for table in tables for name, ddl in make(table).items()}


@dataclass(frozen=True)
class Problem:
    """One append-only trigger (or the PostgreSQL function) missing or not as made."""

    name: str
    what: str  # "missing", "altered", "disabled"

    def __str__(self) -> str:
        return f"{self.name} {self.what}"


_SCHEMA_PREFIX = re.compile(r"\b\w+\.(?=\w)")


def _normal(statement: str) -> str:
    return " ".join(_SCHEMA_PREFIX.sub("", statement).split())


def problems(connection: Connection) -> list[Problem]:
    """What is missing or altered among the append-only triggers (empty when all is well)."""
    dialect = connection.dialect.name
    found: list[Problem] = []
    if dialect == "sqlite":
        rows = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type='trigger'"))
        have = {name: sql for name, sql in rows}
        for name, (_table, ddl) in expected(dialect).items():
            if name not in have:
                found.append(Problem(name, "missing"))
            elif have[name] != ddl:
                found.append(Problem(name, "altered"))
        return found
    body = connection.execute(
        text("SELECT prosrc FROM pg_proc WHERE proname = :name AND pronamespace = "
             "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())"),
        {"name": PG_FUNCTION},
    ).scalar()  # fmt: skip
    if body is None:
        found.append(Problem(f"function {PG_FUNCTION}()", "missing"))
    elif body != PG_FUNCTION_BODY:
        found.append(Problem(f"function {PG_FUNCTION}()", "altered"))
    rows = connection.execute(
        text("SELECT t.tgname, pg_get_triggerdef(t.oid), t.tgenabled FROM pg_trigger t "
             "JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal "
             "AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())")
    )  # fmt: skip
    have_pg = {name: (definition, enabled) for name, definition, enabled in rows}
    for name, (_table, ddl) in expected(dialect).items():
        if name not in have_pg:
            found.append(Problem(name, "missing"))
        elif _normal(have_pg[name][0]) != _normal(ddl):
            found.append(Problem(name, "altered"))
        elif have_pg[name][1] == "D":
            found.append(Problem(name, "disabled"))
    return found


def repair(connection: Connection) -> list[Problem]:
    """Put back every append-only trigger that is missing or altered; returns what was wrong.

    Run in a transaction (``engine.begin()``): either everything is put back or nothing.
    """
    wrong = problems(connection)
    dialect = connection.dialect.name
    triggers = expected(dialect)
    for problem in wrong:
        if problem.name.startswith("function "):
            connection.execute(text(pg_function_ddl(replace=True)))
    for problem in wrong:
        if problem.name in triggers:
            table, ddl = triggers[problem.name]
            on = "" if dialect == "sqlite" else f" ON {table}"
            connection.execute(text(f"DROP TRIGGER IF EXISTS {problem.name}{on}"))
            connection.execute(text(ddl))
    return wrong
