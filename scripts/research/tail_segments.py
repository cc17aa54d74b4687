"""Segments a growing index leaves behind it under steady adds, and what they cost a new image.

Research script (issue 13: a service's queries under ten adds a second). Indexes ``--indexed``
photos in one segment, copies the folder, then adds ``--adds`` more one at a time to each copy
(merging after each add, as ``Index.add`` does) under two merge policies: small tiers merged at
four segments (the policy before) and at two (:data:`imgsearch.store.writer.PAIR_SIZE`).
Every ``--every`` adds it records the number of segments and queries ``--queries`` photos never
indexed on both (one core, the two alternated), and prints the segments and the p50 per
checkpoint, then their means and the mean time of an add (its extraction and merges included).
``--simulate N`` runs the two policies' merge plans (:func:`imgsearch.store.writer.plan_merges`)
over N one-image adds instead, no image read: the most segments, and how many times an image is
written (by its add and by the merges) on average.

    .venv/bin/python scripts/research/tail_segments.py
    .venv/bin/python scripts/research/tail_segments.py --simulate 10000
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import workload

from imgsearch import Index, IndexConfig
from imgsearch.store import manifest as mf
from imgsearch.store import writer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--indexed", type=int, default=500)
    parser.add_argument("--adds", type=int, default=300)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--simulate", type=int, default=0, help="simulate this many one-image adds instead")
    args = parser.parse_args()
    if args.simulate:
        for size in (4, 2):
            most, written = simulate(args.simulate, size)
            print(f"{size} a small tier: {args.simulate} one-image adds, at most {most} segments, "
                  f"each image written {written:.1f} times")
        return
    photos = workload.list_images(args.photos)
    added = photos[args.indexed : args.indexed + args.adds]
    queries = [Path(p).read_bytes() for p in photos[args.indexed + args.adds :][: args.queries]]
    if len(queries) < args.queries:
        raise SystemExit(f"error: {args.photos} holds too few photos")
    policies = {"4 a small tier": 4, "2 a small tier": 2}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        with Index.create(base, IndexConfig()) as index:
            index.add(photos[: args.indexed], workers=2)
        folders = {name: Path(tmp) / name.split()[0] for name in policies}
        for folder in folders.values():
            shutil.copytree(base, folder)
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
        rows: list[tuple[int, dict[str, int], dict[str, float]]] = []
        adding = dict.fromkeys(policies, 0.0)  # seconds of the adds, their extraction and merges included
        for start in range(0, args.adds, args.every):
            segments, p50 = {}, {}
            for name, size in policies.items():
                writer.PAIR_SIZE = size
                with Index.open(folders[name]) as index:
                    t0 = time.perf_counter()
                    for path in added[start : start + args.every]:
                        index.add([path], workers=1)
                    adding[name] += time.perf_counter() - t0
                segments[name] = len(mf.read(folders[name]).segments)
            times: dict[str, list[float]] = {name: [] for name in policies}
            opened = {name: Index.open(folders[name]) for name in policies}
            for data in queries:
                for name, index in opened.items():
                    t0 = time.perf_counter()
                    index.query_many([data])
                    times[name].append((time.perf_counter() - t0) * 1e3)
            for name, index in opened.items():
                index.close()
                p50[name] = statistics.median(times[name])
            rows.append((start + args.every, segments, p50))
            print(start + args.every, segments, {k: round(v, 1) for k, v in p50.items()}, flush=True)
    for name in policies:
        print(f"{name}: segments mean {statistics.mean(r[1][name] for r in rows):.2f}, max "
              f"{max(r[1][name] for r in rows)}; new-image p50 mean {statistics.mean(r[2][name] for r in rows):.1f} ms; "
              f"an add {adding[name] * 1e3 / args.adds:.1f} ms (extraction and merges included)")


def simulate(adds: int, small_tier_size: int) -> tuple[int, float]:
    """The most segments and the writes per image of ``adds`` one-image adds, each followed by the
    merges the policy plans (as ``writer.merge_pending`` runs them), with ``small_tier_size``."""
    writer.PAIR_SIZE = small_tier_size
    segments: list[mf.SegmentEntry] = []
    made, written, most = 0, 0, 0
    for _ in range(adds):
        made += 1
        segments.append(mf.SegmentEntry(f"s{made}", 1, 1, 1))
        written += 1
        while len(plan := writer.plan_merges(segments, writer.AUTO_MERGE_MAX_IMAGES)) >= 2:
            chosen = [s for s in segments if s.name in plan]
            made += 1
            merged = mf.SegmentEntry(f"s{made}", sum(s.live for s in chosen), 1, 1)
            segments = [s for s in segments if s.name not in plan] + [merged]
            written += merged.images
        most = max(most, len(segments))
    return most, written / adds


if __name__ == "__main__":
    main()
