"""``studio-query archive`` to a local directory: complete days exported there, read back and
verified; a second run archives nothing; a day whose archived copy no longer matches the
store is reported (exit 1) and never overwritten; bad settings are one line, exit 2."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

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


def test_the_archive_on_s3_is_locked_read_back_and_never_rewritten(
    sqlite_url: str, tmp_path: Path
) -> None:
    """SeaweedFS with Object Lock in compliance mode: every object of the day is locked for
    retention_days, the day verifies when read back, nobody may delete it, a second run
    writes nothing and a store that changed since is reported."""
    from botocore.exceptions import ClientError

    from tests.support.cli import cli_env
    from tests.support.s3 import seaweedfs
    from tests.support.stores import migrated

    engine = migrated(sqlite_url)
    record(engine)
    with seaweedfs(tmp_path / "s3") as server:
        s3: Any = server.client()
        s3.create_bucket(Bucket="worm", ObjectLockEnabledForBucket=True)
        settings = (f'[archive]\nurl = "s3://worm/studio"\nendpoint_url = "{server.endpoint}"\n'
                    'region = "us-east-1"\nretention_days = 3\n')  # fmt: skip
        config = _config(tmp_path, engine, settings)
        env = {**cli_env(), **server.env}
        first = run("queries", "archive", "--config", config, "--json", env=env)
        assert first.returncode == 0, first.stderr
        assert [d["status"] for d in json.loads(first.stdout)] == ["archived"]
        gaps = run("queries", "gaps", "--config", config, "--day", DAY, "--json", env=env)
        gaps_when_archived = json.loads(gaps.stdout)

        versions = s3.list_object_versions(Bucket="worm", Prefix="studio/")["Versions"]
        keys = sorted(v["Key"] for v in versions)
        assert f"studio/manifest/trading_day={DAY}.json" in keys
        assert sum("/events/" in k or k.startswith("studio/events/") for k in keys) == 2
        now = dt.datetime.now(dt.UTC)
        for version in versions:
            kept = s3.get_object_retention(Bucket="worm", Key=version["Key"])["Retention"]
            assert kept["Mode"] == "COMPLIANCE"
            left = kept["RetainUntilDate"] - now
            assert dt.timedelta(days=2, hours=23) < left <= dt.timedelta(days=3)
        victim = versions[0]
        with pytest.raises(ClientError):
            s3.delete_object(Bucket="worm", Key=victim["Key"], VersionId=victim["VersionId"])

        again = run("queries", "archive", "--config", config, env=env)
        assert again.returncode == 0, again.stderr
        assert "already archived" in again.stdout
        Appender(engine).append([frame(A, 99, at_ns=NOON_NS + 3 * 3600 * 10**9, day=DAY)], [])
        changed = run("queries", "archive", "--config", config, env=env)
        assert changed.returncode == 1
        assert "DIFFERS from the store" in changed.stdout
        after = s3.list_object_versions(Bucket="worm", Prefix="studio/")["Versions"]
        assert len(after) == len(versions)  # nothing written by the later runs

        # A store that does not hold the day: the day is read back from the bucket.
        empty = tmp_path / "empty"
        empty.mkdir()
        fresh = _config(empty, migrated(f"sqlite:///{empty / 'store.db'}"), settings)
        archived = run("queries", "gaps", "--config", fresh, "--day", DAY, "--json", env=env)
        assert json.loads(archived.stdout) == gaps_when_archived
        # The endpoint from the AWS SDKs' variable alone: the reader goes there too.
        by_env = empty / "by-env.toml"
        by_env.write_text(fresh.read_text().replace(f'endpoint_url = "{server.endpoint}"\n', ""))
        assert "endpoint_url" not in by_env.read_text()
        answer = run("queries", "gaps", "--config", by_env, "--day", DAY, "--json",
                     env={**env, "AWS_ENDPOINT_URL": server.endpoint})  # fmt: skip
        assert json.loads(answer.stdout) == gaps_when_archived, answer.stderr
        checked = run("queries", "verify", "--config", fresh, "--day", DAY, "--json", env=env)
        assert checked.returncode == 0, checked.stdout
        assert [c["rows"] for c in json.loads(checked.stdout)["accounts"]] == [14, 57]

    unreachable = _config(tmp_path, engine, '[archive]\nurl = "s3://worm/studio"\n'
                          'endpoint_url = "http://127.0.0.1:9"\n')  # fmt: skip
    down = run("queries", "archive", "--config", unreachable, env=env)
    assert down.returncode == 1
    assert down.stderr.startswith("studio-query: error: archive s3://worm/studio: ")
    assert down.stderr.count("\n") == 1


def test_reading_a_day_from_s3_fails_in_one_line_and_leaves_no_scratch(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day on S3 is fetched as its manifest lists it: credentials the server refuses, a
    listed file the bucket lacks, a listed path that would leave the scratch directory and a
    server that does not answer are each one line naming what is wrong (never the secret),
    and no scratch directory is left behind."""
    from tests.support.cli import cli_env
    from tests.support.s3 import seaweedfs
    from tests.support.stores import migrated

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the fetched copies go
    record(migrated(sqlite_url))
    empty = tmp_path / "empty"
    empty.mkdir()
    with seaweedfs(tmp_path / "s3") as server:
        s3: Any = server.client()
        s3.create_bucket(Bucket="open")  # no Object Lock: the test breaks the archived day
        settings = (f'[archive]\nurl = "s3://open/studio"\nendpoint_url = "{server.endpoint}"\n'
                    'region = "us-east-1"\nobject_lock_mode = ""\n')  # fmt: skip
        env = {**cli_env(), **server.env}
        config = _config(tmp_path, migrated(sqlite_url), settings)
        assert run("queries", "archive", "--config", config, env=env).returncode == 0
        fresh = _config(empty, migrated(f"sqlite:///{empty / 'store.db'}"), settings)

        def gaps(environment: dict[str, str]) -> str:
            """stderr of a gaps that must fail in one line."""
            done = run("queries", "gaps", "--config", fresh, "--day", DAY, env=environment)
            assert done.returncode == 1, done.stdout
            assert done.stderr.count("\n") == 1, done.stderr
            return done.stderr

        assert run("queries", "gaps", "--config", fresh, "--day", DAY, env=env).returncode == 0
        refused = gaps({**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret-5d1c"})
        assert refused.startswith("studio-query: error: archive s3://open/studio: reading "
                                  f"manifest/trading_day={DAY}.json: ")  # fmt: skip
        assert "not-the-secret-5d1c" not in refused

        key = f"studio/manifest/trading_day={DAY}.json"
        manifest = json.loads(s3.get_object(Bucket="open", Key=key)["Body"].read())
        victim = manifest["files"][-1]["path"]
        s3.put_object(Bucket="open", Key=f"studio/{victim}", Body=b"PAR1")  # cut short
        assert f"{victim}: 4 bytes fetched, the manifest says" in gaps(env)
        s3.delete_object(Bucket="open", Key=f"studio/{victim}")
        assert f"the manifest lists {victim}, which the bucket does not hold" in gaps(env)

        manifest["files"][-1]["path"] = "../escaped.parquet"
        s3.put_object(Bucket="open", Key=key, Body=json.dumps(manifest).encode())
        assert "escaped.parquet" in gaps(env)

    assert gaps(env).startswith("studio-query: error: archive s3://open/studio: reading ")
    assert list(scratch.iterdir()) == []


def _answers(config: Path, *extra: object) -> dict[str, Any]:
    """What gaps, audit, reconcile and verify say of DAY through ``config`` (the source's
    own name aside)."""
    found: dict[str, Any] = {}
    for command in ("gaps", "audit", "reconcile", "verify"):
        result = run("queries", command, "--config", config, "--day", DAY, "--json", *extra)
        assert result.returncode in (0, 1), result.stderr
        found[command] = {k: v for k, v in json.loads(result.stdout).items() if k != "source"}
    return found


def test_a_day_the_store_no_longer_holds_is_answered_from_the_archive(
    engine: Engine, tmp_path: Path
) -> None:
    """The same questions through a configuration whose store never held the day (as after
    a prune) get the same answers from the archive."""
    from tests.support.stores import migrated

    record(engine)
    config = _config(tmp_path, engine, f'[archive]\nurl = "{tmp_path / "archive"}"\n')
    assert run("queries", "archive", "--config", config).returncode == 0
    before = _answers(config)
    empty = tmp_path / "empty"
    empty.mkdir()
    pruned = _config(empty, migrated(f"sqlite:///{empty / 'store.db'}"),
                     f'[archive]\nurl = "{tmp_path / "archive"}"\n')  # fmt: skip
    assert _answers(pruned) == before
    assert run("queries", "gaps", "--config", pruned, "--day", NEXT_DAY).returncode == 0


NEXT_DAY = DAY + dt.timedelta(days=1)
