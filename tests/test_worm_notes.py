"""Checkpoint notes on WORM object storage (``[signing] checkpoint_dir = "s3://…"``): each
signed note becomes an object of its own under the archive's Object Lock as it is made; an
unreachable store is retried, counted and shown in /healthz; ``verify --checkpoints s3://…``
holds the store against them. A real SeaweedFS with Object Lock."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from recorder.appender import Appender
from recorder.attestation import Attestation, ObjectNoteCopies, read_store_id
from recorder.config import ArchiveSettings
from recorder.health import judge
from recorder.objectstore import ObjectArchive
from recorder.records import LogRecord
from recorder.signing import load_signer, write_new_key
from recorder.state import RecorderState
from recorder.tradingday import DEFAULT_TIMEZONE, zone
from tests.support.cli import cli_env, run
from tests.support.frames import DAY, NOON_NS, A, frame
from tests.support.s3 import seaweedfs
from tests.support.stores import migrated


def test_notes_go_to_locked_objects_and_verify_reads_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "signing-key"
    verifier = write_new_key(key_file)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = migrated(url)
    with engine.connect() as conn:
        store_id = read_store_id(conn)
    with seaweedfs(tmp_path / "s3") as server:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        s3: Any = server.client()
        s3.create_bucket(Bucket="notes", ObjectLockEnabledForBucket=True)
        down = ObjectArchive(ArchiveSettings(url="s3://notes/cp", endpoint_url="http://127.0.0.1:9",
                                             retention_days=2))  # fmt: skip
        copies = ObjectNoteCopies(down)
        attestation = Attestation(load_signer(key_file), store_id, zone(DEFAULT_TIMEZONE), copies)
        appender = Appender(engine, attestation)
        closing = LogRecord("s-100000", A, NOON_NS, "closed", "shutdown")
        made = appender.append([frame(A, n) for n in (1, 2, 3)], [closing])
        assert made  # the session's end attests the account
        # The appender copied the notes after its commit; the store could not be reached:
        # they wait (in the store, too), counted, and /healthz says so.
        assert (copies.failures, len(copies.pending)) == (1, len(made))
        state = RecorderState.for_accounts(())
        state.writer.checkpoint_copies_waiting = len(copies.pending)
        assert any("not yet copied" in reason for reason in judge(state, 0.0).reasons)

        copies.store = ObjectArchive(ArchiveSettings(url="s3://notes/cp",
                                                     endpoint_url=server.endpoint,
                                                     retention_days=2))  # fmt: skip
        copies.publish([])  # the next checkpoint's turn: everything waiting goes
        assert copies.pending == []
        objects = s3.list_objects_v2(Bucket="notes", Prefix="cp/")["Contents"]
        assert [o["Key"].split("/")[1] for o in objects] == [DAY.isoformat()] * len(made)
        now = dt.datetime.now(dt.UTC)
        for item in objects:
            kept = s3.get_object_retention(Bucket="notes", Key=item["Key"])["Retention"]
            assert kept["Mode"] == "COMPLIANCE"
            assert dt.timedelta(days=1, hours=23) < kept["RetainUntilDate"] - now
        env = {**cli_env(), **server.env, "AWS_ENDPOINT_URL": server.endpoint}
        checked = run("queries", "verify", "--db", url, "--public-key", verifier,
                      "--checkpoints", "s3://notes/cp", "--json", env=env)  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        (account,) = json.loads(checked.stdout)["accounts"]
        assert (account["attested"], account["checkpoints"]) == (True, len(made))


def test_checkpoint_dir_on_object_storage_is_read_as_such(tmp_path: Path) -> None:
    from recorder.config import load_config
    from recorder.errors import ConfigError
    from tests.support.config import write_config

    path = write_config(tmp_path / "recorder.toml", [A], f"sqlite:///{tmp_path / 's.db'}")
    base = path.read_text()
    path.write_text(base + '[signing]\ncheckpoint_dir = "s3://notes/cp"\n')
    signing = load_config(path, {}).signing
    assert (signing.checkpoint_url, signing.checkpoint_dir) == ("s3://notes/cp", None)
    path.write_text(base + '[signing]\ncheckpoint_dir = "s3:///cp"\n')
    with pytest.raises(ConfigError, match="checkpoint_dir 's3:///cp' names no bucket"):
        load_config(path, {})
