"""An export read by DuckDB, pyarrow, pandas, Polars and Spark as an outside analyst would:
each with its default settings and no schema, through the README's own snippets
("Reading an export with other engines"), run here as they are written.

Each engine must give the day's rows and nothing else, ``account_id`` as text (``0042``
stays ``0042``, ``1e3`` is not 1000), ``received_at_ns``/``at_ns`` as exact 64-bit
integers, ``raw`` exactly as stored, and the derived microsecond timestamps as timestamps.
The accounts include ``a/b`` (percent-encoded file name) and ``_x`` (a file name that
pyarrow, pandas and Spark would skip, were its ``_`` not encoded).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from queries.export import export_day
from recorder.appender import Appender
from recorder.records import LogRecord
from recorder.schema import connection_log, events
from tests.support import stores
from tests.support.frames import DAY, NOON_NS, UNPARSED, frame

README: Final = Path(__file__).resolve().parent.parent / "README.md"
ACCOUNTS: Final = ("0042", "1e3", "a/b", "_x")
#: Where the README's snippets read from, and the day they read.
README_ARCHIVE: Final = "/srv/archive"
_SNIPPET: Final = re.compile(r"<!-- engine: (\w+) -->\n```python\n(.*?)```", re.DOTALL)
_ODD_NS: Final = 123_457  # sub-microsecond digits, which only the exact integers keep
_MS: Final = 1_000_000


def readme_snippets() -> dict[str, str]:
    """The README's engine snippets, by engine."""
    found = _SNIPPET.findall(README.read_text(encoding="utf-8"))
    snippets = dict(found)
    assert len(snippets) == len(found), "one snippet per engine"
    return snippets


