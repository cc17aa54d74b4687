"""What an index stores of one image, and extracting it from many files in parallel worker processes.

One file is read once: its bytes give the exact-tier digest; they are decoded once, at the reduced
size the index needs (:attr:`IndexConfig.decode_side`), to grayscale; that array gives the global hash
and, downscaled to ``max_side``, the keypoints and patch hashes of the local tier.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import multiprocessing
import multiprocessing.process
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import cv2
import numpy as np

from . import hashing, io, keypoints, malloc, threads
from .config import IndexConfig, KeypointConfig
from .errors import ImageReadError


@dataclass
class LocalFeatures:
    """Keypoints of one image as stored (see :mod:`imgsearch.store.segment`).

    ``keypoints (M, 5) float32`` columns x, y, size, angle, response in keypoint-image pixels;
    ``descriptors (M, D) uint8``; ``patch_hash (M, S, 8) uint8``; ``scale`` is keypoint-image
    pixels per original pixel.
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    patch_hash: np.ndarray
    scale: float

    def __len__(self) -> int:
        return len(self.keypoints)


@dataclass
class ImageRecord:
    """Everything an index stores of one file."""

    path: str
    digest: np.ndarray  # (32,) uint8, SHA-256
    file_size: int
    mtime_ns: int
    width: int
    height: int
    global_hash: np.ndarray  # (8,) uint8
    local: LocalFeatures | None
    warnings: tuple[str, ...] = ()  # what the codecs said while reading it (io.codec_messages)


def local_features(
    gray: np.ndarray, config: KeypointConfig, budget: int, scales: Sequence[float], original_long_side: int
) -> LocalFeatures:
    """Detect ``budget`` grid-spread keypoints of ``gray`` and hash their patches at ``scales``.

    The keypoints come in :func:`imgsearch.keypoints.spread_order`, so that the first
    ``config.hashed`` of them, the ones searched in RAM, are spread over the image.
    """
    kps, hashes = keypoints.detect_and_hash(gray, config, tuple(scales), budget)
    order = keypoints.spread_order(kps.xy, kps.response, kps.shape, config.grid)
    kps = kps.take(order)
    return LocalFeatures(
        keypoints=keypoint_rows(kps),
        descriptors=quantise_descriptors(kps.descriptors),
        patch_hash=hashes.reshape(len(order), len(scales), hashing.HASH_BYTES)[order],
        # Per pixel of the file, not of ``gray``, which may come from a reduced-size decode.
        scale=max(kps.shape) / max(original_long_side, 1),
    )


def keypoint_rows(kps: keypoints.Keypoints) -> np.ndarray:
    """``(N, 5)`` float32 rows x, y, size, angle, response of ``kps``."""
    return np.column_stack([kps.xy, kps.size, kps.angle, kps.response]).astype(np.float32)


def quantise_descriptors(desc: np.ndarray) -> np.ndarray:
    """Descriptors as stored: uint8 (OpenCV's float SIFT values are already integers in 0-255)."""
    return desc if desc.dtype == np.uint8 else np.clip(np.rint(desc), 0, 255).astype(np.uint8)


def extract_file(path: str, config: IndexConfig) -> ImageRecord:
    """Read and describe one file; raises :class:`ImageReadError` naming the path."""
    stat = os.stat(path)  # before reading: a later change then shows as a newer mtime
    return extract_bytes(io.read_bytes(path), path, config, stat.st_mtime_ns)


def extract_bytes(data: bytes, name: str, config: IndexConfig, mtime_ns: int = 0) -> ImageRecord:
    """Describe one encoded image; ``name`` is what the index stores as its path (a file path, or
    the key a client gave an upload). Raises :class:`ImageReadError` naming it."""
    path = name
    gray = io.decode_image(data, path=path, min_side=config.decode_side, gray=True)
    width, height = _original_size(data, gray)
    local = None
    if config.keypoints is not None:
        kc = config.keypoints
        local = local_features(gray, kc, kc.budget, kc.patch_scales, max(width, height))
    return ImageRecord(
        path=path,
        digest=hashing.file_digest(data),
        file_size=len(data),
        mtime_ns=mtime_ns,
        width=width,
        height=height,
        global_hash=hashing.phash(gray),
        local=local,
    )


def _original_size(data: bytes, decoded: np.ndarray) -> tuple[int, int]:
    """(width, height) of the full-size image, EXIF orientation applied, from header and decode."""
    h, w = decoded.shape[:2]
    size = io.image_size(data)
    if size is None:
        return w, h
    hw, hh = size
    # The header gives the stored orientation; an EXIF rotation swaps the sides of the decoded image.
    if (hw >= hh) != (w >= h) and hw != hh:
        hw, hh = hh, hw
    return max(hw, w), max(hh, h)


