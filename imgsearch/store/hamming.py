"""The global tier's search of one segment: every stored 64-bit pHash within a radius of a query's.

Two ways, the same results (tested against each other and against a scan of every code):

* **Flat** (:class:`Flat`): FAISS's exhaustive binary range search, every stored code compared
  with every query code. Cheapest for small segments, and it needs no numba (a small index's
  one-off query does not load it).
* **Multi-index** (:class:`MultiIndex`, Norouzi et al., "Fast search in Hamming space with
  multi-index hashing", CVPR 2012): the codes in :data:`TABLES` tables, each keyed on one 16-bit
  substring. A code within ``r`` bits of the query is within ``r // 4`` bits of it on some
  substring (pigeonhole), so a query reads, in each table, the buckets of the keys within
  ``r // 4`` bits of its own substring (697 of 65,536 at ``r`` = 12, 17 at ``r`` = 4) and checks
  the codes there; a code found in an earlier table is skipped.

Measured (``scripts/research/global_search.py``: codes drawn as ``bench_scale.py``'s synthetic
rows are, 8-16 bits flipped from one of 475 photos' pHashes; 16 variants a query, the 8 dihedral
ones at 12 bits and the 8 negatives at 4; one core), flat / multi-index ms a query: 0.11 / 0.11 at
10,000 codes, 0.22 / 0.19 at 20,000, 0.31 / 0.25 at 32,000, 1.2 / 0.52 at 100,000, 10.3 / 1.4 at a
million. A segment of at least :data:`MULTI_INDEX_MIN` images is searched by multi-index; its
tables are built at its first search (a counting sort a table, about 0.1 s a million codes) and
hold 48 bytes an image and 1 MB.
"""

from __future__ import annotations

import threading

import faiss
import numpy as np

from . import scan

TABLES = 4  # 16-bit substrings
MULTI_INDEX_MIN = 20_000  # images in a segment from which the multi-index search is used
_BITS = 64 // TABLES
_MASKS = np.array(sorted(range(1 << _BITS), key=lambda m: (int(m).bit_count(), m)), np.int64)
# _UPTO[s]: how many of _MASKS have at most s bits set
_UPTO = np.searchsorted(np.bitwise_count(_MASKS), np.arange(_BITS + 1), side="right").astype(np.int64)


class Flat:
    """FAISS's exhaustive binary range search over ``(n, 8)`` uint8 codes."""

    def __init__(self, hashes: np.ndarray) -> None:
        self.index = faiss.IndexBinaryFlat(64)
        if len(hashes):
            self.index.add(np.ascontiguousarray(hashes, np.uint8))
        self.nbytes = len(hashes) * 8  # FAISS's copy

    def warm(self) -> None:
        """Nothing to build (FAISS's copy is made with the object)."""

    def search(self, queries: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stored codes within ``radii[q]`` bits (inclusive; ``(Q,)`` int64) of ``(Q, 8)`` uint8
        ``queries[q]``, as ``(query, distance, row)`` int64 arrays, by query then row."""
        if self.index.ntotal == 0 or len(queries) == 0:
            z = np.zeros(0, np.int64)
            return z, z, z
        lims, dist, ids = self.index.range_search(np.ascontiguousarray(queries, np.uint8), int(radii.max()) + 1)
        query = np.repeat(np.arange(len(queries)), np.diff(lims.astype(np.int64)))
        dist = dist.astype(np.int64)
        keep = dist <= radii[query]
        return query[keep], dist[keep], ids[keep].astype(np.int64)


class MultiIndex:
    """Multi-index hashing over ``(n, 8)`` uint8 codes (module docstring); built at the first search."""

    def __init__(self, hashes: np.ndarray) -> None:
        self._hashes = hashes
        self._lock = threading.Lock()
        self._tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.nbytes = len(hashes) * (TABLES * 12) + TABLES * ((1 << _BITS) + 1) * 4

    def warm(self) -> None:
        """Build the tables now rather than at the first search."""
        if len(self._hashes):
            self._built()

    def _built(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            if self._tables is None:
                kernels = scan.kernels()
                codes = np.ascontiguousarray(self._hashes, np.uint8).view(np.uint64).reshape(-1)
                n = len(codes)
                starts = np.empty((TABLES, (1 << _BITS) + 1), np.uint32)
                sorted_codes = np.empty((TABLES, n), np.uint64)
                ids = np.empty((TABLES, n), np.uint32)
                for t in range(TABLES):
                    keys = ((codes >> np.uint64(_BITS * t)) & np.uint64((1 << _BITS) - 1)).astype(np.int64)
                    kernels.counting_order(keys, 1 << _BITS, starts[t], ids[t])
                    sorted_codes[t] = codes[ids[t]]
                self._tables = sorted_codes, ids, starts
            return self._tables

    def search(self, queries: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`Flat.search`: the same arrays."""
        if len(self._hashes) == 0 or len(queries) == 0:
            z = np.zeros(0, np.int64)
            return z, z, z
        codes, ids, starts = self._built()
        q = np.ascontiguousarray(queries, np.uint8).view(np.uint64).reshape(-1)
        kernel = scan.kernels().multi_index
        capacity = scan.MIN_CAPACITY
        while True:
            out_q = np.empty(capacity, np.int64)
            out_d = np.empty(capacity, np.int64)
            out_i = np.empty(capacity, np.int64)
            n = kernel(codes, ids, starts, _MASKS, _UPTO, q, radii, out_q, out_d, out_i)
            if n <= capacity:
                break
            capacity = n  # more codes near than room for them: search again with room for all
        order = np.argsort((out_q[:n] << 32) | out_i[:n])  # as FAISS: by query, then id
        return out_q[order], out_d[order], out_i[order]


def for_segment(hashes: np.ndarray) -> Flat | MultiIndex:
    """The search of a segment's ``(n, 8)`` uint8 global hashes: multi-index from
    :data:`MULTI_INDEX_MIN` images, else flat."""
    return MultiIndex(hashes) if len(hashes) >= MULTI_INDEX_MIN else Flat(hashes)