def record(url: str) -> None:
    """DAY: frames of every account (text, unparsed, binary), sessions; the next day: more."""
    engine = stores.migrated(url)
    appender = Appender(engine)
    rows = []
    for n, account in enumerate(ACCOUNTS * 3):
        extra: dict[str, Any] = {}
        if n == 4:
            extra = {**UNPARSED, "raw": "not json \x01 é"}
        elif n == 5:
            extra = {"raw_kind": "binary", "raw": "AAEC/w=="}
        rows.append(frame(account, n + 1, at_ns=NOON_NS + n * _MS + _ODD_NS, **extra))
    appender.append(rows)
    later = DAY + dt.timedelta(days=1)
    appender.append([frame(a, 99, at_ns=NOON_NS + 86_400 * 10**9, day=later) for a in ACCOUNTS[:2]])
    logs = [LogRecord(f"s-{a}", a, NOON_NS - 10**9 + i * _MS + _ODD_NS, event)
            for i, a in enumerate(ACCOUNTS) for event in ("opened", "subscribed")]  # fmt: skip
    appender.append([], sorted(logs, key=lambda log: log.at_ns))
    engine.dispose()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[Any]]]:
    """Two exported days, and what the store holds of DAY: events (id, account_id,
    received_at_ns, raw) and connection_log (id, account_id, at_ns) rows, in id order."""
    root = tmp_path_factory.mktemp("engines")
    url = f"sqlite:///{root}/store.db"
    record(url)
    out = root / "archive"
    for day in (DAY, DAY + dt.timedelta(days=1)):
        export_day(url, day, out)
    engine = stores.migrated(url)
    stored = {
        "events": [(r["id"], r["account_id"], r["received_at_ns"], r["raw"])
                   for r in stores.rows(engine, events, events.c.trading_day == DAY)],
        "connection_log": [(r["id"], r["account_id"], r["at_ns"])
                           for r in stores.rows(engine, connection_log)],
    }  # fmt: skip
    engine.dispose()
    assert len(stored["events"]) == 12
    assert {row[1] for row in stored["events"]} == set(ACCOUNTS)
    return out, stored


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local Spark session for the module (the snippet's getOrCreate() finds it)."""
    if shutil.which("java") is None:
        pytest.skip("no java on PATH: Spark needs a JRE (.ci/run installs default-jre-headless)")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("studio-recorder-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    yield session
    session.stop()


# Each engine's result → (column name → type as the engine names it, rows as dicts).
Columns = tuple[dict[str, str], list[dict[str, Any]]]


def _duckdb(result: Any) -> Columns:
    names = result.columns
    types = {name: str(kind) for name, kind in zip(names, result.types, strict=True)}
    return types, [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _pyarrow(result: Any) -> Columns:
    return {f.name: str(f.type) for f in result.schema}, result.to_pylist()


def _pandas(result: Any) -> Columns:
    return {str(c): str(result[c].dtype) for c in result.columns}, result.to_dict("records")


def _polars(result: Any) -> Columns:
    return {c: str(kind) for c, kind in result.schema.items()}, result.to_dicts()


def _spark(result: Any) -> Columns:
    return dict(result.dtypes), [row.asDict() for row in result.collect()]


#: engine → (how to read its result, the types it gives a string, an int64 and a timestamp
#: column: account_id, received_at_ns, received_at).
ENGINES: Final[dict[str, tuple[Callable[[Any], Columns], tuple[str, str, str]]]] = {
    "duckdb": (_duckdb, ("VARCHAR", "BIGINT", "TIMESTAMP WITH TIME ZONE")),
    "pyarrow": (_pyarrow, ("string", "int64", "timestamp[us, tz=UTC]")),
    "pandas": (_pandas, ("str", "int64", "datetime64[us, UTC]")),
    "polars": (_polars, ("String", "Int64", "Datetime(time_unit='us', time_zone='UTC')")),
    "spark": (_spark, ("string", "bigint", "timestamp")),
}


def test_the_readme_has_one_snippet_per_engine() -> None:
    snippets = readme_snippets()
    assert set(snippets) == set(ENGINES)
    for code in snippets.values():
        assert f"{README_ARCHIVE}/events" in code
        assert "schema" not in code  # default settings, no schema


def run_snippet(engine: str, out: Path, table: str) -> Columns:
    """The README's snippet for ``engine``, reading ``table`` of the export ``out``."""
    code = readme_snippets()[engine].replace(f"{README_ARCHIVE}/events", f"{out}/{table}")
    namespace: dict[str, Any] = {}
    exec(compile(code, f"README.md ({engine})", "exec"), namespace)
    convert, _ = ENGINES[engine]
    return convert(namespace["events"])


@pytest.mark.parametrize("engine", list(ENGINES))
def test_each_engine_reads_the_export_with_default_settings(
    engine: str,
    exported: tuple[Path, dict[str, list[Any]]],
    request: pytest.FixtureRequest,
) -> None:
    out, stored = exported
    if engine == "spark":
        request.getfixturevalue("spark")
    text, int64, timestamp = ENGINES[engine][1]

    types, rows = run_snippet(engine, out, "events")
    assert (types["account_id"], types["received_at_ns"], types["received_at"]) == (
        text, int64, timestamp
    )  # fmt: skip
    got = sorted((r["id"], r["account_id"], r["received_at_ns"], r["raw"]) for r in rows)
    assert got == stored["events"]  # the day's rows only; ids, text, exact ns, raw as stored
    assert all(type(account) is str for _, account, _, _ in got)
    assert {str(r["trading_day"])[:10] for r in rows} == {DAY.isoformat()}
    micros = sorted((r["id"], _micros(r["received_at"])) for r in rows)
    assert micros == [(i, ns // 1000) for i, _, ns, _ in stored["events"]]

    types, rows = run_snippet(engine, out, "connection_log")
    assert (types["account_id"], types["at_ns"], types["logged_at"]) == (text, int64, timestamp)
    assert sorted((r["id"], r["account_id"], r["at_ns"]) for r in rows) == stored["connection_log"]


def _micros(value: Any) -> int:
    """Microseconds since the epoch of an engine's timestamp value (datetime, pandas, naive
    local for Spark)."""
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if value.tzinfo is None:
        value = value.astimezone()  # Spark gives the session's local time, naive
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
