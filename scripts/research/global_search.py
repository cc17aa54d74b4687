"""The global tier's search of one segment, flat (FAISS) against multi-index hashing, by size.

Codes as ``bench_scale.py``'s synthetic rows draw them: the identity pHash of one of the first 475
photos (the tune half) with 8-16 bits flipped. Queries: the 16 variants (8 dihedral, 8 negative) of
photos 475-699, the dihedral ones at ``--radius`` bits and the negatives at 4, as the global tier
searches them. One core; median of three rounds; each size checked for the same results.

    .venv/bin/python scripts/research/global_search.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import workload

from imgsearch import hashing, io
from imgsearch.store import hamming


def variants(path: str) -> np.ndarray:
    """``(16, 8)`` uint8: the query's variants as the global tier hashes them."""
    gray = io.read_image(path, min_side=210, gray=True)
    return hashing.threshold_bits(hashing.variant_coefficients(hashing.phash_coefficients(io.resize_long_side(gray, 210))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--sizes", default="5000,10000,20000,32000,100000,300000,1000000")
    parser.add_argument("--radius", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    photos = workload.list_images(args.folder)
    sources = np.stack([variants(p)[0] for p in photos[:475]]).view(np.uint64).ravel()
    queries = np.stack([variants(p) for p in photos[475:700]])  # (P, 16, 8)
    radii = np.array([args.radius] * 8 + [4] * 8, np.int64)
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(args.seed)
    n = max(sizes)
    codes = sources[rng.integers(0, len(sources), n)]
    flips = rng.integers(8, 17, n)
    order = rng.random((n, 64)).argsort(axis=1)
    for b in range(16):
        codes[flips > b] ^= np.uint64(1) << order[flips > b, b].astype(np.uint64)
    codes8 = codes.view(np.uint8).reshape(n, 8)
    table = Table(title=f"one segment's global search, {len(queries)} queries of 16 variants, ms a query (one core)")
    for c in ("codes", "flat (FAISS)", "multi-index", "ratio", "build ms", "results a query"):
        table.add_column(c, justify="right")
    import faiss

    faiss.omp_set_num_threads(1)
    for size in sizes:
        flat, multi = hamming.Flat(codes8[:size]), hamming.MultiIndex(codes8[:size])
        t = time.perf_counter()
        multi.search(queries[0], radii)
        build = (time.perf_counter() - t) * 1e3
        rounds = []
        for _ in range(3):
            times = []
            for searcher in (flat, multi):
                t = time.perf_counter()
                for q in queries:
                    searcher.search(q, radii)
                times.append((time.perf_counter() - t) / len(queries) * 1e3)
            rounds.append(times)
        f, m = np.median(np.array(rounds), axis=0)
        found = 0
        for q in queries[:: max(1, len(queries) // 20)]:
            a, b = flat.search(q, radii), multi.search(q, radii)
            assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), "the two searches differ"
            found += len(a[0])
        table.add_row(f"{size:,}", f"{f:.3f}", f"{m:.3f}", f"{m / f:.2f}", f"{build:.0f}",
                      f"{found / len(queries[:: max(1, len(queries) // 20)]):.1f}")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
