"""Synthetic feature rows for ``bench_scale.py``: real rows resampled with fresh bits, and the
bucket-size profiles that compare them with the real ones.

A synthetic image is a random source image's first ``KeypointConfig.hashed`` keypoints (the voting
ones) with each patch hash given ``pairs`` pairs of exchanged bits (a 1 and a 0, never the DC bit
0, so the weight of 32 stays), its global hash with 8-16 random bits flipped, a random digest and
the path ``synthetic/NNNNNNN.jpg``. :func:`calibrate` says how far such rows keep the bucket skew
of real ones when each source is resampled many times, as it is at a million images.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

FIELDS = ("keypoints", "descriptors", "patch_hash")
CALIBRATION_K = (10, 50)  # resampling factors compared (at a million, each source serves ~100 images)
CALIBRATION_PAIRS = (0, 1, 2, 3)


def flip_pairs(codes: np.ndarray, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``(M,)`` uint64 hash codes with ``pairs`` times a random 1 bit and a random 0 bit exchanged,
    never bit 0 (the DC bit, the code's most significant); the weight is kept."""
    out = codes.copy()
    for _ in range(pairs):
        todo = np.arange(len(out))
        while len(todo):  # rejection: draw (p, q) until bit p is 1 and bit q is 0 (~1 in 4)
            p = rng.integers(1, 64, len(todo)).astype(np.uint64)
            q = rng.integers(1, 64, len(todo)).astype(np.uint64)
            one, c = np.uint64(1), out[todo]
            ok = (((c >> (np.uint64(63) - p)) & one) == 1) & (((c >> (np.uint64(63) - q)) & one) == 0)
            out[todo[ok]] = c[ok] ^ (one << (np.uint64(63) - p[ok])) ^ (one << (np.uint64(63) - q[ok]))
            todo = todo[~ok]
    return out


class Resampler:
    """The source images' voting rows in RAM, resampled into synthetic :class:`Batch` es."""

    def __init__(self, index, ids: np.ndarray, hashed: int) -> None:
        parts = [index.reader.read_local(int(i), FIELDS, hashed) for i in ids]
        self.counts = np.array([len(p["keypoints"]) for p in parts], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.local = {f: np.concatenate([p[f] for p in parts]) for f in FIELDS}
        cols = ("global_hash", "width", "height", "kp_scale", "file_size")
        self.columns = {c: np.stack([index.reader.value(c, int(i)) for i in ids]) for c in cols}

    def rows(self, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        counts = self.counts[src]
        start = np.repeat(self.offsets[src] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        return counts, start + np.arange(int(counts.sum()))

    def codes(self, idx: np.ndarray) -> np.ndarray:
        return self.local["patch_hash"][idx].reshape(-1, 8).view(">u8").ravel().astype(np.uint64)

    def batch(self, first: int, n: int, pairs: int, rng: np.random.Generator):
        from imgsearch.store.segment import Batch

        src = rng.integers(0, len(self.counts), n)
        counts, idx = self.rows(src)
        hashes = flip_pairs(self.codes(idx), pairs, rng).astype(">u8").view(np.uint8)
        local = {"keypoints": self.local["keypoints"][idx], "descriptors": self.local["descriptors"][idx],
                 "patch_hash": hashes.reshape(len(idx), -1, 8)}  # fmt: skip
        # A random permutation's values below k sit at k random places: k distinct bits a row.
        flips = np.argsort(rng.random((n, 64)), axis=1) < rng.integers(8, 17, n)[:, None]
        ghash = np.unpackbits(self.columns["global_hash"][src], axis=1) ^ flips
        columns = {c: self.columns[c][src] for c in ("width", "height", "kp_scale", "file_size")}
        columns.update(global_hash=np.packbits(ghash.astype(np.uint8), axis=1), mtime_ns=np.zeros(n, np.int64),
                       digest=rng.integers(0, 256, (n, 32), dtype=np.uint8))  # fmt: skip
        paths = [f"synthetic/{first + k:07d}.jpg" for k in range(n)]
        return Batch(paths, columns, counts, local)


def bucket_profile(codes: np.ndarray, width: int) -> tuple[float, float, int]:
    """Size-biased bucket sizes of rows keyed as a segment's postings of ``width`` key bits:
    mean and p99 of the size of the bucket a row lies in (what a probe of a like hash gathers), max."""
    from imgsearch.store import postings

    _, counts = np.unique(postings.reorder(codes) >> np.uint64(64 - width), return_counts=True)
    per_row = np.repeat(counts, counts)
    return float(per_row.mean()), float(np.percentile(per_row, 99)), int(counts.max())


def calibrate(res: Resampler, seed: int, big_segment: int) -> list[dict]:
    """Bucket profiles of the real source rows and of as many synthetic rows resampled ``k``x from
    a ``1/k`` subset of the sources, per flip pairs, at the key widths of this many images and of
    ``big_segment``."""
    from imgsearch.store.postings import key_width

    n = len(res.counts)
    widths = (key_width(n), key_width(big_segment))
    out = [{"rows": "real", "k": 1, "pairs": None, **_profiles(res.codes(np.arange(res.offsets[-1])), widths)}]
    for k in CALIBRATION_K:
        rng = np.random.default_rng(seed + k)
        subset = rng.choice(n, max(1, n // k), replace=False)
        src = subset[rng.integers(0, len(subset), n)]
        codes = res.codes(res.rows(src)[1])
        for pairs in CALIBRATION_PAIRS:
            out.append({"rows": "synthetic", "k": k, "pairs": pairs, **_profiles(flip_pairs(codes, pairs, rng), widths)})
    return out


def _profiles(codes: np.ndarray, widths: tuple[int, ...]) -> dict:
    return {f"w{w}": bucket_profile(codes, w) for w in widths}


def print_calibration(rows: list[dict], console: Console) -> None:
    widths = [k for k in rows[0] if k.startswith("w")]
    t = Table(title="bucket sizes a row lies in (size-biased mean / p99 / largest bucket), per key width",
              caption="synthetic: as many rows resampled k times from 1/k of the sources, with pairs of bits exchanged")
    for c in ("rows", "k", "pairs", *(f"{w[1:]} key bits" for w in widths)):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(r["rows"], str(r["k"]), "" if r["pairs"] is None else str(r["pairs"]),
                  *(f"{r[w][0]:.2f} / {r[w][1]:.0f} / {r[w][2]}" for w in widths))  # fmt: skip
    console.print(t)
