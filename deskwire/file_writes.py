"""Editing a file that several processes may edit at once: a lock, then an atomic replace.

``connections.yml`` is edited by the web pages (gunicorn runs two processes, each with
threads) and by the CLI. Each edit reads the file, changes it and writes it back, so two
edits must not interleave (one would be lost) and a reader must never see half a file:

- :func:`locked` holds an exclusive ``flock`` on a lock file beside the edited file
  (``.connections.yml.lock``). ``flock`` locks belong to an open file, so they exclude
  other threads of the same process as well as other processes. The lock file is never
  removed: removing it would let two editors lock two different files.
- :func:`write_atomically` writes a temporary file in the same folder, flushes it to disk
  and renames it over the file, keeping the file's mode: readers see the old or the new
  text, never a mix, even after a crash.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["locked", "write_atomically"]

# Mode of a file this module creates: it may hold credentials (a connection's values:).
NEW_FILE_MODE = 0o600


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextmanager
def locked(path: Path) -> Iterator[Path]:
    """Hold the edit lock of ``path`` (across processes and threads) for the ``with`` block.

    Yields the real path of the file (a symlink resolved), which the block reads and
    passes to :func:`write_atomically`. Raises :class:`OSError` when the lock file cannot
    be made (folder not writable).

    The wait is the kernel's: a waiting editor is woken as soon as the lock is free (so a
    busy editor cannot starve it, as polling would let it), and a holder that ends, even
    killed, releases the lock with its open file. An edit holds it for milliseconds.
    """
    target = path.resolve()
    descriptor = os.open(_lock_path(target), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield target
    finally:
        os.close(descriptor)  # closing the file releases the lock


def write_atomically(path: Path, text: str) -> None:
    """Replace the content of ``path`` with ``text`` (UTF-8) in one step.

    Call it inside :func:`locked` when the new text was made from the old one. The file
    keeps its mode; a new file gets mode 0600.
    """
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (a crash right after keeps the new file)."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
