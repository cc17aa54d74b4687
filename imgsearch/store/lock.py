"""The index's writer lock: one writer at a time, waiting its turn; readers never take it.

A POSIX record lock (``fcntl.lockf``) on ``<index>/LOCK``. The kernel releases it when its owner
dies, however it dies (``kill -9`` included), and a forked child does not inherit it, so an
extraction worker that outlives its parent cannot hold the index. The file keeps the owner's pid
and command line for the message a waiting writer prints; its content is never trusted.

Record locks belong to the process, and closing *any* descriptor of the file drops them, so only
this module opens the lock file, and within one process the writers of an index first take a
thread lock of that index: one of them at a time holds the file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import threading
import time
from pathlib import Path

from ..errors import IndexLockedError

LOCK_NAME = "LOCK"
POLL_SECONDS = 0.05
_IN_PROCESS: dict[str, threading.Lock] = {}  # realpath of the lock file -> its thread lock
_REGISTRY = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _REGISTRY:
        return _IN_PROCESS.setdefault(os.path.realpath(path), threading.Lock())


class WriterLock:
    """Hold ``<directory>/LOCK`` exclusively; ``timeout`` seconds to wait (None: for ever, 0: no wait).
    ``name`` another lock file of the index (``MERGE``: the one merger, :mod:`.writer`).

    Use as a context manager; raises :class:`~imgsearch.errors.IndexLockedError`, naming the
    holder, when the wait runs out.
    """

    def __init__(
        self, directory: str | os.PathLike[str], timeout: float | None = None, name: str = LOCK_NAME
    ) -> None:
        self.path = Path(directory) / name
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this process already holds the lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        local = _thread_lock(self.path)
        if not local.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.monotonic())):
            raise IndexLockedError(
                f"{self.path.parent}: another thread of this process holds {self.path.name}; "
                f"waited {self.timeout:g} s"
            )
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except BaseException:
            local.release()
            raise
        try:
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EACCES, errno.EAGAIN):
                        raise
                if deadline is not None and time.monotonic() >= deadline:
                    what = "is writing this index" if self.path.name == LOCK_NAME else f"holds {self.path.name}"
                    raise IndexLockedError(
                        f"{self.path.parent}: another process {what} ({_holder(fd)}); "
                        f"waited {self.timeout:g} s"
                    )
                time.sleep(POLL_SECONDS)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {' '.join(sys.argv)[:500]}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            local.release()
            raise
        self._fd = fd
        self._local = local

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:  # a full disk cannot truncate, and need not: the lock goes with the close
            pass
        os.close(fd)  # releases the record lock
        self._local.release()


def _holder(fd: int) -> str:
    """Who holds the lock, from what the holder wrote (best effort, for messages only)."""
    try:
        text = os.pread(fd, 600, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    pid, _, command = text.partition(" ")
    return f"pid {pid}: {command}" if pid.isdigit() else "pid unknown"
