"""Publishing an exported day atomically: private staging, fsync, swap into place, roll back.

An export writes everything under a hidden staging directory inside the export
directory (``DIR/.tmp-export-XXXXXXXX``, same file system, so renames are atomic),
fsyncs every file and directory, then swaps each table's day directory into
place and replaces the manifest last. Readers therefore never see a partially
written file under a final name. On Linux the swap of an existing day directory
is one ``renameat2(RENAME_EXCHANGE)``: the old day is visible until the instant
the new one is; where the file system cannot exchange, the old directory is
moved aside first and the day is briefly absent. If any step fails, the swaps
already done are undone and the previous export stays as it was.

One export at a time per export directory: a ``flock`` on the directory itself
serialises exporters, which also makes it safe to delete staging directories
left behind by an export that was killed.

Everything created is owner-only: directories 0700, files 0600.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Final

from recorder.errors import first_line

from .errors import QueryError

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
STAGING_PREFIX: Final = ".tmp-export-"

_AT_FDCWD: Final = -100
_RENAME_EXCHANGE: Final = 2


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and missing parents with mode 0700 (existing directories are left alone)."""
    missing = []
    current = path
    while not current.is_dir():
        if current.exists() or current.is_symlink():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(current))
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        os.mkdir(directory, DIR_MODE)
        os.chmod(directory, DIR_MODE)  # whatever the umask


def create_private_file(path: Path) -> None:
    """Create an empty file with mode 0600 (fails if it exists)."""
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))


def fsync_path(path: Path) -> None:
    """Flush a file's or directory's content and metadata to stable storage."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root``, deepest first, then ``root`` itself."""
    for directory, _subdirs, files in os.walk(root, topdown=False):
        for name in files:
            fsync_path(Path(directory, name))
        fsync_path(Path(directory))


def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``).

    Raises OSError; ``errno.EINVAL``/``ENOSYS`` when the kernel or file system
    cannot exchange (the caller then falls back to two renames).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(b))


class Staging:
    """A locked export directory with a private staging area; publish, or leave no trace.

    Use as a context manager: entering creates ``out`` (0700, with parents) if
    needed, takes the directory lock, removes staging directories of killed
    exports and creates a fresh one (:attr:`path`); leaving removes the staging
    directory and releases the lock, whether or not :meth:`publish` ran.
    Raises QueryError when ``out`` cannot be created or written.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out  # replaced on entry
        self._lock_fd: int | None = None

    def __enter__(self) -> Staging:
        try:
            make_private_dirs(self.out)
            self._lock_fd = os.open(self.out, os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            for stale in self.out.glob(STAGING_PREFIX + "*"):
                shutil.rmtree(stale)
            self.path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out))
        except OSError as exc:
            self._unlock()
            raise QueryError(f"cannot write to {self.out}: {describe(exc, self.out)}") from None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self.path != self.out:
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def publish(self, dirs: list[str], manifest: str, staged_manifest: str) -> None:
        """Swap each staged directory in ``dirs`` into place, then the manifest; all or nothing.

        ``dirs`` are paths relative to both the staging area and ``out`` (e.g.
        ``events/trading_day=2024-06-10``); a staged one that does not exist means
        "this day has no such directory any more" (the old one is removed). The
        manifest (``staged_manifest`` → ``manifest``) replaces the old one last:
        it is the commit point. On failure every swap done is undone and
        QueryError is raised.
        """
        undo: list[Callable[[], None]] = []
        touched: set[Path] = set()
        try:
            fsync_tree(self.path)
            for index, relative in enumerate(dirs):
                new, final = self.path / relative, self.out / relative
                aside = self.path / f".old-{index}"
                if new.exists():
                    make_private_dirs(final.parent)
                touched.add(final.parent)
                undo.append(self._swap(new, final, aside))
            target = self.out / manifest
            make_private_dirs(target.parent)
            touched.add(target.parent)
            os.replace(self.path / staged_manifest, target)
        except OSError as exc:
            for step in reversed(undo):
                with contextlib.suppress(OSError):
                    step()
            reason = describe(exc, self.out)
            raise QueryError(f"cannot publish the export in {self.out}: {reason}") from None
        try:
            for directory in sorted(touched):
                if directory.is_dir():
                    fsync_path(directory)
        except OSError as exc:
            reason = describe(exc, self.out)
            message = f"exported, but flushing {self.out} to disk failed: {reason}"
            raise QueryError(message) from None

    @staticmethod
    def _swap(new: Path, final: Path, aside: Path) -> Callable[[], None]:
        """Put ``new`` at ``final`` (the old ``final`` moves into staging); return the undo."""
        has_new, has_old = new.exists(), final.exists()
        if has_new and has_old:
            try:
                _exchange(new, final)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
                    raise
            else:
                return lambda: _exchange(new, final)
            os.rename(final, aside)
            try:
                os.rename(new, final)
            except OSError:
                os.rename(aside, final)
                raise

            def undo_pair() -> None:
                os.rename(final, new)
                os.rename(aside, final)

            return undo_pair
        if has_new:
            os.rename(new, final)
            return lambda: os.rename(final, new)
        if has_old:
            os.rename(final, aside)
            return lambda: os.rename(aside, final)
        return lambda: None


def publish_directory(staged: Path, final: Path) -> None:
    """Put the fsynced directory ``staged`` at ``final`` in one step (exchanging it with the
    old ``final``, which is then removed): readers see the old directory or the new one,
    never a mixture. ``staged`` must be on the same file system (a sibling). Raises OSError;
    ``final`` is then as it was."""
    fsync_tree(staged)
    aside = staged.with_name(staged.name + ".old")
    Staging._swap(staged, final, aside)
    fsync_path(final.parent)
    for old in (staged, aside):  # where the old directory went: exchanged, or moved aside
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)


def describe(exc: OSError, out: Path) -> str:
    """One line for ``exc``: ``strerror``, naming the path when it is not ``out`` itself."""
    if exc.strerror:
        reason = exc.strerror
        if exc.filename and Path(exc.filename) != out:
            reason += f": {exc.filename}"
        return reason
    return first_line(exc)  # pyarrow's OSError: "[Errno 27] Error writing bytes ... Detail: ..."
