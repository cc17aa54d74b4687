"""A small wrapper over FAISS binary indexes: 64-bit hashes, exact Hamming-radius search.

Results of a range search over ``Q`` queries are CSR arrays ``(lims, D, I)``: the neighbours of query
``q`` are ``I[lims[q]:lims[q+1]]`` at distances ``D[lims[q]:lims[q+1]]``; ``lims`` is ``(Q+1,)``
int64, ``D`` int32, ``I`` int64 row ids in insertion order. The radius is **inclusive**
(distance ``<= radius``), unlike FAISS's own strict ``< radius``.

The index type is chosen by size: a flat scan (FAISS ``IndexBinaryFlat``) while small, multi-index
hashing (:mod:`imgsearch.index.mih`) when large. Multi-index hashing splits the 64 bits into
``tables`` substrings; by the pigeonhole principle a hash within ``r`` bits of a query is within
``r // tables`` bits of it on at least one substring, so probing ``r // tables`` flips per table
makes it exact, not approximate. Both kinds are tested against a numpy Hamming scan.

Multi-index hashing is our own numpy implementation rather than FAISS's ``IndexBinaryMultiHash``:
on the 264 K patch hashes of 800 photos it searches 400 query hashes 3-4x faster and holds 24 B a
row where FAISS's hash maps made the process grow by 120 B a row (``scripts/bench_query.py``).
"""

from __future__ import annotations

import faiss
import numpy as np

from ..errors import ConfigError
from ..hashing import _POPCOUNT, HASH_BITS, HASH_BYTES
from .mih import MultiIndexHash

FLAT_MAX_ROWS = 65_536  # above this many rows, multi-index hashing beats the flat scan


class HammingIndex:
    """Exact Hamming search over ``(N, 8)`` uint8 hashes.

    Parameters
    ----------
    kind : {"auto", "flat", "mih"}
        Index type; ``"auto"`` picks ``"flat"`` up to :data:`FLAT_MAX_ROWS` rows (at the first
        :meth:`add`) and ``"mih"`` above.
    tables : int
        Number of substrings (hash tables) of multi-index hashing: 4 or 8 (16- or 8-bit substrings).
    """

    def __init__(self, kind: str = "auto", tables: int = 4) -> None:
        if kind not in ("auto", "flat", "mih"):
            raise ConfigError(f"HammingIndex kind must be 'auto', 'flat' or 'mih', got {kind!r}")
        if tables not in (4, 8):
            raise ConfigError(f"HammingIndex tables must be 4 or 8 (16- or 8-bit substrings), got {tables!r}")
        self.tables = tables
        self._requested = kind
        self._index: faiss.IndexBinaryFlat | MultiIndexHash | None = None
        self.kind = kind

    def __len__(self) -> int:
        if isinstance(self._index, MultiIndexHash):
            return len(self._index)
        return 0 if self._index is None else int(self._index.ntotal)

    def nbytes(self) -> int:
        """Bytes of the search structure: the codes (flat), or codes and tables (multi-index hashing)."""
        if isinstance(self._index, MultiIndexHash):
            return self._index.nbytes()
        return len(self) * HASH_BYTES

    @staticmethod
    def _check(hashes: np.ndarray, what: str) -> np.ndarray:
        arr = np.ascontiguousarray(hashes, dtype=np.uint8)
        if arr.ndim != 2 or arr.shape[1] != HASH_BYTES:
            raise ConfigError(f"{what} must be (N, {HASH_BYTES}) uint8 hashes, got shape {np.shape(hashes)}")
        return arr

    def add(self, hashes: np.ndarray) -> None:
        """Append ``(N, 8)`` uint8 hashes; their row ids continue from :func:`len`."""
        arr = self._check(hashes, "hashes")
        if self._index is None:
            kind = self._requested
            if kind == "auto":
                kind = "flat" if arr.shape[0] <= FLAT_MAX_ROWS else "mih"
            self.kind = kind
            if kind == "flat":
                self._index = faiss.IndexBinaryFlat(HASH_BITS)
            else:
                self._index = MultiIndexHash(self.tables)
        if arr.shape[0]:
            self._index.add(arr)

    def range_search(
        self, queries: np.ndarray, radius: int, flips: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows within ``radius`` bits (inclusive) of each query, as CSR ``(lims, D, I)``.

        Within a query, neighbours are sorted by distance, then row id. ``flips`` is the number of
        bits multi-index hashing flips when probing a table: ``None`` means ``radius // tables``,
        which makes the search exact; fewer flips trade recall for speed. The result is then the
        rows within ``radius`` that also agree with the query within ``flips`` bits on at least one
        of the ``tables`` substrings: a property of the query and the row alone, applied by the flat
        index too, so that the answer does not depend on the index kind, its size, or the other
        rows, and shards of an index merge exactly.
        """
        q = self._check(queries, "queries")
        if not 0 <= radius < HASH_BITS:
            raise ConfigError(f"radius must be in [0, {HASH_BITS - 1}], got {radius!r}")
        if self._index is None or len(self) == 0 or q.shape[0] == 0:
            return np.zeros(q.shape[0] + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64)
        exact = flips is None or flips >= radius // self.tables
        nflip = radius // self.tables if exact else int(flips)  # type: ignore[arg-type]
        if isinstance(self._index, MultiIndexHash):  # meets the probe predicate by construction
            query_of, ids, dist = self._index.range_search(q, radius, nflip)
            counts = np.bincount(query_of, minlength=q.shape[0])
            lims = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        else:
            lims, dist, ids = self._index.range_search(q, radius + 1)
            lims = lims.astype(np.int64)
            if not exact:
                lims, dist, ids = self._probe_filter(self._index, q, lims, dist, ids, nflip)
            query_of = np.repeat(np.arange(q.shape[0]), np.diff(lims))
        # Sort by (query, distance, id): both kinds return their own scan order.
        order = np.lexsort((ids, dist, query_of))
        return lims, dist[order].astype(np.int32), ids[order].astype(np.int64)

    def _probe_filter(
        self,
        index: faiss.IndexBinary,
        q: np.ndarray,
        lims: np.ndarray,
        dist: np.ndarray,
        ids: np.ndarray,
        flips: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keep the results whose row agrees with its query within ``flips`` bits on some substring."""
        query_of = np.repeat(np.arange(q.shape[0]), np.diff(lims))
        # Only called for the flat kind; the stubs leave IndexBinaryFlat's storage ``xb`` out.
        stored = faiss.vector_to_array(index.xb).reshape(-1, HASH_BYTES)  # type: ignore[attr-defined]
        xor = np.bitwise_xor(q[query_of], stored[ids])
        per_table = _POPCOUNT[xor].reshape(len(ids), self.tables, HASH_BYTES // self.tables).sum(axis=2)
        keep = per_table.min(axis=1) <= flips
        counts = np.bincount(query_of[keep], minlength=q.shape[0])
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), dist[keep], ids[keep]
