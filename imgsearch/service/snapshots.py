"""Snapshots: Index objects of one folder that concurrent queries lease, never refreshed under them.

An :class:`~imgsearch.index.Index` is modified by :meth:`Index.refresh` (a newer manifest:
segments opened and closed, ids renumbered after a merge), so one that queries are running on must
not be refreshed. :class:`Snapshots` keeps the newest one for new queries and brings a spare up to
date when the manifest's generation moved: one no query holds any more, or a new one (opening costs
the manifest and a map of each segment, under 1 ms at 800 images). A query reads the manifest's
generation first (from its text, not parsed: :func:`imgsearch.store.manifest.generation_of`), so an
image is visible to every query that starts after its commit, in this process or another.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from ..index import Index
from ..store import manifest as mf


class Snapshots:
    """Index objects of one folder for concurrent queries; see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()  # guards the fields below (held for microseconds)
        self._refreshing = threading.Lock()  # one refresh at a time
        self._current = Index.open(directory)
        self._users: dict[int, int] = {id(self._current): 0}
        self._spares: list[Index] = []

    @property
    def generation(self) -> int:
        return self._current.reader.manifest.generation

    @contextlib.contextmanager
    def lease(self) -> Iterator[Index]:
        """The newest snapshot, not refreshed while the ``with`` block holds it."""
        self._catch_up()
        with self._lock:
            index = self._current
            self._users[id(index)] += 1
        try:
            yield index
        finally:
            with self._lock:
                self._users[id(index)] -= 1
                if index is not self._current and self._users[id(index)] == 0:
                    self._retire(index)

    def _retire(self, index: Index) -> None:
        """Keep one idle snapshot as the spare; close the others, which would hold the files of
        merged-away segments open (call with ``_lock`` held)."""
        del self._users[id(index)]
        if self._spares:
            index.close()
        else:
            self._spares.append(index)

    def _catch_up(self) -> None:
        """Publish a snapshot of the manifest on disk if it is newer than the current one."""
        text = mf.read_text(self.directory)
        on_disk = mf.generation_of(text)
        if on_disk is None:
            on_disk = mf.parse(text, self.directory / mf.MANIFEST).generation
        if on_disk == self.generation:
            return
        with self._refreshing:
            if self.generation >= on_disk:  # another thread published it meanwhile
                return
            with self._lock:
                spare = self._spares.pop() if self._spares else None
            if spare is None:
                spare = Index.open(self.directory)
            else:
                spare.refresh()
            with self._lock:
                old, self._current = self._current, spare
                self._users[id(spare)] = 0
                if self._users[id(old)] == 0:
                    self._retire(old)

    def close(self) -> None:
        with self._lock:
            for index in (self._current, *self._spares):
                index.close()
            self._spares.clear()
