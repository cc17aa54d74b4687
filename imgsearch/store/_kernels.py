"""The numba kernels of :mod:`imgsearch.store.scan` and :mod:`imgsearch.store.hamming` (see them for
their arrays and their use).

Defined at module level so that numba's on-disk cache finds them again in the next process (a
kernel made inside a function is a closure, which the cache never matches).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# How many probes ahead the scan asks the memory for a probe's bucket start, and for the first
# and middle posting words of its bucket. A probe's reads are a few random cache misses (its
# bucket start, then its words) that the loop waits on one after another; asked for ahead, they
# overlap. Measured on the 5.9 million probes of 60 new images against the four segments of the
# 32,000-image index that the kernel scans (scripts/research/scan_prefetch.py): 10.96 -> 7.39 ms
# a query, the same results; at a million images the scan of a new image went 38.9 -> 26.0 ms.
STARTS_AHEAD = 32
WORDS_AHEAD = 16
# How many buckets ahead the multi-index search asks for the codes of a bucket it will read.
BUCKETS_AHEAD = 8


def jit(function: Any) -> Any:
    """numba.njit, cached on disk when numba finds a writable place for its cache, else in memory."""
    try:
        return numba.njit(function, cache=True, nogil=True, boundscheck=False)
    except RuntimeError:  # no writable cache directory
        return numba.njit(function, nogil=True, boundscheck=False)


@intrinsic
def _prefetch(typingctx: Any, array: Any, index: Any) -> Any:
    """``llvm.prefetch`` of ``array[index]`` (read, keep in every cache level): a hint, never a fault."""
    signature = types.void(array, index)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        arrayty = sig.args[0]
        ary = context.make_array(arrayty)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, arrayty, ary, [args[1]], wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        # The intrinsic's name follows LLVM's pointer types: opaque from LLVM 15 on.
        name = "llvm.prefetch.p0" if binding.llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), name
        )
        builder.call(
            function,
            [builder.bitcast(pointer, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)],
        )
        return context.get_dummy_value()

    return signature, codegen


@jit
def prefetch(array: Any, index: Any) -> None:
    _prefetch(array, index)  # type: ignore[call-arg]  # numba passes the typing context


def _prefetch_compiles() -> bool:
    """Whether this LLVM takes the intrinsic (else the scans run without it: the same results)."""
    try:
        prefetch(np.zeros(1, np.uint64), 0)
    except Exception:
        return False
    return True


PREFETCH = _prefetch_compiles()  # False: this LLVM refused the hint, the kernels go without it
if not PREFETCH:

    @jit
    def prefetch(array: Any, index: Any) -> None:
        pass


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
    probes = keys.shape[0]
    for p in range(probes):
        if p + STARTS_AHEAD < probes:
            prefetch(starts, keys[p + STARTS_AHEAD] >> finer)
        if p + WORDS_AHEAD < probes:
            ahead = keys[p + WORDS_AHEAD] >> finer
            first, end = np.int64(starts[ahead]), np.int64(starts[ahead + 1])
            if end > first:
                prefetch(words, first)
                prefetch(words, (first + end) >> 1)  # where its binary search looks first
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


@jit
def counting_order(keys: Any, buckets: Any, starts: Any, order: Any) -> None:
    """``order``: positions of ``keys`` (int64 in [0, buckets)) stably by key; ``starts``
    (buckets + 1,): where each key's run begins (a counting sort)."""
    for i in range(buckets + 1):
        starts[i] = 0
    for i in range(keys.shape[0]):
        starts[keys[i] + 1] += 1
    for k in range(buckets):
        starts[k + 1] += starts[k]
    fill = starts[:-1].copy()
    for i in range(keys.shape[0]):
        k = keys[i]
        order[fill[k]] = i
        fill[k] += 1


@jit
def multi_index(
    codes: Any, ids: Any, starts: Any, masks: Any, upto: Any, queries: Any, radii: Any,
    out_query: Any, out_distance: Any, out_id: Any,
) -> Any:  # fmt: skip
    n = 0
    capacity = out_id.shape[0]
    tables = starts.shape[0]
    sub_bits = np.uint64(64 // tables)
    sub_mask = np.uint64((1 << (64 // tables)) - 1)
    for q in range(queries.shape[0]):
        code = queries[q]
        radius = radii[q]
        near = radius // tables  # pigeonhole: a code within radius is within this on some table
        for t in range(tables):
            sub = np.int64((code >> (sub_bits * np.uint64(t))) & sub_mask)
            table_codes = codes[t]
            table_starts = starts[t]
            probes = upto[near]
            for m in range(probes):
                if m + BUCKETS_AHEAD < probes:  # the codes of a bucket read later, asked for now
                    prefetch(table_codes, table_starts[sub ^ masks[m + BUCKETS_AHEAD]])
                key = sub ^ masks[m]
                for j in range(table_starts[key], table_starts[key + 1]):
                    x = table_codes[j] ^ code
                    d = popcount(x)
                    if d > radius:
                        continue
                    seen = False  # found in an earlier table already?
                    for u in range(t):
                        if popcount((x >> (sub_bits * np.uint64(u))) & sub_mask) <= near:
                            seen = True
                            break
                    if seen:
                        continue
                    if n < capacity:
                        out_query[n] = q
                        out_distance[n] = d
                        out_id[n] = ids[t, j]
                    n += 1
    return n
