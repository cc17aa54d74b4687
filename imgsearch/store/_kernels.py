"""The numba kernels of :mod:`imgsearch.store.scan` (see it for their arrays and their use).

Defined at module level so that numba's on-disk cache finds them again in the next process (a
kernel made inside a function is a closure, which the cache never matches).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np


def jit(function: Any) -> Any:
    """numba.njit, cached on disk when numba finds a writable place for its cache, else in memory."""
    try:
        return numba.njit(function, cache=True, nogil=True, boundscheck=False)
    except RuntimeError:  # no writable cache directory
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
def scan(
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
        # One word to compare the rows' stored codes with: the query's code bits after the key,
        # and above them as many ones as the probe flipped key bits (code_bits + flips <= 64), so
        # that one popcount is the distance over the key and the stored bits.
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
