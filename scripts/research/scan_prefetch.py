"""The posting scan with and without asking the memory ahead (``llvm.prefetch``), on real probes.

Research script (issue 12: the cost of a new image). A new image's probes read, for every probe
and segment, a bucket start and then the bucket's first posting words: random reads into arrays of
tens of megabytes (gigabytes at a million images), each a cache miss that the loop waits for before
the next. ``imgsearch.store._kernels.scan`` now asks for the bucket start ``STARTS_AHEAD`` probes
ahead and for the bucket's first and middle words ``WORDS_AHEAD`` probes ahead.

This records every call of the scan made by ``--queries`` new-image queries on ``--index``, then
times the kernel over all of them with the look-ahead distances given (``0,0``: none), alternating
the variants over ``--rounds`` rounds on one core, and checks that every variant returns the same
rows in the same order. Then the same queries whole (``Index.query_many``, wall ms), the kernel
without look-ahead and the default one alternated query by query in the one process (which goes
first alternates), over ``--rounds`` rounds.

    .venv/bin/python scripts/research/scan_prefetch.py INDEX QUERY_DIR --queries 20
    .venv/bin/python scripts/research/scan_prefetch.py KEPT/index KEPT/spec.json   # bench_scale.py --keep
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from imgsearch import Index
from imgsearch.store import _kernels, scan

CAPACITY = 1 << 20


def variant(starts_ahead: int, words_ahead: int):
    """The scan kernel compiled with these look-ahead distances (0: that prefetch never runs)."""
    f = _kernels.scan.py_func
    names = {"STARTS_AHEAD": starts_ahead or 1 << 40, "WORDS_AHEAD": words_ahead or 1 << 40}
    g = types.FunctionType(f.__code__, {**f.__globals__, **names}, f.__name__)
    return numba.njit(g, nogil=True, boundscheck=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", type=Path)
    parser.add_argument(
        "queries",
        type=Path,
        help="a folder of new-image queries (JPEG), or bench_scale.py's spec.json (its 'new')",
    )
    parser.add_argument("--queries", dest="n", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ahead", default="0:0,8:4,16:8,32:16,64:32", help="starts:words distances")
    parser.add_argument("--core", type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    scan.warm_up()
    index = Index.open(args.index)
    calls: list[tuple] = []
    original = scan.scan

    def record(words, starts, codes, probe_query, keys, *rest):
        calls.append(
            (np.asarray(words), np.asarray(starts), codes.copy(), probe_query.copy(), keys.copy(), rest)
        )
        return original(words, starts, codes, probe_query, keys, *rest)

    scan.scan = record
    if args.queries.suffix == ".json":
        paths = [Path(p) for p in json.loads(args.queries.read_text())["new"]][: args.n]
    else:
        paths = sorted(p for p in args.queries.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[: args.n]
    for p in paths:
        index.query_many([p])
    scan.scan = original
    probes = sum(len(c[4]) for c in calls)
    print(
        f"{len(paths)} queries: {len(calls)} scans of {len({c[0].ctypes.data for c in calls})} segments, "
        f"{probes:,} probes"
    )
    distances = [tuple(int(x) for x in a.split(":")) for a in args.ahead.split(",")]
    kernels = {d: variant(*d) for d in distances}
    out = [np.empty(CAPACITY, np.int64) for _ in range(3)]
    reference = None
    for d, k in kernels.items():  # compile, and compare the rows found
        got = []
        for w, s, codes, pq, keys, rest in calls:
            n = k(w, s, codes, pq, keys, *rest, *out)
            got.append(np.concatenate([o[:n] for o in out]))
        if reference is None:
            reference = got
        assert all(np.array_equal(a, b) for a, b in zip(reference, got, strict=True)), d
    times: dict[tuple[int, int], list[float]] = {d: [] for d in distances}
    for _ in range(args.rounds):
        for d, k in kernels.items():
            t = time.perf_counter()
            for w, s, codes, pq, keys, rest in calls:
                k(w, s, codes, pq, keys, *rest, *out)
            times[d].append((time.perf_counter() - t) * 1e3 / len(paths))
    base = statistics.median(times[distances[0]])
    print("| starts ahead | words ahead | ms a query (median of rounds) | x first |")
    print("|---|---|---|---|")
    for d, v in times.items():
        m = statistics.median(v)
        print(f"| {d[0]} | {d[1]} | {m:.2f} | {m / base:.2f} |")
    print("every variant found the same rows in the same order")
    whole = {"none": kernels[(0, 0)] if (0, 0) in kernels else variant(0, 0), "default": _kernels.scan}
    data = [p.read_bytes() for p in paths]
    wall: dict[str, list[float]] = {name: [] for name in whole}
    for r in range(args.rounds):
        for i, d in enumerate(data):
            for name in list(whole)[:: 1 if (i + r) % 2 == 0 else -1]:
                scan._compiled["scan"] = whole[name]
                t = time.perf_counter()
                index.query_many([d])
                wall[name].append((time.perf_counter() - t) * 1e3)
    scan._compiled["scan"] = _kernels.scan
    ratio = [a / b for a, b in zip(wall["default"], wall["none"], strict=True)]
    print(
        f"whole queries, {len(data)} x {args.rounds} rounds: p50 {statistics.median(wall['none']):.2f} ms without "
        f"look-ahead, {statistics.median(wall['default']):.2f} ms with the default "
        f"({_kernels.STARTS_AHEAD}:{_kernels.WORDS_AHEAD}); mean ratio {statistics.mean(wall['default']) / statistics.mean(wall['none']):.3f}, "
        f"median of the per-query ratios {statistics.median(ratio):.3f}"
    )


if __name__ == "__main__":
    main()
