"""``studio-recorder db`` through the console script's ``main()``: real databases, one-line
errors."""

import functools
from pathlib import Path

import pytest

from recorder import migrate
from tests.support.cli import command_paths, one_line_error, run_process
from tests.support.cli import run as run_module

run = functools.partial(run_module, "recorder")


def test_upgrade_twice_then_current_and_check(db_url: str) -> None:
    first = run("db", "upgrade", "--db", db_url)
    assert first.returncode == 0, first.stderr
    head = migrate.head_revision()
    assert f"upgraded from empty to revision {head}" in first.stdout
    second = run("db", "upgrade", "--db", db_url)
    assert second.returncode == 0
    assert f"already at revision {head}" in second.stdout
    current = run("db", "current", "--db", db_url)
    assert current.stdout.startswith(f"{head} (head {head}; up to date)")
    check = run("db", "check", "--db", db_url)
    assert check.returncode == 0
    assert "matches the models" in check.stdout


def test_upgrade_from_config(tmp_path: Path) -> None:
    config = tmp_path / "recorder.toml"
    config.write_text(f'[studio]\naccounts = ["1"]\n[store]\nurl = "sqlite:///{tmp_path}/c.db"\n')
    result = run("db", "upgrade", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "c.db").is_file()


def test_missing_config_is_one_line_exit_2(tmp_path: Path) -> None:
    # A real process: main() as the interpreter runs it, exit code and all.
    one_line_error(run_process("recorder", "db", "upgrade", "--config", "missing.toml",
                               cwd=tmp_path), 2,
                   "missing.toml: configuration file not found")  # fmt: skip


def test_typo_in_config_is_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[studio]\naccounts = ["1"]\n[recorder]\nlivenes_timeout_s = 3\n')
    one_line_error(run("db", "upgrade", "--config", str(config)), 2,
                   "unknown key [recorder] livenes_timeout_s")  # fmt: skip


def test_no_config_at_all_is_exit_2(tmp_path: Path) -> None:
    one_line_error(run("db", "upgrade", cwd=tmp_path), 2, "pass --config PATH")


def test_both_db_and_config_is_exit_2(tmp_path: Path) -> None:
    one_line_error(run("db", "upgrade", "--db", "sqlite:///x.db", "--config", "c.toml",
                       cwd=tmp_path), 2, "either --db or --config")  # fmt: skip


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("db", "current", "--db", "sqlite:///absent.db"), "database file not found"),
        (("db", "check", "--db", "sqlite:///absent.db"), "database file not found"),
        (("db", "upgrade", "--db", "not a url"), "not a database URL"),
        (("db", "upgrade", "--db", "postgresql://postgres@127.0.0.1:1/test"), "database error"),
    ],
)
def test_store_errors_are_one_line_exit_1(
    tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    one_line_error(run(*args, cwd=tmp_path), 1, fragment)


def test_check_on_empty_database_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    one_line_error(run("db", "check", "--db", f"sqlite:///{tmp_path}/empty.db"), 1,
                   "run `studio-recorder db upgrade`")  # fmt: skip


@pytest.mark.parametrize(
    "args", command_paths("recorder", groups=True, under=("db",)), ids=" ".join
)
def test_help_on_every_command(args: tuple[str, ...]) -> None:
    result = run(*args, "--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout
