"""The index behind the service: queries in parallel threads on snapshots, writes on their own Index.

Each of ``imgsearch serve``'s worker processes has one :class:`Engine`. The processes are what
runs queries in parallel: the local tier's Python code and small numpy calls hold Python's lock.
On 2 cores, 2 processes ran new-image queries 1.80x and copies 1.71x as fast as one thread, 2
threads of one process 1.71x and 1.41x (``scripts/bench_parallel.py``, load average 1.2; on a
saturated machine threads gave 1.07x on new images). The threads of a worker overlap what does
release the lock.

Queries never wait for a write and writes never wait for queries:

* **Snapshots.** An :class:`~imgsearch.index.Index` is modified by :meth:`Index.refresh` (a newer
  manifest: segments opened and closed, ids renumbered after a merge), so one that queries are
  running on must not be refreshed. :class:`Snapshots` keeps the newest one for new queries and
  brings a spare up to date when the manifest's generation moved: one no query holds any more, or
  a new one (opening costs the manifest and a map of each segment, under 1 ms at 800 images). A
  query reads the manifest's generation first (from its text, not parsed:
  :func:`imgsearch.store.manifest.generation_of`), so an image is visible to every query that
  starts after its commit, in this process or another.
* **Writes** go through one more Index of the folder, which only the writer's threads touch, under
  the index's writer lock (one writer at a time, across the worker processes too).
  An upload's features are extracted in a process of the worker's own (:class:`Extractor`),
  which competes with the queries for a core but not for the interpreter lock.
  :meth:`Index.add_bytes` returns once the manifest naming the new segment is flushed to disk:
  the service acknowledges an add only then. Segments are merged afterwards by a
  :class:`Merger` thread, outside the writer lock (:meth:`Index.merge`), so no add waits for a
  merge: at 100,000 images one took 26 s, all of it under the lock when adds merged inline.
* **Time limits.** Work runs in two thread pools (queries, writes). A request waits at most
  ``timeout`` seconds for its answer: a query still queued then is dropped and one running goes on
  unanswered (504); an add still queued is dropped (503, not added), an add already running is
  always waited for, so that an answer never leaves the client guessing whether it was added.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from .. import extract
from ..config import IndexConfig
from ..errors import ImageReadError
from ..index import Index, describe
from ..results import QueryResult
from ..store import manifest as mf
from ..store import scan

T = TypeVar("T")
_log = logging.getLogger("imgsearch")


class Timeout(Exception):
    """The answer was not ready within the time allowed; ``started`` says whether work began."""

    def __init__(self, seconds: float, started: bool) -> None:
        self.seconds = seconds
        self.started = started
        super().__init__(f"no answer within {seconds:g} s")


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


class Merger:
    """Merges an index's segments in a background thread after writes (:meth:`Index.merge`).

    :meth:`poke` after a commit: a merge starts unless one is already due. A daemon thread, so a
    stopping server does not wait for a merge; one cut short leaves a file the next writer removes.
    """

    def __init__(self, index: Index) -> None:
        self.index = index
        self.merges = 0
        self.failures = 0
        self._due = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imgsearch-merge", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._due.set()

    def _run(self) -> None:
        while True:
            self._due.wait()
            if self._stop.is_set():
                return
            self._due.clear()
            try:
                self.merges += self.index.merge()
            except Exception as exc:  # a merge left for later must not end the thread
                self.failures += 1
                _log.warning("segments not merged: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self._due.set()


class Extractor:
    """Describes uploads in a process of its own (:meth:`Index.add_bytes`'s ``extract_upload``).

    In a worker's own threads, an upload's extraction shared the interpreter lock with the query
    threads: with four clients keeping both cores busy, ten adds a second fell behind, queued for
    seconds and took the cores from the queries (``scripts/bench_serve.py``, docs/results.md). A
    process competes for a core only. It is spawned (the worker runs threads: no fork), dies with
    its parent, and is replaced when it dies: the call it was running is made once more in a new
    process, and an upload that kills that one too is refused as unreadable (it costs its own add,
    never the worker's life).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self.replaced = 0  # processes that died and were replaced
        self._get().submit(os.getpid)  # start it now: spawning imports imgsearch (about a second)

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=extract._init_worker,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def pid(self) -> int:
        """The process's id (starting it if needed)."""
        return self._get().submit(os.getpid).result()

    def __call__(self, data: bytes, key: str, config: IndexConfig) -> extract.ImageRecord:
        for _ in range(2):
            pool = self._get()
            try:
                return pool.submit(extract.extract_bytes, data, key, config).result()
            except BrokenProcessPool:
                with self._lock:
                    if self._pool is pool:
                        self._pool = None
                        self.replaced += 1
                pool.shutdown(wait=False, cancel_futures=True)
                _log.warning("the upload extraction process died (on %r or before it); starting another", key)
        raise ImageReadError(key, "the extraction process died on it twice")

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class Engine:
    """Queries, adds, removals and lookups of one index folder, with their thread pools."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        query_threads: int,
        timeout: float,
        search: Mapping[str, Any] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.timeout = timeout
        self.snapshots = Snapshots(self.directory)
        self.writer = Index.open(self.directory)
        # SearchConfig overrides of every query (``imgsearch serve --search``), under a request's own
        self.search = dict(search or {})
        self.writer.search_config(**self.search)  # a wrong name or value: ConfigError now
        self.extractor = Extractor()
        self.writer.extract_upload = self.extractor
        self._queries = ThreadPoolExecutor(query_threads, thread_name_prefix="imgsearch-query")
        # Two: one extracts the next upload while the other holds the writer lock to commit.
        self._writes = ThreadPoolExecutor(2, thread_name_prefix="imgsearch-write")
        self.merger = Merger(self.writer)
        scan.warm_up()  # the compiled probe, before the first query needs it
        with self.snapshots.lease() as index:  # and the segments' postings and global search,
            index.reader.warm()  # shared by the worker's snapshots

    def close(self) -> None:
        self.merger.close()
        self._queries.shutdown(wait=True, cancel_futures=True)
        self._writes.shutdown(wait=True)  # an add that started finishes: it may have been acknowledged
        self.extractor.close()
        self.snapshots.close()
        self.writer.close()

    # -- the work, run in the pools ------------------------------------------------------------
    def query(
        self, images: list[bytes], names: list[str], top: int, **overrides: Any
    ) -> tuple[list[QueryResult], int]:
        """Query encoded images (``names``: what each result's ``query`` says); returns the results
        and the manifest generation searched."""
        with self.snapshots.lease() as index:
            results = index.query_many(images, top=top, refresh=False, **{**self.search, **overrides})
            generation = index.reader.manifest.generation
        for result, name in zip(results, names, strict=True):
            result.query = name
        return results, generation

    def add(self, key: str, data: bytes, *, replace: bool, deadline: float) -> tuple[str, str | None]:
        done = self.writer.add_bytes(key, data, timeout=_left(deadline), replace=replace, merge=False)
        self.merger.poke()
        return done

    def add_if_new(
        self,
        key: str,
        data: bytes,
        *,
        replace: bool,
        deadline: float,
        checked_at: int,
        top: int,
        **overrides: Any,
    ) -> tuple[str, str | None, QueryResult | None]:
        done = self.writer.add_bytes_if_new(
            key,
            data,
            top=top,
            timeout=_left(deadline),
            replace=replace,
            checked_at=checked_at,
            merge=False,
            **{**self.search, **overrides},
        )
        self.merger.poke()
        return done

    def remove(self, key: str, *, deadline: float) -> bool:
        removed = bool(self.writer.remove_keys([key], timeout=_left(deadline), merge=False))
        self.merger.poke()
        return removed

    def row(self, key: str) -> dict[str, Any] | None:
        """The stored row of ``key`` (the JSON of ``GET /v1/images/{key}``), or None."""
        with self.snapshots.lease() as index:
            return stored_row(index, key)

    def info(self) -> dict[str, Any]:
        """``imgsearch info --json``: what the manifest says now."""
        return describe(self.directory, mf.read(self.directory))

    # -- running it with a time limit ------------------------------------------------------------
    async def run_query(self, call: Callable[[], T]) -> T:
        """Run a query in the query pool; :class:`Timeout` after ``timeout`` seconds."""
        return await self._run(self._queries, call, abandon=True)

    async def run_write(self, call: Callable[[], T]) -> T:
        """Run a write in the write pool; :class:`Timeout` only if it had not started by then."""
        return await self._run(self._writes, call, abandon=False)

    async def _run(self, pool: ThreadPoolExecutor, call: Callable[[], T], *, abandon: bool) -> T:
        started = threading.Event()

        def job() -> T:
            started.set()
            return call()

        future: Future[T] = pool.submit(job)
        waiting = asyncio.wrap_future(future)
        waiting.add_done_callback(_consume)  # an abandoned query's outcome is nobody's
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), self.timeout)
        except asyncio.TimeoutError:
            if future.cancel() or abandon:
                raise Timeout(self.timeout, started.is_set()) from None
            return await waiting  # a write under way: its outcome is the answer


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _left(deadline: float) -> float:
    """Seconds left until ``deadline`` (time.monotonic), for the writer lock's wait."""
    return max(0.0, deadline - time.monotonic())


def stored_row(index: Index, key: str) -> dict[str, Any] | None:
    """What the index stores of the image under ``key``: sizes, digests and keypoint count."""
    gid = index.reader.find_path(key)
    if gid < 0:
        return None
    part, row = index.reader.locate(gid)
    return {
        "key": key,
        "width": int(index.reader.value("width", gid)),
        "height": int(index.reader.value("height", gid)),
        "file_size": int(index.reader.value("file_size", gid)),
        "sha256": bytes(part.segment.column("digest")[row]).hex(),
        "global_hash": bytes(index.reader.value("global_hash", gid)).hex(),
        "keypoints": part.segment.kp_count(row),
        "generation": index.reader.manifest.generation,
    }
