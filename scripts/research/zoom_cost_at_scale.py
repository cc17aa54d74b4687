"""New images against an index kept by bench_scale.py, the zoom factor alternated (1.5, 1.25, none).

Research script (the zoomed pass's cost at scale):

    .venv/bin/python scripts/bench_scale.py --max-images 32000 --keep --work /tmp/sc32
    .venv/bin/python scripts/research/zoom_cost_at_scale.py /tmp/sc32

One core (core 1), 80 of bench_scale's new-image photos (its split, seed 0), three rounds; prints
each setting's p50 per round, then the default's time per pass.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: workload, bench_scale

import bench_scale
import workload

from imgsearch import Index


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sc32")
    _, new, _ = bench_scale.split_photos(workload.list_images(workload.DEFAULT_PHOTOS), 0)
    data = [Path(f).read_bytes() for f in new[:80]]
    os.sched_setaffinity(0, {1})
    folder = next(work.glob("*/index"))
    res: dict[float | None, list[float]] = {}
    with Index.open(folder) as index:
        print(f"{len(index)} images; zoom_factor saved in the index: {index.config.search.zoom_factor}")
        index.query_many(data[:3])
        for _ in range(3):
            for zoom in (1.5, 1.25, None):
                times = []
                for d in data:
                    start = time.perf_counter()
                    out = index.query_many([d], zoom_factor=zoom)[0]
                    times.append(time.perf_counter() - start)
                    assert not out.matches
                res.setdefault(zoom, []).append(float(np.median(times)) * 1e3)
        passes = collections.defaultdict(list)
        for d in data:
            for name, ms in index.query_many([d])[0].timings.items():
                passes[name].append(ms)
    for zoom, v in res.items():
        print(f"zoom_factor {zoom}: p50 ms per round {[round(x, 1) for x in v]}, median {np.median(v):.1f}")
    for name, v in passes.items():
        print(f"{name:12s} {np.mean(v):6.1f} ms mean")


if __name__ == "__main__":
    main()
