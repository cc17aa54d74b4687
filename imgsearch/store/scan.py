"""Compiled scans (numba): the posting scan of :func:`imgsearch.store.postings.probe`, one pass
over the rows, and the pairs of two sets of hash codes within a radius (:func:`pairs_within`).

Why: at 32,000 images a pass's 12,800 probes read about 350,000 posting rows to keep about 160.
Written with numpy, every step of that (positions, gathered words, distances, the rows near
enough) made an array of all the rows read, and finding the run of a large ordered bucket took a
binary search of all the probes at once, a dozen passes over them: 1.7 ms a segment and pass. One
compiled loop over the probes, in the order of their keys (so that buckets are read ascending
through memory), reads each probe's run once: 0.9 ms, the same pairs (docs/results.md, "The probe
compiled"). numba is imported at the first scan, not with the package: a small index (whose
segments are matched row by row, :func:`imgsearch.store.postings._by_rows`) never loads it.

Arrays (see :mod:`imgsearch.store.postings` for the posting word's layout)::

    words        (V,) uint64   posting words of one segment, grouped by key
    starts       (2**w + 1,)   uint32 or uint64 bucket starts
    codes        (Q,) uint64   query hash codes in RELIABLE_ORDER
    probe_query  (P,) int64    the query hash of each probe
    keys         (P,) int64    each probe's key at ``w + finer`` bits, ascending

The kernels live in :mod:`imgsearch.store._kernels`, cached on disk by numba beside it (or in the
user's cache when that is not writable; without any writable place they are compiled once per
process). Importing numba costs a process about 0.3 s and 150 MB of resident memory (LLVM).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import ModuleType

import numpy as np

# Room for this many results at least, at first: a scan that finds more runs again with room for all.
MIN_CAPACITY = 4096
_lock = threading.Lock()
_compiled: dict[str, Callable[..., int]] = {}


def scan(
    words: np.ndarray,
    starts: np.ndarray,
    codes: np.ndarray,
    probe_query: np.ndarray,
    keys: np.ndarray,
    width: int,
    finer: int,
    code_bits: int,
    low: int,
    radius: int,
    ordered: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ``(probe, row)`` within ``radius`` bits: ``(probe, position, distance)`` int64 arrays,
    probe by probe (rows ascending within a probe).

    A probe reads bucket ``key >> finer`` of the segment (keyed on ``width`` bits) and keeps its
    rows whose next ``finer`` stored code bits are the key's last ``finer`` bits: in an
    ``ordered`` segment (words ascending by code within a bucket) the run found by binary search,
    else every row of the bucket tested. The distance is that of the query's code to the row's over
    the key bits (the probe's flipped bits) and the ``code_bits`` stored, ``low`` bits up.
    """
    kernel = _kernel("scan")
    words = np.ascontiguousarray(words, np.uint64)
    codes = np.ascontiguousarray(codes, np.uint64)
    probe_query = np.ascontiguousarray(probe_query, np.int64)
    keys = np.ascontiguousarray(keys, np.int64)
    capacity = _first_capacity(2 * len(keys))
    while True:
        probe = np.empty(capacity, np.int64)
        position = np.empty(capacity, np.int64)
        distance = np.empty(capacity, np.int64)
        n = kernel(
            words, starts, codes, probe_query, keys, width, finer, code_bits, low, radius, ordered,
            probe, position, distance,
        )  # fmt: skip
        if n <= capacity:
            return probe[:n], position[:n], distance[:n]
        capacity = n  # more rows near than room for them: scan again with room for all


def pairs_within(a: np.ndarray, b: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """``(i, j)`` int64 arrays of every pair of ``(A,)`` and ``(B,)`` uint64 codes ``a[i]``, ``b[j]``
    within ``radius`` bits, in row-major order: ``np.nonzero(np.bitwise_count(a[:, None] ^ b[None, :])
    <= radius)``, compiled without the ``(A, B)`` matrices once the process has loaded the kernels
    (0.19 ms against 0.67 for 400 x 400 codes), else that numpy expression itself."""
    a = np.ascontiguousarray(a, np.uint64)
    b = np.ascontiguousarray(b, np.uint64)
    if not loaded():
        i, j = np.nonzero(np.bitwise_count(a[:, None] ^ b[None, :]) <= radius)
        return i.astype(np.int64), j.astype(np.int64)
    kernel = _kernel("pairs")
    capacity = _first_capacity(len(a) + len(b))
    while True:
        first = np.empty(capacity, np.int64)
        second = np.empty(capacity, np.int64)
        n = kernel(a, b, radius, first, second)
        if n <= capacity:
            return first[:n], second[:n]
        capacity = n


def warm_up() -> None:
    """Compile the kernels (or load them from numba's cache) for the arrays an index maps (read-only
    words and starts) and the global tier's: a service calls this before its first request, which
    would pay it (about 2 s when nothing is cached, a fraction of a second to load them)."""
    words = np.zeros(4, np.uint64)
    words.flags.writeable = False
    codes = np.zeros(1, np.uint64)
    for dtype in (np.uint32, np.uint64):
        starts = np.array([0, 2, 4], dtype)
        starts.flags.writeable = False
        scan(words, starts, codes, np.zeros(1, np.int64), np.zeros(1, np.int64), 1, 0, 8, 8, 8, True)
    pairs_within(codes, codes, 8)
    k = kernels()  # and the global tier's multi-index search (imgsearch.store.hamming)
    starts, order = np.zeros((1, 3), np.uint32), np.zeros((1, 1), np.uint32)
    k.counting_order(np.zeros(1, np.int64), 2, starts[0], order[0])
    out = np.empty(1, np.int64)
    masks = np.zeros(1, np.int64)
    k.multi_index(np.zeros((1, 1), np.uint64), order, starts, masks, masks, codes, masks, out, out, out)


def _first_capacity(estimate: int) -> int:
    """Results a scan makes room for at first (at most two runs: the second has room for all)."""
    return max(MIN_CAPACITY, estimate)


def loaded() -> bool:
    """Whether this process has loaded the kernels (numba) already."""
    return bool(_compiled)


def kernels() -> ModuleType:
    """:mod:`imgsearch.store._kernels`, imported (with numba) at the first call."""
    with _lock:
        from . import _kernels  # numba, imported at the first scan

        if not _compiled:
            _compiled.update(scan=_kernels.scan, pairs=_kernels.pairs)
        return _kernels


def _kernel(name: str) -> Callable[..., int]:
    kernels()
    return _compiled[name]
