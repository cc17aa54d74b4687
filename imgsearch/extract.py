"""What an index stores of one image, and extracting it from many files in parallel worker processes.

One file is read once: its bytes give the exact-tier digest; they are decoded once, at the reduced
size the index needs (:attr:`IndexConfig.decode_side`), to grayscale; that array gives the global hash
and, downscaled to ``max_side``, the keypoints and patch hashes of the local tier.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from . import hashing, io, keypoints, malloc, threads
from .config import IndexConfig, KeypointConfig
from .errors import ImageReadError


@dataclass
class LocalFeatures:
    """Keypoints of one image as stored (see :mod:`imgsearch.index.store`).

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
    data = io.read_bytes(path)
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
        mtime_ns=stat.st_mtime_ns,
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
        return extract_file(path, config)
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
    ``on_done(n)`` is called after each file with the number done so far.
    """
    workers = os.cpu_count() or 1 if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    jobs: Iterable[tuple[str, IndexConfig]] = ((p, config) for p in paths)
    if workers == 1 or len(paths) < 8:
        with threads.single_blas_thread():
            yield from _counted(map(_extract_or_error, jobs), on_done)
        return
    # Small chunks: the last ones keep every worker busy to the end. 200 files of 1.9 MP with 2
    # workers: 84-92 images/s with chunks of 12, 100-107 with 4, 93-99 with 2 (per-task costs).
    chunk = max(1, min(4, len(paths) // (workers * 8)))
    # Workers are forked (no re-import of the caller's main module, as spawn/forkserver would).
    # A child forked while OpenCV's thread pool is running can hang reconfiguring it
    # (pthread_cond_destroy, seen after a caller had resized images), so the parent drops to one
    # OpenCV thread while the pool lives: children inherit a quiet pool and need no change.
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
            yield from _counted(pool.map(_extract_or_error, jobs, chunksize=chunk), on_done)
    finally:
        cv2.setNumThreads(cv_threads)


def _init_worker() -> None:
    """Settings of an extraction worker process, which imgsearch owns for its whole life."""
    threads.limit_blas_for_good()
    malloc.keep_freed_memory()


def _counted(items: Iterable[ImageRecord | ImageReadError], on_done: Callable[[int], None] | None):
    for n, item in enumerate(items, 1):
        if on_done is not None:
            on_done(n)
        yield item


def stack_records(records: Sequence[ImageRecord], config: IndexConfig) -> tuple[dict, dict]:
    """Rows for :func:`imgsearch.index.store.commit`: ``(images, local)`` dicts of stacked arrays."""
    images = {
        "path": np.array([r.path for r in records], dtype=object),
        "digest": np.stack([r.digest for r in records])
        if records
        else np.zeros((0, hashing.DIGEST_BYTES), np.uint8),
        "file_size": np.array([r.file_size for r in records], np.int64),
        "mtime_ns": np.array([r.mtime_ns for r in records], np.int64),
        "width": np.array([r.width for r in records], np.int32),
        "height": np.array([r.height for r in records], np.int32),
        "global_hash": np.stack([r.global_hash for r in records]) if records else np.zeros((0, 8), np.uint8),
        "kp_count": np.array([0 if r.local is None else len(r.local) for r in records], np.int32),
        "kp_scale": np.array([0.0 if r.local is None else r.local.scale for r in records], np.float32),
    }
    local: dict[str, np.ndarray] = {}
    locals_ = [r.local for r in records if r.local is not None]
    if config.keypoints is not None and locals_:
        for name in ("keypoints", "descriptors", "patch_hash"):
            local[name] = np.concatenate([getattr(lf, name) for lf in locals_])
    return images, local
