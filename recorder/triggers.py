"""The append-only triggers: their one definition, a check that they are all there and
exactly as made, and their repair.

Every table refuses ``UPDATE`` and ``DELETE`` (and, on PostgreSQL, ``TRUNCATE``), with one
exception since revision 0003: a ``DELETE`` of an ``events`` row covered by a row of
``prunes`` (same account and trading day, its id within the recorded range) goes through.
The ``prunes`` row is written first, in the same transaction, by ``studio-recorder prune``
(:mod:`recorder.prune`); it is insert-only itself.

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

#: Tables made insert-only by revisions 0001, 0002 and 0003.
TABLES_0001: Final = ("events", "connection_log")
TABLES_0002: Final = ("store_meta", "checkpoints")
TABLES_0003: Final = ("prunes",)
TABLES: Final = TABLES_0001 + TABLES_0002 + TABLES_0003
#: Tables whose rows a ``prunes`` row lets go (revision 0003).
PRUNABLE: Final = ("events",)

PG_FUNCTION: Final = "studio_recorder_refuse_change"
#: The function's body exactly as revision 0001 wrote it (PostgreSQL keeps it verbatim).
PG_FUNCTION_BODY: Final = (
    "\n            BEGIN\n"
    "                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP\n"
    "                    USING ERRCODE = 'insufficient_privilege';\n"
    "            END\n            "
)


#: A row of ``prunes`` covers the deleted row (``OLD``): the one DELETE allowed (SQLite, where
#: a trigger's table names resolve in the trigger's own schema, never in ``temp``).
COVERED_BY_PRUNE: Final = (
    "EXISTS (SELECT 1 FROM prunes AS p WHERE p.account_id = OLD.account_id "
    "AND p.trading_day = OLD.trading_day AND OLD.id BETWEEN p.first_id AND p.last_id)"
)
PG_PRUNE_FUNCTION: Final = "studio_recorder_refuse_unpruned"
#: Revision 0003's function for prunable tables: a covered DELETE passes, all else raises.
#: ``prunes`` is named in the trigger's own schema (``TG_TABLE_SCHEMA``), never through the
#: search path: a temporary or earlier-searched table of that name covers nothing.
PG_PRUNE_FUNCTION_BODY: Final = (
    "\nDECLARE\n"
    "    covered boolean := false;\n"
    "BEGIN\n"
    "    IF TG_OP = 'DELETE' THEN\n"
    "        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.prunes AS p "
    "WHERE p.account_id = $1 AND p.trading_day = $2 AND $3 BETWEEN p.first_id AND p.last_id)', "
    "TG_TABLE_SCHEMA)\n"
    "            INTO covered USING OLD.account_id, OLD.trading_day, OLD.id;\n"
    "    END IF;\n"
    "    IF covered THEN\n"
    "        RETURN OLD;\n"
    "    END IF;\n"
    "    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP\n"
    "        USING ERRCODE = 'insufficient_privilege';\n"
    "END\n"
)
#: SQLite fires no DELETE trigger for a row ``INSERT OR REPLACE`` removes: ``prunes`` (whose
#: rows open the way for a DELETE) refuses an insert that would replace one (revision 0003).
NO_REPLACE: Final = ("prunes",)
#: Each PostgreSQL trigger function by name, with its body as written.
PG_FUNCTIONS: Final = {PG_FUNCTION: PG_FUNCTION_BODY, PG_PRUNE_FUNCTION: PG_PRUNE_FUNCTION_BODY}


def pg_function_ddl(*, replace: bool = False, name: str = PG_FUNCTION) -> str:
    verb = "CREATE OR REPLACE" if replace else "CREATE"
    return f"{verb} FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $${PG_FUNCTIONS[name]}$$"


def sqlite_triggers(table: str, *, prunable: bool = False) -> dict[str, str]:
    """Trigger name → its statement, for one table on SQLite (``prunable``: a DELETE that a
    ``prunes`` row covers passes)."""
    found = {}
    if table in NO_REPLACE:
        found[f"{table}_no_replace"] = (
            f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE id = NEW.id) "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: REPLACE refused'); END"
        )
    for action in ("UPDATE", "DELETE"):
        when = f"WHEN NOT {COVERED_BY_PRUNE} " if prunable and action == "DELETE" else ""
        found[f"{table}_no_{action.lower()}"] = (
            f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} {when}"
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
        )
    return found


def pg_triggers(table: str, *, prunable: bool = False) -> dict[str, str]:
    """Trigger name → its statement, for one table on PostgreSQL (``prunable``: rows go
    through :data:`PG_PRUNE_FUNCTION`)."""
    function = PG_PRUNE_FUNCTION if prunable else PG_FUNCTION
    return {
        f"{table}_append_only": (
            f"CREATE TRIGGER {table}_append_only BEFORE DELETE OR UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        ),
        f"{table}_no_truncate": (
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()"
        ),
    }


def expected(
    dialect: str, tables: tuple[str, ...] = TABLES, prunable: tuple[str, ...] = PRUNABLE
) -> dict[str, tuple[str, str]]:
    """Trigger name → (table, statement) of every append-only trigger on ``dialect``
    (``prunable``: the tables whose covered rows may be deleted; none before revision 0003)."""
    make = sqlite_triggers if dialect == "sqlite" else pg_triggers
    return {
        name: (table, ddl)
        for table in tables
        for name, ddl in make(table, prunable=table in prunable).items()
    }


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
    for function, written in PG_FUNCTIONS.items():
        body = connection.execute(
            text("SELECT prosrc FROM pg_proc WHERE proname = :name AND pronamespace = "
                 "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())"),
            {"name": function},
        ).scalar()  # fmt: skip
        if body is None:
            found.append(Problem(f"function {function}()", "missing"))
        elif body != written:
            found.append(Problem(f"function {function}()", "altered"))
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
            name = problem.name.removeprefix("function ").removesuffix("()")
            connection.execute(text(pg_function_ddl(replace=True, name=name)))
    for problem in wrong:
        if problem.name in triggers:
            table, ddl = triggers[problem.name]
            on = "" if dialect == "sqlite" else f" ON {table}"
            connection.execute(text(f"DROP TRIGGER IF EXISTS {problem.name}{on}"))
            connection.execute(text(ddl))
    return wrong
