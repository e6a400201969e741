"""Security guarantees of files and configuration: owner-only store and exports, warnings
for a secret named by a file others can read, the secret read only when needed, plain URLs
only for loopback; and the README's Security section names tests that exist.

The other security tests: ``test_secrets.py`` (nothing leaks), ``test_tls.py`` (certificates
are verified), ``test_query_inputs.py`` (no SQL injection, no path escape).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from recorder import migrate
from recorder.appender import Appender
from recorder.config import load_config
from recorder.ownership import SqliteFileLock
from recorder.records import LogRecord
from recorder.store import open_engine
from tests.support import ROOT
from tests.support.cli import cli_env, run
from tests.support.config import SECRET
from tests.support.frames import DAY, NOON_NS, A, B, fill

# -- file modes ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_and_its_wal_shm_and_lock_files_are_owner_only_under_umask_022(
    tmp_path: Path,
) -> None:
    database = tmp_path / "store.db"
    previous = os.umask(0o022)
    try:
        engine = open_engine(f"sqlite:///{database}")
        migrate.upgrade(engine)
        lock = SqliteFileLock(database)
        lock.acquire()
        with engine.connect():  # an open connection keeps -wal and -shm in place
            Appender(engine).append([fill(A, 1)], [LogRecord("s", A, NOON_NS, "opened")])
            names = {p.name for p in tmp_path.iterdir()}
            assert {"store.db", "store.db-wal", "store.db-shm", "store.db.lock"} <= names
            for path in tmp_path.iterdir():
                assert _mode(path) == 0o600, (path.name, oct(_mode(path)))
        lock.release()
        engine.dispose()
    finally:
        os.umask(previous)


def test_cli_created_store_and_export_are_owner_only_under_umask_022(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # inherited by the processes
    try:
        url = f"sqlite:///{tmp_path}/cli.db"
        upgrade = run("recorder", "db", "upgrade", "--db", url)
        assert upgrade.returncode == 0, upgrade.stderr
        engine = open_engine(url)
        Appender(engine).append([fill(A, 1), fill(B, 2)])
        engine.dispose()
        out = tmp_path / "new" / "export"
        export = run("queries", "export", "--db", url, "--day", DAY, "--out", str(out))
        assert export.returncode == 0, export.stderr
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "cli.db") == 0o600
    created = [out.parent, out, *out.rglob("*")]
    assert len(created) > 10
    for path in created:
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), (path, oct(_mode(path)))


# -- configuration: permission warnings, lazy secret, plain URLs -----------------------------


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "recorder.toml"
    path.write_text(
        f'[studio]\naccounts = ["{A}"]\nclient_id = "c"\n{extra}'
        f'[store]\nurl = "sqlite:///{tmp_path}/store.db"\n'
    )
    return path


def test_only_a_secret_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o600)
    config = _config(tmp_path, 'client_secret_file = "secret"\n')
    config.chmod(0o644)  # holds no secret, only the name of the file that does: no warning
    assert load_config(config, env={}).warnings == ()
    migrate.upgrade(open_engine(f"sqlite:///{tmp_path}/store.db"))
    for command in (("db", "current"), ("db", "check"), ("status",)):
        quiet = run("recorder", *command, "--config", str(config))
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stderr == ""
    secret_file.chmod(0o640)
    status = run("recorder", "status", "--config", str(config))
    assert status.stderr.splitlines() == [
        f"studio-recorder: warning: {secret_file} ([studio] client_secret_file) is readable by "
        "group/others (mode 0640): restrict it with chmod 600"
    ]  # once
    secret_file.chmod(0o600)
    # studio-query never needs the secret: it does not nag (scheduled jobs stay quiet).
    gaps = run("queries", "gaps", "--config", str(config), "--day", DAY)
    assert gaps.returncode == 0, gaps.stderr
    assert gaps.stderr == ""
    # A systemd credential: only the service reads it, and the config must stay readable.
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "secret").write_text(SECRET)
    (credentials / "secret").chmod(0o440)
    assert load_config(config, env={"CREDENTIALS_DIRECTORY": str(credentials)}).warnings == ()
    # Group-readable secret file: warned about.
    secret_file.chmod(0o640)
    assert load_config(config, env={}).warnings == (
        f"{secret_file} ([studio] client_secret_file) is readable by group/others "
        "(mode 0640): restrict it with chmod 600",
    )
    # A readable config that names no secret file holds nothing to protect.
    (tmp_path / "plain").mkdir()
    plain = _config(tmp_path / "plain", "")
    plain.chmod(0o644)
    assert load_config(plain, env={}).warnings == ()


@pytest.mark.parametrize("problem", ["missing", "unreadable"])
def test_queries_work_without_the_secret_file_and_run_names_it(
    tmp_path: Path, problem: str
) -> None:
    if problem == "unreadable" and os.geteuid() == 0:
        secret_file = tmp_path / "secret-dir"  # root reads any file: a directory cannot be read
        secret_file.mkdir(mode=0o700)
    else:
        secret_file = tmp_path / "secret"
        if problem == "unreadable":
            secret_file.write_text(SECRET)
            secret_file.chmod(0)
    config = _config(tmp_path, f'client_secret_file = "{secret_file.name}"\n')
    config.chmod(0o600)
    url = f"sqlite:///{tmp_path}/store.db"
    migrate.upgrade(open_engine(url))
    engine = open_engine(url)
    Appender(engine).append([fill(A, 1)])
    engine.dispose()
    commands = [
        ("recorder", "status"),
        ("queries", "gaps", "--day", DAY),
        ("queries", "export", "--day", DAY, "--out", str(tmp_path / "out")),
    ]
    if problem == "missing":
        commands += [
            ("recorder", "db", "current"),
            ("queries", "audit", "--day", DAY),
            ("queries", "verify"),
            ("queries", "sql", "--day", DAY, "SELECT count(*) AS n FROM events"),
        ]
    for module, *args in commands:
        result = run(module, *args, "--config", str(config))
        assert result.returncode == 0, (args, result.stderr)
        assert result.stderr == ""
    result = run("recorder", "run", "--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"studio-recorder: error: {config}: [studio] client_secret_file cannot be read "
        f"({secret_file}: "
    )


@pytest.mark.parametrize(
    ("key", "url", "command"),
    [
        ("url", "ws://studio.example.com/ws", ("recorder", "run")),
        ("url", "ws://10.1.2.3:80/ws", ("recorder", "status")),
        ("token_url", "http://auth.example.com/t", ("queries", "verify")),
        ("token_url", "http://[2001:db8::1]/t", ("recorder", "run")),
    ],
)
def test_cli_refuses_plain_urls_for_other_hosts_in_one_line(
    tmp_path: Path, key: str, url: str, command: tuple[str, str]
) -> None:
    config = _config(tmp_path, f'{key} = "{url}"\n')
    env = {**cli_env(), "STUDIO_CLIENT_SECRET": "x"}
    result = run(*command, "--config", str(config), env=env)
    assert result.returncode == 2, result.stderr
    scheme, secure = ("ws", "wss") if key == "url" else ("http", "https")
    prog = "studio-recorder" if command[0] == "recorder" else "studio-query"
    assert result.stderr.splitlines() == [
        f"{prog}: error: {config}: [studio] {key} uses {scheme}:// for a non-loopback host; "
        f"use {secure}:// ({url})"
    ]


def test_every_test_the_readme_security_section_names_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    sources = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py")}
    named = re.findall(r"tests/(test_\w+\.py)::(test_\w+)", section)
    assert len(named) > 20
    for file_name, test_name in named:
        assert f"def {test_name}(" in sources[file_name], f"{file_name}::{test_name}"
    everywhere = "".join(sources.values())
    for test_name in set(re.findall(r"`(test_\w+)`", section)):
        assert f"def {test_name}(" in everywhere, test_name
