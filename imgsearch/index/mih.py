"""Multi-index hashing (Norouzi et al.) of 64-bit hashes in numpy: small in RAM, no per-row objects.

The 64 bits are split into ``tables`` substrings of ``64 / tables`` consecutive bits (whole bytes,
most significant first: table ``t`` holds bytes ``[8t / tables, 8(t + 1) / tables)`` of the packed
hash). Per table the structure is two arrays:

* ``perm[t]``: ``(N,)`` uint32 row ids sorted by their substring ``t`` (a stable radix sort);
* ``starts[t]``: ``(2**width + 1,)`` uint32 bucket boundaries, so the rows whose substring is ``s``
  are ``perm[t][starts[t][s]:starts[t][s + 1]]``.

With the hashes themselves (``(N,)`` uint64, 8 B a row), that is ``8 + 4 * tables`` bytes a row plus
a fixed ``(2**width + 1) * 4 * tables`` (1 MiB for 4 tables of 16 bits). FAISS's
``IndexBinaryMultiHash`` keeps a hash map entry per row and table, several times more.

A search probes, in every table, the buckets within ``flips`` bits of the query's substring, gathers
their rows for all queries at once, keeps those within the radius, and drops a row found in table
``t`` that an earlier table also probes (its substring there within ``flips`` bits too), so that each
pair appears once without a set or a sort. The result is every row within ``radius`` that agrees with
the query within ``flips`` bits on some substring; ``flips = radius // tables`` makes it exact.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations

import numpy as np

from ..errors import ConfigError

_MAX_ROWS = np.iinfo(np.uint32).max


def codes_of(hashes: np.ndarray) -> np.ndarray:
    """``(N, 8)`` uint8 packed hashes as ``(N,)`` uint64 with byte 0 most significant."""
    return np.ascontiguousarray(hashes, dtype=np.uint8).view(">u8").reshape(-1).astype(np.uint64)


@lru_cache(maxsize=32)
def _probe_masks(width: int, flips: int) -> np.ndarray:
    """All ``width``-bit masks with at most ``flips`` bits set, fewest first: ``(P,)`` int64."""
    masks = [0]
    for k in range(1, flips + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(width), k)]
    return np.array(masks, dtype=np.int64)


class MultiIndexHash:
    """Exact (or probe-limited) Hamming range search over 64-bit codes; see the module docstring.

    Parameters
    ----------
    tables : {4, 8}
        Substrings of 16 or 8 bits; their buckets are addressed directly.
    """

    def __init__(self, tables: int = 4) -> None:
        if tables not in (4, 8):
            raise ConfigError(
                f"multi-index hashing needs 4 or 8 tables (16- or 8-bit substrings), got {tables!r}"
            )
        self.tables = tables
        self.width = 64 // tables
        self.codes = np.zeros(0, np.uint64)
        self.perm: list[np.ndarray] = []
        self.starts: list[np.ndarray] = []

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def nbytes(self) -> int:
        """Bytes of the arrays held: codes, permutations and bucket boundaries."""
        return self.codes.nbytes + sum(p.nbytes for p in self.perm) + sum(s.nbytes for s in self.starts)

    def substring(self, codes: np.ndarray, table: int) -> np.ndarray:
        """Substring ``table`` of ``(N,)`` uint64 codes: ``(N,)`` uint16 (or uint8) in ``[0, 2**width)``."""
        shift = np.uint64(64 - self.width * (table + 1))
        narrow = np.uint16 if self.width == 16 else np.uint8
        return ((codes >> shift) & np.uint64((1 << self.width) - 1)).astype(narrow)

    def add(self, hashes: np.ndarray) -> None:
        """Append ``(N, 8)`` uint8 hashes and rebuild the tables (a stable sort of narrow keys per table)."""
        if len(self) + len(hashes) > _MAX_ROWS:
            raise ConfigError(f"multi-index hashing holds at most {_MAX_ROWS} rows; shard the index")
        self.codes = np.concatenate([self.codes, codes_of(hashes)])
        self.perm, self.starts = [], []
        for t in range(self.tables):
            keys = self.substring(self.codes, t)
            counts = np.bincount(keys, minlength=1 << self.width)
            self.starts.append(np.concatenate([[0], np.cumsum(counts)]).astype(np.uint32))
            self.perm.append(np.argsort(keys, kind="stable").astype(np.uint32))

    def range_search(
        self, hashes: np.ndarray, radius: int, flips: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(query, row, distance)`` of the pairs within ``radius`` bits (inclusive), probing ``flips`` bits.

        Returns three ``(P,)`` int64 arrays, each pair once, in no particular order.
        """
        queries = codes_of(hashes)
        masks = _probe_masks(self.width, flips)
        found_q, found_r, found_d = [], [], []
        for t in range(self.tables):
            probes = (self.substring(queries, t).astype(np.int64)[:, None] ^ masks[None, :]).reshape(-1)
            lo = self.starts[t][probes].astype(np.int64)
            hi = self.starts[t][probes + 1].astype(np.int64)
            counts = hi - lo
            total = int(counts.sum())
            if total == 0:
                continue
            query = np.repeat(np.repeat(np.arange(len(queries)), len(masks)), counts)
            # Positions lo..hi-1 of every probed bucket, concatenated.
            pos = np.arange(total) - np.repeat(np.cumsum(counts) - counts - lo, counts)
            row = self.perm[t][pos].astype(np.int64)
            xor = queries[query] ^ self.codes[row]
            dist = np.bitwise_count(xor)
            keep = dist <= radius
            for u in range(t):  # an earlier table probed this pair already
                keep &= np.bitwise_count(self.substring(xor, u)) > flips
            found_q.append(query[keep])
            found_r.append(row[keep])
            found_d.append(dist[keep].astype(np.int64))
        if not found_q:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(found_q), np.concatenate(found_r), np.concatenate(found_d)
