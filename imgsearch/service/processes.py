"""Processes a server worker owns: the query processes and the upload extraction process.

Both are :class:`Piped` pools of spawned processes (the worker runs threads, so no fork): each
process dies with the worker (:func:`imgsearch.extract._init_worker`'s parent-death signal) and is
replaced when it dies, the call it was running made once more in a new one.

**Query processes** (:class:`QueryProcesses`). A worker's queries run in processes of its own,
each single-threaded with its own snapshots of the index (:class:`Snapshots`), fed from one
queue: a query goes to whichever process is free, whatever connection it came on. When uvicorn's
worker processes ran the queries in their own threads, the kernel gave each connection to one
worker, and four clients often landed three on one worker and one on the other: that worker's
threads queued or fought for its interpreter lock while the other core idled
(``scripts/bench_serve.py``: four clients 1.33x to 1.77x one client's throughput between runs of
one code). A query's images and its results travel through a pipe (pickled: tens of KB and a few
hundred microseconds). A query still running a second after the server's ``--timeout`` (answered
504) is stopped with its process, which is replaced.

**The extraction process** (:class:`Extractor`). In a worker's own threads, an upload's extraction
shared the interpreter lock with the query threads: with four clients keeping both cores busy,
ten adds a second fell behind, queued for seconds and took the cores from the queries. A process
competes for a core only. An upload that kills its process twice in a row is refused as
unreadable (it costs its own add, never the worker's life).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import queue
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import cv2

from .. import extract
from ..config import IndexConfig
from ..errors import ImageReadError
from ..results import QueryResult
from ..store import scan
from .snapshots import Snapshots

T = TypeVar("T")
_log = logging.getLogger("imgsearch")


class Piped:
    """``processes`` spawned processes, each running one call at a time sent through its own pipe,
    handed to whichever is idle; a process that dies is replaced.

    ``initializer(*initargs)`` runs in each new process (after the parent-death signal is armed)
    before its first call. The calling thread itself sends the call and waits for the answer: no
    thread in between (``ProcessPoolExecutor``'s manager thread cost a query about a millisecond
    more at one client, ``scripts/bench_serve.py``).
    """

    kind = "worker"

    def __init__(
        self, processes: int, initializer: Callable[..., None] | None = None, initargs: tuple = ()
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self._context = multiprocessing.get_context("spawn")
        self._initializer, self._initargs = initializer, initargs
        self._slots = [_Slot() for _ in range(processes)]
        self._idle: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        for slot in self._slots:
            self._idle.put(slot)
        self.replaced = 0  # processes that died and were replaced

    def start(self) -> list[int]:
        """Start every process now and wait until each is ready (spawning imports imgsearch, about
        a second, and the initializer may take longer); their ids."""
        for slot in self._slots:
            self._spawn(slot)
        try:
            for slot in self._slots:
                self._ready(slot)
        except RuntimeError:
            self.close()
            raise
        return [slot.pid for slot in self._slots]

    def call(self, what: str, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """``fn(*args)`` in an idle process (waiting for one); an exception ``fn`` raises is raised
        here.

        A process that died while idle is replaced first (not this call's doing); one that dies
        during the call is replaced and the call made once more, and a second death raises
        :class:`~imgsearch.errors.ImageReadError` naming ``what`` (the input kills it). A process
        that cannot start (its initializer failed) raises RuntimeError. With ``timeout``, a
        process that has not answered within that many seconds is killed and replaced, and
        :class:`CallTimeout` is raised.
        """
        for _ in range(2):
            slot = self._idle.get()
            try:
                if slot.process is not None and not slot.process.is_alive():
                    self._replace(slot)  # died while idle (and reaped by is_alive)
                self._ready(slot)
                assert slot.conn is not None
                answered = True
                try:
                    slot.conn.send((fn, args))
                    answered = timeout is None or slot.conn.poll(timeout)
                    if answered:
                        ok, value = slot.conn.recv()
                except (EOFError, OSError):  # the process died during the call
                    self._replace(slot)
                    _log.warning("a %s process died on %r; starting another", self.kind, what)
                    continue
                if not answered:
                    self._replace(slot)
                    raise CallTimeout(
                        f"no answer on {what!r} within {timeout:g} s: its {self.kind} process was stopped"
                    )
            finally:
                self._idle.put(slot)
            if ok:
                return value
            raise value
        raise ImageReadError(what, f"the {self.kind} process died on it twice")

    def _spawn(self, slot: _Slot) -> None:
        # The process's parent-death signal fires when the *thread* that started it ends: callers
        # are the server's long-lived threads (its start-up thread and its pools' threads).
        if slot.process is not None:
            return
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(theirs, os.getpid(), self._initializer, self._initargs), daemon=True
        )
        process.start()
        theirs.close()
        slot.process, slot.conn, slot.pid = process, ours, 0

    def _ready(self, slot: _Slot) -> None:
        """Spawn the slot's process if it has none, and wait for its first message (its id);
        RuntimeError if it exits first (its initializer failed: its error is on stderr)."""
        self._spawn(slot)
        if slot.pid == 0:
            assert slot.conn is not None
            try:
                _, slot.pid = slot.conn.recv()
            except (EOFError, OSError):
                self._discard(slot)
                raise RuntimeError(
                    f"a {self.kind} process exited while starting (its error is on stderr)"
                ) from None

    def _replace(self, slot: _Slot) -> None:
        """Discard the slot's process and start another now (it gets ready while the slot waits)."""
        self._discard(slot)
        self.replaced += 1
        self._spawn(slot)

    def _discard(self, slot: _Slot) -> None:
        if slot.conn is not None:
            slot.conn.close()
        if slot.process is not None:
            slot.process.kill()
            slot.process.join(5)
        slot.process, slot.conn, slot.pid = None, None, 0

    def close(self) -> None:
        """Stop the processes (call when no call is under way): all are told at once, then each
        is given 5 s to finish before it is killed."""
        for slot in self._slots:
            if slot.conn is not None:
                with contextlib.suppress(OSError):
                    slot.conn.send(None)
        for slot in self._slots:
            if slot.process is not None:
                slot.process.join(5)
            self._discard(slot)


class CallTimeout(Exception):
    """A :class:`Piped` process did not answer in time; it was killed and will be replaced."""


class _Slot:
    """One process of a :class:`Piped` pool: the process, our end of its pipe, its id once ready."""

    def __init__(self) -> None:
        self.process: Any = None
        self.conn: Connection | None = None
        self.pid = 0


def _serve(conn: Connection, parent: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    """A :class:`Piped` process: set up, say its id, then run each call received until ``None``."""
    extract._init_worker(parent)
    cv2.setNumThreads(1)  # one call at a time in each process: OpenCV's own threads would only spin
    if initializer is not None:
        initializer(*initargs)
    conn.send((True, os.getpid()))
    for fn, args in extract.received(conn):
        try:
            answer = (True, fn(*args))
        except Exception as exc:
            answer = (False, _portable(exc))
        try:
            conn.send(answer)
        except Exception as exc:  # an answer that does not pickle (the pickling fails before sending)
            conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


def _portable(exc: Exception) -> Exception:
    """``exc`` if it comes back whole through a pipe, else a RuntimeError naming it: an exception
    whose constructor takes other arguments than it keeps pickles, then fails to unpickle in the
    caller, which would see a TypeError about the exception instead of the error."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


class Extractor(Piped):
    """Describes uploads in one process of its own (:meth:`Index.add_bytes`'s ``extract_upload``)."""

    kind = "upload extraction"

    def __init__(self) -> None:
        super().__init__(1)
        self._spawn(self._slots[0])  # start it now, without waiting for it

    def pid(self) -> int:
        """The process's id (starting it if needed)."""
        return self.call("pid", os.getpid)

    def __call__(self, data: bytes, key: str, config: IndexConfig) -> extract.ImageRecord:
        return self.call(key, extract.extract_bytes, data, key, config)


class QueryProcesses(Piped):
    """``processes`` query processes over the index folder ``directory``, each with its own
    :class:`Snapshots`, the compiled probe loaded and the postings checked before its first query."""

    kind = "query"

    def __init__(self, directory: Path, processes: int, timeout: float | None = None) -> None:
        super().__init__(processes, _open_snapshots, (str(directory),))
        self.timeout = timeout  # a query still running after this is stopped with its process
        self.pids = self.start()

    def query(
        self, images: list[bytes], names: list[str], top: int, search: Mapping[str, Any]
    ) -> tuple[list[QueryResult], int]:
        """:func:`run_query` in an idle process."""
        what = names[0] if names else "query"
        return self.call(what, run_query, images, names, top, dict(search), timeout=self.timeout)


_snapshots: Snapshots | None = None  # a query process's own


def _open_snapshots(directory: str) -> None:
    global _snapshots
    _snapshots = Snapshots(Path(directory))
    scan.warm_up()
    with _snapshots.lease() as index:
        index.reader.warm()


def run_query(
    images: list[bytes],
    names: list[str],
    top: int,
    search: Mapping[str, Any],
    snapshots: Snapshots | None = None,
) -> tuple[list[QueryResult], int]:
    """Query encoded images on the newest snapshot with the :class:`~imgsearch.config.SearchConfig`
    fields ``search`` (``names``: what each result's ``query`` says); the results and the manifest
    generation searched. In a query process, its own snapshots; in a worker's thread, the
    ``snapshots`` given."""
    snapshots = snapshots if snapshots is not None else _snapshots
    if snapshots is None:
        raise RuntimeError("run_query outside a query process needs snapshots")
    with snapshots.lease() as index:
        results = index.query_many(images, top=top, refresh=False, **search)
        generation = index.reader.manifest.generation
    for result, name in zip(results, names, strict=True):
        result.query = name
    return results, generation
