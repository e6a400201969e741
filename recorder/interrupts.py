"""Ctrl-C on the command line: one line, exit 130, and only when it is true that nothing
was changed.

Standard library only: the console scripts import this before anything heavy, so an
interrupt that lands while DuckDB, pyarrow or SQLAlchemy are being imported is answered
like any other. Commands that change something make the change at one instant (a rename,
a commit); once it is made, :func:`completed` ignores further interrupts, so a Ctrl-C
pressed then cannot turn a finished export into "nothing was changed".
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, Final, NoReturn

from .heap import claim_process

#: The exit code of a command stopped by SIGINT (128 + 2, as shells report it).
INTERRUPTED_EXIT: Final = 130
NOTHING_CHANGED: Final = "interrupted; nothing was changed"


class Interrupted(BaseException):
    """A KeyboardInterrupt on its way to the command line's one-line answer."""


def interrupted(prog: str) -> NoReturn:
    """Say that ``prog`` was interrupted before changing anything, and exit 130."""
    sys.stderr.write(f"{prog}: {NOTHING_CHANGED}\n")
    sys.stderr.flush()
    sys.exit(INTERRUPTED_EXIT)


def completed() -> None:
    """The command's change is made: from now on Ctrl-C is ignored (main thread only; a
    program embedding the queries from another thread keeps its own handling)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def console(module: str, prog: str) -> None:
    """Run ``module``'s ``main()`` as the console script ``prog``: importing the command line
    (DuckDB, pyarrow, SQLAlchemy: about a second) is interruptible like the command."""
    claim_process()  # the whole interpreter is this command's (recorder.heap)
    try:
        run: Callable[[], Any] = importlib.import_module(module).main
    except KeyboardInterrupt:
        interrupted(prog)
    run()
