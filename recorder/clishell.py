"""What both command lines share: one-line errors, exit codes, and the store options.

Library errors become one line on stderr here and nowhere else: ``PROG: error: what
happened, what to do``, exit 2 for configuration and usage errors, 1 for everything
else that went wrong; bugs still raise. :class:`OneLineGroup` gives click's own usage
errors (a missing option, a bad value) the same one-line form, so a scheduled job's
log never holds a usage screen or a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from .errors import ConfigError
from .interrupts import Interrupted, completed, interrupted

P = ParamSpec("P")
R = TypeVar("R")

#: Exit code of configuration and usage errors (click's own usage errors use it too).
USAGE_EXIT: int = 2

#: ``(exception types, exit code, one-line message)`` rules, tried in order.
ErrorRule = tuple[type[BaseException] | tuple[type[BaseException], ...], int, Callable[[Any], str]]


def _prog() -> str:
    context = click.get_current_context(silent=True)
    if context is None:
        return "studio"
    return context.find_root().info_name or "studio"


def fail(message: str, code: int = 1, prog: str | None = None) -> NoReturn:
    """Print ``PROG: error: MESSAGE`` on stderr and exit with ``code``."""
    click.echo(f"{prog or _prog()}: error: {message}", err=True)
    sys.exit(code)


def warn(message: str) -> None:
    """Print ``PROG: warning: MESSAGE`` on stderr."""
    click.echo(f"{_prog()}: warning: {message}", err=True)


def error_handler(rules: Sequence[ErrorRule]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator turning the exceptions the rules name into one line and an exit code."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                for types, code, message in rules:
                    if isinstance(exc, types):
                        fail(message(exc), code)
                raise

        return wrapper

    return decorate


class OneLineGroup(click.Group):
    """A command group whose usage errors are one line (``PROG: error: …``), exit 2.

    Overrides :meth:`main`, which both the console script and click's test runner call,
    so what tests see is what users see. Interrupts exit 130 without a traceback.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        # An interrupt while the group parses its arguments (just after the imports): ours too.
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted from None

    def invoke(self, ctx: click.Context) -> Any:
        # click answers a KeyboardInterrupt by printing an empty line: pass it on as our own.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted from None
        except BaseExceptionGroup as group:  # trio wraps an interrupt that lands in a nursery
            if group.subgroup(KeyboardInterrupt) is not None:
                raise Interrupted from None
            raise

    def main(self, *args: Any, **kwargs: Any) -> Any:
        prog = kwargs.get("prog_name") or self.name or "studio"
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code, prog)
        except (Interrupted, KeyboardInterrupt, click.exceptions.Abort):
            interrupted(prog)
        completed()  # done: a Ctrl-C now must not turn success into exit 130
        sys.exit(code if isinstance(code, int) else 0)


def only_one(*options: tuple[str, object]) -> None:
    """ConfigError unless at most one of the ``(flag, value)`` options was given."""
    given = [flag for flag, value in options if value]
    if len(given) < 2:
        return
    flags = [flag for flag, _ in options]
    if len(flags) == 2:
        raise ConfigError(f"give either {flags[0]} or {flags[1]}, not both")
    raise ConfigError(f"give one of {', '.join(flags[:-1])} or {flags[-1]}")


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config PATH``: the recorder's configuration (default ``$STUDIO_RECORDER_CONFIG``)."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=str),
        help="Recorder configuration (TOML). Default: $STUDIO_RECORDER_CONFIG.",
    )(func)


def db_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--db URL``: the store, instead of the configuration's ``[store] url``."""
    return click.option(
        "--db",
        "db_url",
        metavar="URL",
        help="SQLAlchemy URL of the store, instead of [store] url from --config.",
    )(func)
