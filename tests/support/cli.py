"""``studio-recorder`` and ``studio-query`` as a user runs them.

:func:`run` calls the console script's own ``main()`` in this process (no interpreter start,
no second import of DuckDB, pyarrow, SQLAlchemy and alembic: ~0.7 s saved per command) and
answers like ``subprocess.run`` does, so a test reads the same exit code, stdout and stderr
either way. It goes through ``main()`` and not ``cli``, because ``main()`` is what turns usage
errors into one line and exceptions into exit codes. :func:`run_process` starts a real
``python -m`` process, for what only a process shows (signals, a terminal, resource limits,
the interpreter's own exit).
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import re
import signal
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import click
from click.testing import CliRunner

from . import ROOT

#: The console script of each package (``python -m recorder`` is ``studio-recorder``).
PROGRAMS: Final = {"recorder": "studio-recorder", "queries": "studio-query"}


def cli_env() -> dict[str, str]:
    """The test's environment without any STUDIO_* setting (each test says what it uses)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_")}


def run(
    module: str, *args: object, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` (``recorder`` or ``queries``), in this process.

    ``env`` is the command's whole environment (default: :func:`cli_env`): variables not in it
    are unset while the command runs. ``cwd`` is its working directory. Arguments are turned
    into strings (a ``date`` or a ``Path`` may be passed). An exception that escapes ``main()``
    is printed to stderr with exit code 1, as the interpreter would. Logging set up by the
    command (``run``, ``demo``) is undone afterwards, and what it left open is freed.
    """
    argv = [str(arg) for arg in args]
    main = importlib.import_module(f"{module}.cli").main
    environment = cli_env() if env is None else dict(env)
    overrides: dict[str, str | None] = {k: None for k in os.environ if k not in environment}
    overrides.update(environment)
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    saved_sigint = signal.getsignal(signal.SIGINT)  # a finished command ignores Ctrl-C
    with (
        _logging_restored(),
        _freed_as_at_exit(),
        CliRunner().isolation(env=overrides) as (out, err, _),
    ):
        sys.argv = [PROGRAMS[module], *argv]
        try:
            if cwd is not None:
                os.chdir(cwd)
            main()
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except Exception:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.argv = saved_argv
            os.chdir(saved_cwd)
            signal.signal(signal.SIGINT, saved_sigint)
        stdout, stderr = _text(out.getvalue()), _text(err.getvalue())
    return subprocess.CompletedProcess([sys.executable, "-m", module, *argv], code, stdout, stderr)


def run_process(
    module: str,
    *args: object,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 120,
    **popen: Any,
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` as a real process (stdout and stderr captured unless
    ``popen`` says otherwise); ``env`` and ``cwd`` as for :func:`run`."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        text=True, timeout=timeout_s, check=False, cwd=cwd or ROOT,
        env=cli_env() if env is None else env, **popen,
    )  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    """The command failed with exit ``code`` and said why in one line naming its program
    (``studio-query: error: …``), containing ``fragment``, and no traceback."""
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    args = list(result.args)
    named = args[2:3] if args[1:2] == ["-m"] else list(PROGRAMS)  # else: a `python -c` script
    assert lines[0].startswith(tuple(f"{PROGRAMS[m]}: error: " for m in named)), lines[0]
    assert fragment in lines[0], lines[0]


def command_paths(
    module: str, *, groups: bool = False, under: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Every command of ``MODULE.cli.cli`` as its path of names (``("db", "upgrade")``), subgroups
    walked, in definition order; with ``groups`` the groups too (the program itself is ``()``).
    ``under`` keeps one subtree (the group itself included)."""
    found: list[tuple[str, ...]] = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        children = command.commands if isinstance(command, click.Group) else None
        if children is None or groups:
            found.append(path)
        for name, child in (children or {}).items():
            walk(child, (*path, name))

    walk(importlib.import_module(f"{module}.cli").cli, ())
    return [path for path in found if path[: len(under)] == under]


def documented(readme: str, module: str, path: tuple[str, ...]) -> bool:
    """Does ``readme`` show ``PROGRAM PATH`` (e.g. ``studio-recorder db upgrade``), as a whole
    command name (not the start of a longer one)?"""
    name = re.escape(" ".join((PROGRAMS[module], *path)))
    return re.search(rf"{name}(?![\w-])", readme) is not None


def _exit_code(code: object) -> int:
    """The exit status ``sys.exit(code)`` gives a process (a message goes to stderr)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


@contextmanager
def _freed_as_at_exit() -> Iterator[None]:
    """Free what the command leaves open (an engine's pooled connections, say) before the
    next test runs, silently, as the end of its process would: otherwise a ResourceWarning
    (an error in this suite) would be raised whenever the garbage collector got to it, in
    some other test.

    The collector is off while the command runs, so everything it created is still in the
    youngest generation, and collecting that generation alone (milliseconds, where a full
    collection of this process costs ~0.1 s) frees every cycle it left behind.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            try:
                yield
            finally:
                gc.collect(0)
    finally:
        if enabled:
            gc.enable()


def _text(data: bytes) -> str:
    """Bytes as ``subprocess.run(text=True)`` decodes them (universal newlines)."""
    return data.decode().replace("\r\n", "\n").replace("\r", "\n")


@contextmanager
def _logging_restored() -> Iterator[None]:
    """Put the root logger's handlers and every logger's level back as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loggers = logging.Logger.manager.loggerDict
    levels = {name: lg.level for name, lg in loggers.items() if isinstance(lg, logging.Logger)}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, lg in list(loggers.items()):
            if isinstance(lg, logging.Logger):
                lg.setLevel(levels.get(name, logging.NOTSET))
