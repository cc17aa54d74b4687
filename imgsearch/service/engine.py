"""The index behind the service: queries on snapshots in processes of their own, writes on one Index.

Each of ``imgsearch serve``'s worker processes has one :class:`Engine` (by default one worker).
Queries run in parallel in its query processes (:class:`~imgsearch.service.processes.QueryProcesses`,
default one per core), fed from one queue, so that a query goes to whichever is free whatever
connection it came on; processes, because the local tier's Python code and small numpy calls hold
Python's lock: on 2 cores, 2 processes ran new-image queries 1.80x and copies 1.71x as fast as one
thread, 2 threads of one process 1.71x and 1.41x (``scripts/bench_parallel.py``). With
``query_processes=0`` the worker runs them in its own ``query_threads`` threads instead.

Queries never wait for a write and writes never wait for queries:

* **Snapshots** (:mod:`imgsearch.service.snapshots`): a query leases the newest Index of the folder,
  which nothing refreshes under it; an image is visible to every query that starts after its
  commit, in this process or another.
* **Writes** go through one more Index of the folder, which only the writer's threads touch, under
  the index's writer lock (one writer at a time, across the worker processes too).
  An upload's features are extracted in a process of the worker's own
  (:class:`~imgsearch.service.processes.Extractor`), which competes with the queries for a core but
  not for the interpreter lock. :meth:`Index.add_bytes` returns once the manifest naming the new
  segment is flushed to disk: the service acknowledges an add only then. Segments are merged
  afterwards by a :class:`Merger` thread, outside the writer lock (:meth:`Index.merge`), so no add
  waits for a merge: at 100,000 images one took 26 s, all of it under the lock when adds merged inline.
* **Time limits.** Work runs in thread pools (queries, one thread a query process, which hands
  each query to an idle process and waits for it; lookups; and writes). A request waits at most ``timeout``
  seconds for its answer: a query still queued then is dropped (503) and one running is answered
  504, its query process stopped and replaced :data:`STOP_GRACE` later (in threads, it goes on
  unanswered); an add still queued is dropped (503, not added), an add already running is always
  waited for, so that an answer never leaves the client guessing whether it was added.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

from ..index import Index, describe
from ..results import QueryResult
from ..store import manifest as mf
from ..store import scan
from .processes import Extractor, QueryProcesses, run_query
from .snapshots import Snapshots

T = TypeVar("T")
STOP_GRACE = 1.0  # seconds between a query's 504 and the stop of the query process still running it
_log = logging.getLogger("imgsearch")


class Timeout(Exception):
    """The answer was not ready within the time allowed; ``started`` says whether work began."""

    def __init__(self, seconds: float, started: bool) -> None:
        self.seconds = seconds
        self.started = started
        super().__init__(f"no answer within {seconds:g} s")


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


class Engine:
    """Queries, adds, removals and lookups of one index folder, with their thread pools."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        query_threads: int = 2,
        query_processes: int = 0,
        timeout: float,
        search: Mapping[str, Any] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.timeout = timeout
        # What is opened is closed again if a later step fails (a query process that cannot start,
        # a wrong search setting): no extraction process or writer left behind by a failed start.
        with ExitStack() as opened:
            self.snapshots = Snapshots(self.directory)  # lookups (and queries without processes)
            opened.callback(self.snapshots.close)
            self.writer = Index.open(self.directory)
            opened.callback(self.writer.close)
            # SearchConfig overrides of every query (``imgsearch serve --search``), under a request's own
            self.search = dict(search or {})
            self.writer.search_config(**self.search)  # a wrong name or value: ConfigError now
            self.extractor = Extractor()
            opened.callback(self.extractor.close)
            self.writer.extract_upload = self.extractor
            # A query process still running STOP_GRACE s after its query's 504 is stopped and
            # replaced: past the request's own limit, so that a query still queued then is dropped,
            # not started.
            stop_after = timeout + STOP_GRACE
            self.processes = (
                QueryProcesses(self.directory, query_processes, stop_after) if query_processes else None
            )
            if self.processes is not None:
                opened.callback(self.processes.close)
            # With processes, a query's thread only waits for one: one thread a process, so that a
            # query waiting its turn stays queued in the pool, where a timeout can drop it (503).
            threads = query_processes or query_threads
            self._queries = ThreadPoolExecutor(threads, thread_name_prefix="imgsearch-query")
            # Lookups (a stored row, info) run in this process, never behind queries waiting for a
            # query process (an add's answer carries its row).
            self._lookups = ThreadPoolExecutor(2, thread_name_prefix="imgsearch-lookup")
            # Two: one extracts the next upload while the other holds the writer lock to commit.
            self._writes = ThreadPoolExecutor(2, thread_name_prefix="imgsearch-write")
            for pool in (self._queries, self._lookups, self._writes):
                opened.callback(pool.shutdown)
            self.merger = Merger(self.writer)
            opened.callback(self.merger.close)
            scan.warm_up()  # the compiled probe, before the first query (a checked add's) needs it
            with self.snapshots.lease() as index:  # and the segments' postings and global search,
                index.reader.warm()  # shared by the worker's snapshots
            opened.pop_all()

    def close(self) -> None:
        self.merger.close()
        self._queries.shutdown(wait=True, cancel_futures=True)
        self._lookups.shutdown(wait=True, cancel_futures=True)
        self._writes.shutdown(wait=True)  # an add that started finishes: it may have been acknowledged
        self.extractor.close()
        if self.processes is not None:
            self.processes.close()
        self.snapshots.close()
        self.writer.close()

    # -- the work, run in the pools ------------------------------------------------------------
    def query(
        self, images: list[bytes], names: list[str], top: int, **overrides: Any
    ) -> tuple[list[QueryResult], int]:
        """Query encoded images (``names``: what each result's ``query`` says) in a query process,
        or in this thread without them; returns the results and the manifest generation searched."""
        search = {**self.search, **overrides}
        if self.processes is not None:
            return self.processes.query(images, names, top, search)
        return run_query(images, names, top, search, self.snapshots)

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

    async def run_lookup(self, call: Callable[[], T]) -> T:
        """Run a lookup (:meth:`row`, :meth:`info`) in its own pool; :class:`Timeout` as a query."""
        return await self._run(self._lookups, call, abandon=True)

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
