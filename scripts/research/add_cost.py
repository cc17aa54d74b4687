"""What an upload costs a service worker besides its extraction: commit, merges, the next query's lease.

Research script (issue 13: adds at ten a second took cores from the queries). Indexes the first
``--indexed`` photos, describes ``--adds`` more beforehand (their extraction is not timed: a
service runs it in a process of its own), then adds them one by one as ``imgsearch serve``'s
worker does: ``Index.add_bytes`` (a durable commit), ``Index.merge`` (its merger thread), and a
query of the same bytes through :class:`imgsearch.service.engine.Snapshots` (the lease catches up
with the new manifest; the exact tier answers). Prints the CPU milliseconds of each step per
add (``time.process_time``, one core), and with ``--profile`` the functions that took longest.

    .venv/bin/python scripts/research/add_cost.py
    .venv/bin/python scripts/research/add_cost.py --profile
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import workload

from imgsearch import Index, IndexConfig, extract
from imgsearch.service.engine import Snapshots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--indexed", type=int, default=600)
    parser.add_argument("--adds", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    photos = workload.list_images(args.photos)
    if len(photos) < args.indexed + args.adds:
        raise SystemExit(f"error: {args.photos} holds {len(photos)} photos, {args.indexed + args.adds} needed")
    config = IndexConfig()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "index"
        with Index.create(directory, config) as index:
            index.add(photos[: args.indexed], workers=2)
        data = [Path(p).read_bytes() for p in photos[args.indexed : args.indexed + args.adds]]
        records = {f"upload/{i}": extract.extract_bytes(b, f"upload/{i}", config) for i, b in enumerate(data)}
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
        writer = Index.open(directory)
        writer.extract_upload = lambda _data, key, _config: records[key]
        snapshots = Snapshots(directory)
        spent = {"commit (add_bytes)": 0.0, "merge": 0.0, "lease and query": 0.0}
        profile = cProfile.Profile() if args.profile else None
        for i, b in enumerate(data):
            if profile is not None:
                profile.enable()
            t0 = time.process_time()
            writer.add_bytes(f"upload/{i}", b, merge=False)
            t1 = time.process_time()
            writer.merge()
            t2 = time.process_time()
            with snapshots.lease() as index:
                found = index.query_many([b], refresh=False)[0]
            t3 = time.process_time()
            if profile is not None:
                profile.disable()
            if not found.matches or found.matches[0].path != f"upload/{i}":
                raise SystemExit(f"error: upload/{i} not found after its add")
            for name, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                spent[name] += seconds
        snapshots.close()
        writer.close()
    print(f"{args.adds} adds to {args.indexed} indexed images, CPU ms per add" + (" (profiled)" if profile else ""))
    for name, seconds in spent.items():
        print(f"  {name:20s} {seconds * 1e3 / args.adds:6.2f}")
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
