"""The patch-hash postings of one segment: an inverted file keyed by the bits that edits flip least.

Why (measured on the shared photos; the lookup research of issue 12): the four 16-bit substrings of
multi-index hashing gathered rows linearly in the index size (60,000 per query hash at a million
images, 0.7 s a query pass) and held 24 B a row. Here every voting keypoint is **one 64-bit word**
in **one table** whose key is the first ``width`` bits of its hash in :data:`RELIABLE_ORDER` (the
DCT bits that copies flip least), with ``width`` growing with the segment (:func:`key_width`), so
a bucket holds about a hundred rows whatever the size. A query hash probes its bucket and the
buckets of the :data:`PROBE_MASKS` subsets of its own least confident key bits flipped (those whose
DCT coefficient lies nearest the median, :func:`bit_margins`): the bits most likely to differ in a
copy, known from the query alone. Rows farther than the radius are dropped, exactly.

Layout of a posting word (most significant first)::

    [ the hash's other bits, in RELIABLE_ORDER ]   code_bits = 64 - width - dropped
    [ keypoint angle, 5 bits ][ keypoint scale, 3 bits ]   (GEOMETRY_BITS, for weak geometric consistency)
    [ the image's row in the segment ]           image_bits

``dropped`` is the number of least reliable bits that do not fit, the DC bit first (it is 1 in every
patch hash, so dropping it loses nothing; with the default widths nothing else is dropped). Buckets
are contiguous: ``starts[k]:starts[k + 1]`` are the words of key ``k``.

Hash bits are numbered as in :mod:`imgsearch.hashing`: bit ``b`` is DCT coefficient ``(b // 8, b % 8)``,
the ``b``-th most significant bit of the big-endian 64-bit code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from . import scan

# Bits in the order copies flip them least (flip rates of 33,013 true keypoint pairs of 300 copies
# of the shared photos, lowest first); the DC bit 0, always 1, last.
RELIABLE_ORDER: tuple[int, ...] = (
    1, 4, 20, 2, 8, 16, 9, 17, 18, 3, 10, 24, 6, 32, 34, 11, 22, 25, 36, 19, 26, 27, 12, 33, 13, 35,
    50, 40, 5, 29, 28, 48, 41, 43, 7, 14, 37, 21, 30, 44, 38, 42, 52, 23, 49, 51, 15, 56, 45, 31, 58,
    46, 53, 39, 57, 59, 60, 47, 54, 61, 55, 62, 63, 0,
)  # fmt: skip
# Probes, as sets of the query's least confident key bits to flip (bit r of a mask: the r-th least
# confident), most likely first: the 32 most probable subsets of the 10 least confident under their
# mean flip probabilities on those copies (0.31, 0.23, 0.16, 0.12, 0.08, 0.06, 0.04, 0.03, 0.02, 0.01),
# then the next 32 under those probabilities as rounded here (for SearchConfig.probes up to 64).
PROBE_MASKS: tuple[int, ...] = (
    0, 1, 2, 4, 3, 8, 16, 5, 32, 9, 6, 64, 17, 10, 128, 33, 18, 7, 12, 256, 65, 34, 20, 11, 512, 129,
    66, 36, 19, 24, 13, 257,
    130, 40, 35, 68, 14, 21, 258, 132, 72, 67, 48, 37, 25, 22, 513, 136, 131, 41, 260, 38, 80, 69,
    26, 15, 514, 264, 259, 144, 96, 133, 42, 73,
)  # fmt: skip
DEFAULT_PROBES = 32  # SearchConfig.probes' default
PROBE_BITS = 10  # the least confident key bits the probes flip
GEOMETRY_BITS = 8  # 5 for the keypoint's angle (11.25° bins), 3 for its size (octave bins)
ANGLE_BINS = 32
SCALE_BINS = 8
MIN_WIDTH, MAX_WIDTH = 12, 28
MAX_IMAGES = 1 << 21  # rows of one segment (a compacted million fits twice)
# A segment with at most this many rows per probe of a pass is matched row by row (each row's key
# looked up among the probes' sorted keys) instead of probe by probe: the small segments that
# adds leave until a merge (one image: 240 rows against 12,800 probes). Beside 475 images, twelve
# one-image segments: new images p50 44.3 ms probe by probe, 37.2 ms this way
# (scripts/bench_small_segments.py).
ROWS_PER_PROBE = 0.25
# Until a process has loaded the compiled scan (numba: about 0.6 s and 150 MB the first time), a
# segment of up to this many rows (about 400 images) is matched row by row too: a one-off query of
# a small index answers without loading it. The answers are the same either way (tested).
NUMPY_ROWS = 100_000

assert sorted(RELIABLE_ORDER) == list(range(64))
assert len(set(PROBE_MASKS)) == len(PROBE_MASKS) == 64 and max(PROBE_MASKS) < 1 << PROBE_BITS

_SHIFTS = np.arange(63, -1, -1, dtype=np.uint64)  # bit b of a code is (code >> (63 - b)) & 1


def key_width(images: int) -> int:
    """Key bits of a segment of ``images`` images: ``ceil(log2(images)) + 7``, within [12, 28]
    (about 128 voting rows a bucket at 240 voters an image)."""
    return min(MAX_WIDTH, max(MIN_WIDTH, math.ceil(math.log2(max(images, 2))) + 7))


def image_bits(images: int) -> int:
    return max(1, math.ceil(math.log2(max(images, 2))))


def codes_of(hashes: np.ndarray) -> np.ndarray:
    """``(N, 8)`` uint8 packed hashes as ``(N,)`` uint64 codes, byte 0 most significant."""
    return np.ascontiguousarray(hashes, dtype=np.uint8).view(">u8").reshape(-1).astype(np.uint64)


def _permutation_tables() -> np.ndarray:
    """``(8, 256)`` uint64: OR over bytes ``j`` of ``table[j][byte_j]`` is the code in reliable order."""
    new_position = np.empty(64, np.int64)
    new_position[np.array(RELIABLE_ORDER)] = np.arange(64)
    table = np.zeros((8, 256), np.uint64)
    values = np.arange(256)
    for b in range(64):
        byte, bit = divmod(b, 8)
        on = ((values >> (7 - bit)) & 1).astype(np.uint64)
        table[byte] |= on << np.uint64(63 - new_position[b])
    return table


_PERMUTE = _permutation_tables()


def reorder(codes: np.ndarray) -> np.ndarray:
    """``(N,)`` uint64 codes with their bits in :data:`RELIABLE_ORDER`, most reliable first
    (byte by byte through :data:`_PERMUTE`, reading the bytes in place: 8 bytes of temporaries a
    code besides the result)."""
    codes = np.ascontiguousarray(codes, np.uint64)
    as_bytes = codes.view(np.uint8).reshape(-1, 8)
    most_significant = (lambda j: 7 - j) if np.little_endian else (lambda j: j)
    out = np.zeros(len(codes), np.uint64)
    for j in range(8):
        out |= _PERMUTE[j][as_bytes[:, most_significant(j)]]
    return out


def bit_margins(coeffs: np.ndarray) -> np.ndarray:
    """How sure each hash bit is: ``|c - median| / median(|c - median|)`` of the 64 DCT coefficients
    behind it, ``(N, 64)`` float32 from ``(N, 8, 8)`` (or ``(N, 64)``) coefficients; small is unsure."""
    flat = np.asarray(coeffs, np.float64).reshape(len(coeffs), 64)
    # Medians of 64 values as the mean of the 32nd and 33rd: a SIMD sort of 64 values is several
    # times faster than np.median's partition on a batch (as in hashing.threshold_bits).
    ordered = np.sort(flat, axis=1)
    median = (ordered[:, 31:32] + ordered[:, 32:33]) / 2.0
    deviation = np.abs(flat - median)
    ordered = np.sort(deviation, axis=1)
    spread = (ordered[:, 31:32] + ordered[:, 32:33]) / 2.0 + 1e-9
    return (deviation / spread).astype(np.float32)


def geometry_bins(angle: np.ndarray, size: np.ndarray) -> np.ndarray:
    """``(N,)`` uint8 of a keypoint's angle (degrees, 32 bins) and size (pixels, octaves from 4 px,
    8 bins): the :data:`GEOMETRY_BITS` a posting keeps for weak geometric consistency."""
    a = (np.floor(np.mod(angle, 360.0) / (360.0 / ANGLE_BINS)).astype(np.int64)) % ANGLE_BINS
    s = np.clip(np.floor(np.log2(np.maximum(size, 1e-3) / 4.0)).astype(np.int64), 0, SCALE_BINS - 1)
    return ((a << 3) | s).astype(np.uint8)


@dataclass(frozen=True)
class Layout:
    """Bit layout of one segment's postings (stored in its metadata). ``ordered``: the words of a
    bucket ascend by their stored code (segments written since ordered buckets came; before, a
    bucket's words kept their images' order), so a probe finer than the key reads only its part of a bucket."""

    width: int
    image_bits: int
    ordered: bool = False

    @property
    def code_bits(self) -> int:
        return min(64 - self.width, 64 - GEOMETRY_BITS - self.image_bits)

    @classmethod
    def for_images(cls, images: int) -> Layout:
        if images > MAX_IMAGES:
            raise ConfigError(f"a segment holds at most {MAX_IMAGES} images, got {images}")
        return cls(key_width(images), image_bits(images), ordered=True)


def build(
    codes: np.ndarray, images: np.ndarray, geometry: np.ndarray, layout: Layout
) -> tuple[np.ndarray, np.ndarray]:
    """Posting ``words`` and bucket ``starts`` of voting rows.

    Parameters
    ----------
    codes : (V,) uint64 hash codes (:func:`codes_of`)
    images : (V,) int image row of each, in ``[0, 2**layout.image_bits)``
    geometry : (V,) uint8 :func:`geometry_bins`
    layout : Layout

    Returns
    -------
    words : (V,) uint64, grouped by key; with ``layout.ordered``, ascending by code within a key
        (rows of one code keep their input order), else in input order within a key
    starts : (2**width + 1,) uint32 (uint64 from 2**32 rows)
    """
    w = layout.width
    permuted = reorder(np.asarray(codes, np.uint64))
    # In place where it can be: about 40 bytes a row at the peak (merges of hundreds of thousands
    # of images build these).
    if layout.ordered:
        order = np.argsort(permuted, kind="stable")
    else:
        order = np.argsort((permuted >> np.uint64(64 - w)).astype(np.uint32), kind="stable")
    words = permuted[order]
    del permuted
    key = (words >> np.uint64(64 - w)).astype(np.uint32)
    counts = np.bincount(key, minlength=1 << w)
    del key
    starts = np.zeros((1 << w) + 1, starts_dtype(len(codes)))
    np.cumsum(counts, out=starts[1:])
    del counts
    return pack(words, np.asarray(images)[order], np.asarray(geometry, np.uint8)[order], layout), starts


def starts_dtype(rows: int) -> np.dtype:
    """The dtype of the bucket starts of a segment of ``rows`` voting rows."""
    return np.dtype(np.uint32 if rows < 2**32 else np.uint64)


def pack(permuted: np.ndarray, images: np.ndarray, geometry: np.ndarray, layout: Layout) -> np.ndarray:
    """Posting words, in place, of ``(V,)`` uint64 reordered codes (:func:`reorder`, in bucket
    order) and their rows' image ids and :func:`geometry_bins`: see the module's layout."""
    w = np.uint64(layout.width)
    permuted <<= w
    permuted >>= np.uint64(64 - layout.code_bits)  # the next code_bits bits
    permuted <<= np.uint64(GEOMETRY_BITS + layout.image_bits)
    permuted |= np.asarray(geometry, np.uint8).astype(np.uint64) << np.uint64(layout.image_bits)
    permuted |= np.asarray(images).astype(np.uint64)
    return permuted


@dataclass(frozen=True)
class Hits:
    """Rows found for a batch of query hashes, as parallel ``(P,)`` arrays."""

    query: np.ndarray  # int64 row of the query hash
    image: np.ndarray  # int64 image row in the segment
    geometry: np.ndarray  # uint8 :func:`geometry_bins` of the indexed keypoint
    distance: np.ndarray  # int64 Hamming distance (over the bits kept)


class Plan:
    """The probes of a batch of query hashes at one key ``width``, made once for every segment:
    the reordered ``(Q,)`` codes, their ``(Q, T)`` masks, and the probes' keys, sorted (computed at
    first use)."""

    def __init__(self, codes: np.ndarray, margins: np.ndarray, width: int, probes: int = DEFAULT_PROBES):
        if not MIN_WIDTH <= width <= MAX_WIDTH:
            raise ValueError(f"probes at {width} bits: the key width is {MIN_WIDTH} to {MAX_WIDTH}")
        self.width = width
        self.q = reorder(np.asarray(codes, np.uint64))
        # The PROBE_BITS least confident key bits of each query hash, as positions in reordered codes.
        key_margins = np.asarray(margins)[:, np.array(RELIABLE_ORDER[:width])]
        m = min(PROBE_BITS, width)
        # The stable argsort of each row, by one sort of (margin's bits << 5 | position): margins
        # (bit_margins) are non-negative float32, whose bit patterns sort as their values, and
        # widths fit 5 bits (0.06 ms for 400 hashes at 22 bits against 0.2).
        packed = np.asarray(key_margins, np.float32).view(np.int32).astype(np.int64) << 5
        packed |= np.arange(width, dtype=np.int64)
        least = np.sort(packed, axis=1)[:, :m] & 31  # (Q, m) reordered positions
        template = np.array([t for t in PROBE_MASKS[:probes] if t < (1 << m)], np.int64)
        # (Q, T): the bits each probe flips, the sum of its template's bit values, by one product
        # in float64: the bits are distinct powers of two within the code's first MAX_WIDTH bits,
        # so every sum is exact (53-bit mantissa), as is its conversion (25 us against 100 for a
        # loop over the m bits, 400 hashes).
        uses = ((template[None, :] >> np.arange(m)[:, None]) & 1).astype(np.float64)  # (m, T)
        self.masks = (np.ldexp(1.0, 63 - least) @ uses).astype(np.uint64)
        self._fine: tuple[np.ndarray, np.ndarray] | None = None
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    def fine_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """``(probe query, key)`` int64 arrays of every probe at ``width`` bits, query-major
        (distinct within a query: its masks flip key bits only)."""
        if self._fine is None:
            nq, n_probes = self.masks.shape
            key = ((self.q[:, None] ^ self.masks) >> np.uint64(64 - self.width)).astype(np.int64)
            self._fine = (np.repeat(np.arange(nq, dtype=np.int64), n_probes), key.ravel())
        return self._fine

    def sorted_fine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(probe query, key)`` of :meth:`fine_keys` in the order of their keys (stable), made once
        for every segment."""
        if self._sorted is None:
            query, key = self.fine_keys()
            # The stable order, by one sort of key << 35 | index (keys have at most MAX_WIDTH = 28
            # bits, so the sign bit stays clear): numpy's SIMD sort, 0.1 ms for a pass's 12,800
            # probes against 1.0 for a stable argsort.
            packed = np.sort((key << 35) | np.arange(len(key), dtype=np.int64))
            self._sorted = (query[packed & ((1 << 35) - 1)], packed >> 35)
        return self._sorted


def probe(
    words: np.ndarray,
    starts: np.ndarray,
    layout: Layout,
    codes: np.ndarray,
    margins: np.ndarray,
    radius: int,
    probes: int = DEFAULT_PROBES,
    width: int | None = None,
    plan: Plan | None = None,
) -> Hits:
    """Rows within ``radius`` bits of ``(Q,)`` query ``codes`` among the buckets their first
    ``probes`` :data:`PROBE_MASKS` reach; ``margins`` ``(Q, 64)`` from :func:`bit_margins`.

    ``width`` (default: the segment's own, ``layout.width``; never less) is the key width the
    probes are made at: the query hash's least confident of its first ``width`` bits are flipped.
    On a segment keyed on fewer bits a probe keeps the rows of its coarser bucket whose first
    ``width`` bits are the probe's (they are the leading bits of the stored code), reading only
    their run of an ordered bucket: exactly the rows a segment keyed on ``width`` bits would give,
    so an index probed at one width answers alike however its images are split into segments.
    Each (query hash, row) pair comes once, probe by probe in the order of their keys, rows
    ascending (:func:`imgsearch.store.scan.scan`); a segment with at most :data:`ROWS_PER_PROBE`
    rows a probe (or :data:`NUMPY_ROWS` rows, until the process has loaded the compiled scan) is
    matched row by row in numpy, the pairs in the same order.
    A :class:`Plan` of these codes, margins, probes and width, made once for several segments,
    may be given instead of recomputing it.
    """
    w = layout.width
    if plan is None:
        plan = Plan(codes, margins, w if width is None else width, probes)
    if plan.width < w:
        raise ValueError(f"probes at {plan.width} bits on a segment keyed on {w}")
    if len(plan.q) == 0 or len(words) == 0:
        return _no_hits()
    if len(words) <= ROWS_PER_PROBE * plan.masks.size or (len(words) <= NUMPY_ROWS and not scan.loaded()):
        return _by_rows(words, starts, layout, plan, radius)
    query_of, keys = plan.sorted_fine()
    found, position, distance = scan.scan(
        words, starts, plan.q, query_of, keys, w, plan.width - w, layout.code_bits,
        GEOMETRY_BITS + layout.image_bits, radius, layout.ordered,
    )  # fmt: skip
    return _unpacked(query_of[found], np.asarray(words)[position], distance, layout)


