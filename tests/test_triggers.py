"""The append-only triggers: ``db check``, ``db upgrade``, ``status``, ``/healthz`` and the
metrics notice one that is missing or altered; ``db upgrade --repair`` puts it back."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import trio
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import DBAPIError

from recorder import triggers
from recorder.appender import Appender
from recorder.health import judge
from recorder.metrics import build_registry
from recorder.records import LogRecord
from recorder.runtime import APPEND_ONLY_CHECK_S, _watch_append_only
from recorder.schema import events
from recorder.state import RecorderState
from tests.support.cli import run
from tests.support.config import write_config
from tests.support.frames import NOON_NS, A, fill

run_cli = functools.partial(run, "recorder")


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _drop_no_delete(engine: Engine) -> None:
    on = "" if engine.dialect.name == "sqlite" else " ON events"
    name = "events_no_delete" if engine.dialect.name == "sqlite" else "events_append_only"
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TRIGGER {name}{on}")


def _record(engine: Engine) -> None:
    log = [LogRecord("s", A, NOON_NS, "opened"), LogRecord("s", A, NOON_NS + 1, "subscribed")]
    Appender(engine).append([fill(A, n) for n in range(1, 6)], log)


def test_the_migrations_make_exactly_the_triggers_the_check_expects(engine: Engine) -> None:
    with engine.connect() as connection:
        assert triggers.problems(connection) == []
    assert run_cli("db", "check", "--db", url_of(engine)).returncode == 0


def test_a_dropped_trigger_is_named_by_check_upgrade_and_status_and_repaired(
    engine: Engine, tmp_path: Path
) -> None:
    _record(engine)
    url = url_of(engine)
    name = "events_no_delete" if engine.dialect.name == "sqlite" else "events_append_only"
    _drop_no_delete(engine)
    with engine.begin() as connection:  # what an insider can now do
        connection.execute(delete(events).where(events.c.sequence == 5))
    check = run_cli("db", "check", "--db", url)
    assert check.returncode == 1
    assert f"append-only protection broken: {name} missing" in check.stderr
    assert "db upgrade --repair" in check.stderr
    upgrade = run_cli("db", "upgrade", "--db", url)
    assert upgrade.returncode == 1
    assert f"{name} missing" in upgrade.stderr
    config = write_config(tmp_path / "r.toml", [A], url)
    status = run_cli("status", "--config", config, "--json")
    assert status.returncode == 1
    assert json.loads(status.stdout)["append_only"] == {
        "ok": False, "problems": [f"{name} missing"],
    }  # fmt: skip
    repair = run_cli("db", "upgrade", "--db", url, "--repair")
    assert repair.returncode == 0, repair.stderr
    assert f"put back {name} missing" in repair.stdout
    assert run_cli("db", "check", "--db", url).returncode == 0
    assert json.loads(run_cli("status", "--config", config, "--json").stdout)["append_only"]["ok"]
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(delete(events))
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(events)).scalar() == 4
    again = run_cli("db", "upgrade", "--db", url, "--repair")
    assert "nothing to repair" in again.stdout


@pytest.mark.postgres
def test_an_altered_trigger_function_is_noticed_and_repaired(pg_url: str) -> None:
    from tests.support.stores import migrated

    engine = migrated(pg_url)
    try:
        with engine.begin() as connection:  # the function now lets everything through
            connection.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION studio_recorder_refuse_change() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$"
            )
            connection.exec_driver_sql("ALTER TABLE checkpoints DISABLE TRIGGER USER")
        check = run_cli("db", "check", "--db", pg_url)
        assert check.returncode == 1
        assert "function studio_recorder_refuse_change() altered" in check.stderr
        assert "checkpoints_append_only disabled" in check.stderr
        assert "checkpoints_no_truncate disabled" in check.stderr
        assert run_cli("db", "upgrade", "--db", pg_url, "--repair").returncode == 0
        assert run_cli("db", "check", "--db", pg_url).returncode == 0
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_check_on_postgresql_is_not_fooled_by_other_schemas(pg_url: str) -> None:
    from tests.support.stores import migrated

    engine = migrated(pg_url)
    try:
        _drop_no_delete(engine)  # another schema on the server still has its triggers
        assert "events_append_only missing" in run_cli("db", "check", "--db", pg_url).stderr
    finally:
        engine.dispose()


async def test_a_running_recorder_reports_missing_triggers(
    sqlite_url: str, recorder_clock: trio.abc.Clock
) -> None:
    from tests.support.stores import migrated

    engine = migrated(sqlite_url)
    state = RecorderState.for_accounts((A,))
    registry, _ = build_registry(state)
    _drop_no_delete(engine)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_append_only, engine, state)
        await trio.sleep(1)
        assert state.append_only_problems == ["events_no_delete missing"]
        assert "store: append-only protection broken: events_no_delete missing" in (
            judge(state, 0.0).reasons
        )
        assert registry.get_sample_value("studio_recorder_store_append_only") == 0.0
        with engine.begin() as connection:
            triggers.repair(connection)
        await trio.sleep(APPEND_ONLY_CHECK_S)
        assert state.append_only_problems == []
        assert registry.get_sample_value("studio_recorder_store_append_only") == 1.0
        nursery.cancel_scope.cancel()
    engine.dispose()