def _extract_or_error(args: tuple[str, IndexConfig]) -> ImageRecord | ImageReadError:
    path, config = args
    try:
        if threading.active_count() > 1:  # stderr may be another thread's: leave it alone
            return extract_file(path, config)
        with io.codec_messages() as said:
            record = extract_file(path, config)
        return dataclasses.replace(record, warnings=tuple(said)) if said else record
    except ImageReadError as exc:
        return exc
    except Exception as exc:  # a decoder crash on one file must not end the batch
        return ImageReadError(path, f"{type(exc).__name__}: {exc}")


def extract_files(
    paths: Sequence[str],
    config: IndexConfig,
    workers: int | None = None,
    on_done: Callable[[int], None] | None = None,
) -> Iterator[ImageRecord | ImageReadError]:
    """Extract many files, in input order, each as a record or the error that stopped it.

    ``workers`` processes run in parallel (default: all cores); ``1`` runs in this process.
    ``on_done(n)`` is called after each file with the number done so far. A worker that dies (the
    out-of-memory killer, a signal) costs the file it was reading, reported as an error, and is
    replaced; workers die with this process (:func:`_init_worker`).
    """
    workers = os.cpu_count() or 1 if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(paths) < 8:
        with threads.single_blas_thread():
            yield from _counted((_extract_or_error((p, config)) for p in paths), on_done)
        return
    # Workers are forked (no re-import of the caller's main module, as spawn/forkserver would).
    # A child forked while OpenCV's thread pool is running can hang reconfiguring it
    # (pthread_cond_destroy, seen after a caller had resized images), so the parent drops to one
    # OpenCV thread while the pool lives: children inherit a quiet pool and need no change.
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    pool = _Pool(workers, config)
    try:
        yield from _counted(pool.run(paths), on_done)
    finally:
        pool.close()
        cv2.setNumThreads(cv_threads)


IN_FLIGHT = 2  # files handed to a worker at a time: one to read while the other's result travels


class _Pool:
    """Forked extraction workers, each fed files one at a time over its own pipe.

    Unlike ``concurrent.futures``, whose pool breaks for good when a worker dies, a dead worker
    here fails only the files it held, and another takes its place.
    """

    def __init__(self, workers: int, config: IndexConfig) -> None:
        self.config = config
        self.context = multiprocessing.get_context("fork")
        self.workers = [self._start() for _ in range(workers)]

    def _start(self) -> tuple[multiprocessing.process.BaseProcess, Connection]:
        parent, child = self.context.Pipe()
        proc = self.context.Process(target=_worker, args=(child, self.config, os.getpid()), daemon=True)
        proc.start()
        child.close()
        return proc, parent

    def run(self, paths: Sequence[str]) -> Iterator[ImageRecord | ImageReadError]:
        pending = iter(enumerate(paths))
        held: dict[int, list[int]] = {k: [] for k in range(len(self.workers))}  # worker -> file numbers
        done: dict[int, ImageRecord | ImageReadError] = {}
        next_out = 0

        def feed(k: int) -> None:
            while len(held[k]) < IN_FLIGHT:
                item = next(pending, None)
                if item is None:
                    return
                held[k].append(item[0])
                try:
                    self.workers[k][1].send(item)
                except OSError:  # BrokenPipeError: it died after the check; its sentinel fails its files
                    return

        for k in held:
            feed(k)
        while next_out < len(paths):
            if next_out in done:
                yield done.pop(next_out)
                next_out += 1
                continue
            ready = wait([c for _, c in self.workers] + [p.sentinel for p, _ in self.workers])
            for k, (proc, conn) in enumerate(self.workers):
                if conn in ready or proc.sentinel in ready:
                    try:
                        while conn.poll():
                            number, result = conn.recv()
                            held[k].remove(number)
                            done[number] = result
                    except (EOFError, OSError):
                        pass
                    if not proc.is_alive():  # died: its files fail, a new worker takes over
                        for number in held[k]:
                            done[number] = ImageReadError(
                                paths[number], f"the extraction worker died (exit code {proc.exitcode}: killed, or out of memory)"
                            )
                        held[k] = []
                        conn.close()
                        self.workers[k] = self._start()
                    feed(k)

    def close(self) -> None:
        for _, conn in self.workers:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        for proc, _ in self.workers:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _worker(conn: Connection, config: IndexConfig, parent: int) -> None:
    """An extraction worker: files in, records out, until told to stop or its parent is gone."""
    _init_worker(parent)
    for number, path in received(conn):
        conn.send((number, _extract_or_error((path, config))))


def received(conn: Connection) -> Iterator[Any]:
    """What the other end sends through ``conn``, until it sends None or is gone."""
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        yield item


def _init_worker(parent: int) -> None:
    """Settings of an extraction worker process, which imgsearch owns for its whole life: it dies
    with its parent (Linux's parent-death signal), ignores Ctrl-C (the parent stops it), keeps
    BLAS to one thread and freed memory for reuse."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    threads.limit_blas_for_good()
    malloc.keep_freed_memory()


_PR_SET_PDEATHSIG = 1


def _counted(items: Iterable[ImageRecord | ImageReadError], on_done: Callable[[int], None] | None):
    for n, item in enumerate(items, 1):
        if on_done is not None:
            on_done(n)
        yield item


