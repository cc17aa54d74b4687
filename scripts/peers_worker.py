"""Run peer tools on one job; invoked by ``compare_peers.py`` with the peers venv's Python.

    scripts/.peers-venv/bin/python scripts/peers_worker.py JOB.json RESULT.json

Runs in ``scripts/.peers-venv`` (never in the project's ``.venv``: ``perception`` pins OpenCV below
5), so it imports nothing from imgsearch: only the standard library, numpy, Pillow and the peers.

``JOB.json``::

    {"indexed": [path, ...], "queries": [path, ...], "peers": ["imagehash", "pdq", "perception"],
     "imagehash_max_distance": 10, "pdq_max_distance": 31}

``RESULT.json`` maps each peer to ``{"available", "error", "version", "build_s", "query_s",
"matches"}``; ``matches[i]`` lists the indexed paths the peer calls copies of query ``i``, best
first. A peer that cannot be imported or fails is reported with ``available: false`` or ``error``.

* ``imagehash``: ``imagehash.phash`` (PIL open); the nearest indexed hash, if within 10 bits.
* ``pdq``: ``pdqhash.compute`` of each indexed image; the query's 8 dihedral hashes
  (``pdqhash.compute_dihedral``); every indexed image within 31 bits of one of them.
* ``perception``: thorn's SIFT deduplication with its defaults
  (``perception.local_descriptor_deduplication``: ``build_reference_df`` of the indexed files,
  then ``deduplicate`` of the queries against it, on CPU).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from importlib import metadata

import numpy as np


def _popcount_rows(x: np.ndarray) -> np.ndarray:
    """Set bits per row of a 2-D uint8 array."""
    return np.unpackbits(x, axis=1).sum(axis=1)


def run_imagehash(indexed: list[str], queries: list[str], max_distance: int) -> dict:
    import imagehash
    from PIL import Image

    def phash(path: str) -> np.ndarray | None:
        try:
            with Image.open(path) as im:
                return np.packbits(imagehash.phash(im).hash.ravel())
        except OSError:
            return None

    phash(indexed[0])  # warm-up: the first call imports scipy's DCT
    start = time.perf_counter()
    hashes = [phash(p) for p in indexed]
    ok = [i for i, h in enumerate(hashes) if h is not None]
    table = np.stack([hashes[i] for i in ok]) if ok else np.zeros((0, 8), np.uint8)
    build = time.perf_counter() - start
    start = time.perf_counter()
    matches = []
    for q in queries:
        h = phash(q)
        if h is None or not len(table):
            matches.append([])
            continue
        dist = _popcount_rows(table ^ h)
        best = int(np.argmin(dist))
        matches.append([indexed[ok[best]]] if dist[best] <= max_distance else [])
    return {
        "build_s": build,
        "query_s": time.perf_counter() - start,
        "matches": matches,
        "version": metadata.version("imagehash"),
    }


def run_pdq(indexed: list[str], queries: list[str], max_distance: int) -> dict:
    import pdqhash
    from PIL import Image

    def rgb(path: str) -> np.ndarray | None:
        try:
            with Image.open(path) as im:
                return np.ascontiguousarray(np.asarray(im.convert("RGB")))
        except OSError:
            return None

    first = rgb(indexed[0])
    if first is not None:
        pdqhash.compute(first)  # warm-up
    start = time.perf_counter()
    rows, ok = [], []
    for i, p in enumerate(indexed):
        image = rgb(p)
        if image is not None:
            h, _quality = pdqhash.compute(image)
            rows.append(np.packbits(h.astype(np.uint8)))
            ok.append(i)
    table = np.stack(rows) if rows else np.zeros((0, 32), np.uint8)
    build = time.perf_counter() - start
    start = time.perf_counter()
    matches = []
    for q in queries:
        image = rgb(q)
        if image is None or not len(table):
            matches.append([])
            continue
        variants, _qualities = pdqhash.compute_dihedral(image)
        packed = np.stack([np.packbits(np.asarray(v).astype(np.uint8)) for v in variants])  # (8, 32)
        dist = np.unpackbits(table[:, None, :] ^ packed[None, :, :], axis=2).sum(axis=2).min(axis=1)
        found = np.flatnonzero(dist <= max_distance)
        found = found[np.argsort(dist[found], kind="stable")]
        matches.append([indexed[ok[i]] for i in found])
    return {
        "build_s": build,
        "query_s": time.perf_counter() - start,
        "matches": matches,
        "version": metadata.version("pdqhash"),
    }


def run_perception(indexed: list[str], queries: list[str]) -> dict:
    import logging

    from perception import local_descriptor_deduplication as ldd

    logging.getLogger("perception").setLevel(logging.ERROR)
    hasher = ldd.SIFT()
    start = time.perf_counter()
    reference = ldd.build_reference_df(indexed, hasher=hasher)
    build = time.perf_counter() - start
    start = time.perf_counter()
    query_df = ldd.build_reference_df(queries, hasher=hasher)
    pairs = []
    if query_df["descriptors"].notna().any() and reference["descriptors"].notna().any():
        pairs = ldd.deduplicate_dfs(reference, query_df=query_df, hasher=hasher, use_gpu=False)
    elapsed = time.perf_counter() - start
    found: dict[str, list[str]] = {}
    for q, ref in pairs:
        found.setdefault(q, []).append(ref)
    return {
        "build_s": build,
        "query_s": elapsed,
        "matches": [sorted(found.get(q, [])) for q in queries],
        "version": metadata.version("perception"),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    job = json.loads(open(argv[0]).read())
    indexed, queries = job["indexed"], job["queries"]
    runners = {
        "imagehash": lambda: run_imagehash(indexed, queries, job.get("imagehash_max_distance", 10)),
        "pdq": lambda: run_pdq(indexed, queries, job.get("pdq_max_distance", 31)),
        "perception": lambda: run_perception(indexed, queries),
    }
    out = {}
    for name in job["peers"]:
        if name not in runners:
            out[name] = {"available": False, "error": f"unknown peer {name!r}; known: {sorted(runners)}"}
            continue
        print(f"peers_worker: running {name} ...", file=sys.stderr, flush=True)
        try:
            out[name] = {"available": True, "error": None, **runners[name]()}
        except ImportError as exc:
            out[name] = {"available": False, "error": f"not importable: {exc}"}
        except Exception as exc:  # a peer's failure is reported, the others still run
            out[name] = {
                "available": True,
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc(),
            }
    with open(argv[1], "w") as fh:
        json.dump(out, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
