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

The compiled function is cached on disk by numba beside this module (or in the user's cache when
that is not writable); without any writable place it is compiled once per process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

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
    capacity = max(MIN_CAPACITY, 2 * len(keys) if MIN_CAPACITY else 0)
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
    <= radius)`` without the ``(A, B)`` matrices (0.19 ms against 0.67 for 400 x 400 codes)."""
    kernel = _kernel("pairs")
    a = np.ascontiguousarray(a, np.uint64)
    b = np.ascontiguousarray(b, np.uint64)
    capacity = max(MIN_CAPACITY, len(a) + len(b) if MIN_CAPACITY else 0)
    while True:
        first = np.empty(capacity, np.int64)
        second = np.empty(capacity, np.int64)
        n = kernel(a, b, radius, first, second)
        if n <= capacity:
            return first[:n], second[:n]
        capacity = n


def warm_up() -> None:
    """Compile the kernels (or load them from numba's cache) for the arrays an index maps (read-only
    words and starts): a service calls this before its first request, which would pay it (about a
    second when nothing is cached)."""
    words = np.zeros(4, np.uint64)
    words.flags.writeable = False
    codes = np.zeros(1, np.uint64)
    for dtype in (np.uint32, np.uint64):
        starts = np.array([0, 2, 4], dtype)
        starts.flags.writeable = False
        scan(words, starts, codes, np.zeros(1, np.int64), np.zeros(1, np.int64), 1, 0, 8, 8, 8, True)
    pairs_within(codes, codes, 8)


def _kernel(name: str) -> Callable[..., int]:
    with _lock:
        if not _compiled:
            _compiled.update(_compile())
        return _compiled[name]


def _compile() -> dict[str, Callable[..., int]]:  # pragma: no cover - the bodies run compiled
    import numba

    def jit(function: Any) -> Any:
        try:
            return numba.njit(function, cache=True, nogil=True, boundscheck=False)
        except RuntimeError:  # no writable cache directory: compile in memory
            return numba.njit(function, nogil=True, boundscheck=False)

    @jit
    def popcount(x: Any) -> Any:
        x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
        x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
        x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
        return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)

    @jit
    def first_at_least(words: Any, lo: Any, hi: Any, target: Any) -> Any:
        while lo < hi:
            mid = (lo + hi) >> 1
            if words[mid] < target:
                lo = mid + 1
            else:
                hi = mid
        return lo

    @jit
    def kernel(
        words: Any, starts: Any, codes: Any, probe_query: Any, keys: Any, width: Any, finer: Any,
        code_bits: Any, low: Any, radius: Any, ordered: Any, out_probe: Any, out_position: Any,
        out_distance: Any,
    ) -> Any:  # fmt: skip
        n = 0
        capacity = out_position.shape[0]
        one = np.uint64(1)
        stored_at = np.uint64(low)
        part_at = np.uint64(low + code_bits - finer)  # the finer bits, at the top of the stored code
        part_mask = (1 << finer) - 1
        key_at = np.uint64(64 - width)
        for p in range(keys.shape[0]):
            key = keys[p]
            bucket = key >> finer
            lo = np.int64(starts[bucket])
            hi = np.int64(starts[bucket + 1])
            if lo == hi:
                continue
            part = np.uint64(key & part_mask)
            if finer > 0 and ordered:
                lo = first_at_least(words, lo, hi, part << part_at)
                if (key & part_mask) != part_mask:  # else the run ends with the bucket
                    hi = first_at_least(words, lo, hi, (part + one) << part_at)
            code = codes[probe_query[p]]
            flips = popcount((code >> key_at) ^ np.uint64(bucket))
            mine = (code << np.uint64(width)) >> np.uint64(64 - code_bits)
            target = (((one << flips) - one) << np.uint64(code_bits)) | mine
            for i in range(lo, hi):
                word = words[i]
                if finer > 0 and not ordered and ((word >> part_at) & np.uint64(part_mask)) != part:
                    continue
                d = popcount((word >> stored_at) ^ target)
                if d <= radius:
                    if n < capacity:
                        out_probe[n] = p
                        out_position[n] = i
                        out_distance[n] = d
                    n += 1
        return n

    @jit
    def pairs(a: Any, b: Any, radius: Any, out_a: Any, out_b: Any) -> Any:
        n = 0
        capacity = out_a.shape[0]
        for i in range(a.shape[0]):
            x = a[i]
            for j in range(b.shape[0]):
                if popcount(x ^ b[j]) <= radius:
                    if n < capacity:
                        out_a[n] = i
                        out_b[n] = j
                    n += 1
        return n

    return {"scan": kernel, "pairs": pairs}
