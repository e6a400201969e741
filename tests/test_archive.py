"""``studio-query archive`` to a local directory: complete days exported there, read back and
verified; a second run archives nothing; a day whose archived copy no longer matches the
store is reported (exit 1) and never overwritten; bad settings are one line, exit 2."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from recorder.appender import Appender
from tests.support.cli import run
from tests.support.config import write_config
from tests.support.frames import NOON_NS, frame
from tests.support.simday import DAY, A, B, record


def _config(tmp_path: Path, engine: Engine, archive: str) -> Path:
    url = engine.url.render_as_string(hide_password=False)
    path = write_config(tmp_path / "recorder.toml", [A, B], url)
    path.write_text(path.read_text() + archive)
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_archive_verify_rerun_and_a_store_that_changed(engine: Engine, tmp_path: Path) -> None:
    record(engine)
    config = _config(tmp_path, engine, '[archive]\nurl = "archive"\n')  # beside the config
    first = run("queries", "archive", "--config", config, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == [
        {"trading_day": DAY.isoformat(), "accounts": 2, "rows": 71, "status": "archived",
         "detail": ""}
    ]  # fmt: skip
    archive = tmp_path / "archive"
    check = run("queries", "verify", "--from-export", archive, "--day", DAY)
    assert check.returncode == 0, check.stdout
    kept = _tree(archive)

    again = run("queries", "archive", "--config", config)
    assert again.returncode == 0
    assert "already archived" in again.stdout
    assert _tree(archive) == kept  # nothing written the second time

    late = frame(A, 99, at_ns=NOON_NS + 3 * 3600 * 10**9, day=DAY)
    Appender(engine).append([late], [])  # the store now holds more of that day
    changed = run("queries", "archive", "--config", config)
    assert changed.returncode == 1
    assert f"{DAY}: DIFFERS from the store: {A}: store 58 frames" in changed.stdout
    assert _tree(archive) == kept  # never overwritten


@pytest.mark.parametrize(
    ("archive", "args", "message"),
    [
        ("", (), "no [archive] url in the configuration"),
        ('[archive]\nurl = "s3://bucket/days"\n', (), "S3 archives are not supported"),
        ('[archive]\nurl = "s3:///days"\n', (), "names no bucket"),
        ('[archive]\nurl = "a"\nobject_lock_mode = "FOREVER"\n', (), "object_lock_mode must be"),
        ('[archive]\nurl = "a"\nretention_days = 0\n', (), "retention_days"),
        ('[archive]\nurl = "a"\n', ("--through", dt.date.today() + dt.timedelta(days=1)),
         "a day is complete only after it ends"),
    ],
)  # fmt: skip
def test_bad_archive_settings_are_one_line(
    engine: Engine, tmp_path: Path, archive: str, args: tuple[object, ...], message: str
) -> None:
    config = _config(tmp_path, engine, archive)
    result = run("queries", "archive", "--config", config, *args)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