def _by_rows(words: np.ndarray, starts: np.ndarray, layout: Layout, plan: Plan, radius: int) -> Hits:
    """:func:`probe` of a segment with fewer rows than probes: each row's key at the plan's width
    (its bucket and the leading bits of its stored code) is looked up among the probes' sorted
    keys; the pairs come in the order the probe by probe reading gives (probes by key, rows ascending)."""
    w, finer = layout.width, plan.width - layout.width
    low = np.uint64(GEOMETRY_BITS + layout.image_bits)
    sizes: np.ndarray = np.diff(np.asarray(starts, np.int64))
    bucket = np.repeat(np.arange(len(starts) - 1, dtype=np.int64), sizes)
    stored = words >> low
    fine = bucket
    if finer:
        fine = (bucket << finer) | (stored >> np.uint64(layout.code_bits - finer)).astype(np.int64)
    query_of, keys = plan.sorted_fine()
    lo = np.searchsorted(keys, fine, side="left")
    n = np.searchsorted(keys, fine, side="right") - lo
    total = int(n.sum())
    if total == 0:
        return _no_hits()
    row = np.repeat(np.arange(len(words)), n)
    at = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(total)  # among the sorted keys
    qc = plan.q[query_of[at]]
    distance = np.bitwise_count((qc >> np.uint64(64 - w)) ^ bucket[row].astype(np.uint64)).astype(np.int64)
    distance += np.bitwise_count(stored[row] ^ ((qc << np.uint64(w)) >> np.uint64(64 - layout.code_bits)))
    keep = np.flatnonzero(distance <= radius)
    keep = keep[np.lexsort((row[keep], at[keep]))]
    return _unpacked(query_of[at[keep]], words[row[keep]], distance[keep], layout)


def _unpacked(query: np.ndarray, word: np.ndarray, distance: np.ndarray, layout: Layout) -> Hits:
    """The :class:`Hits` of posting words ``word`` (``(H,)`` uint64, as :func:`pack` made them)
    found for lookup hashes ``query`` at Hamming ``distance``."""
    return Hits(
        query=query,
        image=(word & np.uint64((1 << layout.image_bits) - 1)).astype(np.int64),
        geometry=((word >> np.uint64(layout.image_bits)) & np.uint64(255)).astype(np.uint8),
        distance=np.asarray(distance).astype(np.int64),
    )


def _no_hits() -> Hits:
    empty = np.zeros(0, np.int64)
    return Hits(empty, empty, np.zeros(0, np.uint8), empty)
