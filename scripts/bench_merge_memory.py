"""What a merge holds in memory: the streamed merge against writing the concatenated images.

Writes two synthetic segments (``--images`` each, ``--keypoints`` keypoints an image, random
keypoints and patch hashes, 240 voting) in a temporary folder, then merges them twice, measuring
the peak of Python's traced allocations (``tracemalloc``: numpy's arrays, not the mapped files):

* ``segment.write_merged`` (what ``compact`` and the automatic merges run);
* ``segment.write`` of ``Batch.concatenate`` of the sources' rows (what merges did before).

Prints the peaks, per voting keypoint and per stored keypoint, and checks the files are equal.
``--postings-rows`` merges once per bound on the rows the postings build holds at a time
(``segment.POSTINGS_ROWS``: a larger merge builds them in parts).

    .venv/bin/python scripts/bench_merge_memory.py --images 5000 --keypoints 400
    .venv/bin/python scripts/bench_merge_memory.py --images 20000 --postings-rows 100000000,8000000,2000000
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000, help="images in each of the two segments")
    parser.add_argument("--keypoints", type=int, default=400, help="stored keypoints an image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--postings-rows",
        default=None,
        help="comma-separated segment.POSTINGS_ROWS to merge with, one merge each (default: the default)",
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the merge in memory (it holds about 125 KB an image)"
    )
    args = parser.parse_args(argv)

    from imgsearch.config import IndexConfig
    from imgsearch.store import segment as seg

    config = IndexConfig()
    hashed = config.keypoints.hashed if config.keypoints else None
    rng = np.random.default_rng(args.seed)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-merge-") as tmp:
        folder = Path(tmp)
        sources = []
        for name in ("a", "b"):
            n, m = args.images, args.images * args.keypoints
            columns = {
                "digest": rng.integers(0, 256, (n, 32), dtype=np.uint8),
                "file_size": np.zeros(n, np.int64),
                "mtime_ns": np.zeros(n, np.int64),
                "width": np.full(n, 400, np.int32),
                "height": np.full(n, 300, np.int32),
                "global_hash": rng.integers(0, 256, (n, 8), dtype=np.uint8),
                "kp_scale": np.full(n, 0.5, np.float32),
            }
            keypoints = rng.random((m, 5), dtype=np.float32) * np.float32(200)
            local = {
                "keypoints": keypoints,
                "descriptors": rng.integers(0, 256, (m, 128), dtype=np.uint8),
                "patch_hash": rng.integers(0, 256, (m, 1, 8), dtype=np.uint8),
            }
            counts = np.full(n, args.keypoints, np.int64)
            batch = seg.Batch([f"/synthetic/{name}/{i}.jpg" for i in range(n)], columns, counts, local)
            seg.write(folder / f"{name}.seg", batch, config, {})
            del batch, local, keypoints
            sources.append(seg.Segment(folder / f"{name}.seg"))
        deleted = [np.zeros(s.n, bool) for s in sources]
        stored = sum(s.n for s in sources) * args.keypoints
        voting = sum(s.n for s in sources) * min(args.keypoints, hashed or args.keypoints)
        rows = []
        runs = []
        for limit in [int(x) for x in args.postings_rows.split(",")] if args.postings_rows else [seg.POSTINGS_ROWS]:

            def streamed(limit: int = limit) -> None:
                seg.POSTINGS_ROWS = limit
                seg.write_merged(folder / f"streamed_{limit}.seg", sources, deleted, config, {})

            runs.append((f"streamed (write_merged), postings in parts of <= {limit:,} rows", f"streamed_{limit}.seg", streamed))
        if not args.no_reference:
            runs.append(("in memory (write of the concatenated batches)", "in_memory.seg", lambda: seg.write(
                folder / "in_memory.seg",
                seg.Batch.concatenate([s.batch(np.flatnonzero(~d)) for s, d in zip(sources, deleted, strict=True)]),
                config, {})))  # fmt: skip
        for label, _, run in runs:
            tracemalloc.start()
            t = time.perf_counter()
            run()
            seconds = time.perf_counter() - t
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rows.append((label, peak, seconds))
        files = [folder / name for _, name, _ in runs]
        same = all(filecmp.cmp(files[0], f, shallow=False) for f in files[1:])
        for s in sources:
            s.close()
    table = Table(title=f"merging 2 x {args.images:,} images, {args.keypoints} keypoints an image ({voting:,} voting)")
    for col in ("merge", "traced peak MB", "B a voting keypoint", "B a stored keypoint", "s"):
        table.add_column(col, justify="right")
    for label, peak, seconds in rows:
        table.add_row(label, f"{peak / 1e6:.0f}", f"{peak / voting:.0f}", f"{peak / stored:.0f}", f"{seconds:.1f}")
    console.print(table)
    console.print(f"the {len(rows)} merged files are {'identical' if same else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
