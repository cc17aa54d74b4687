"""What the small segments that adds leave cost a new image, probed bucket by bucket or row by row.

Indexes the first ``--indexed`` photos in one segment, then adds ``--small`` more photos one at a
time without merging (each its own segment, as an upload service leaves them until a merge), and
queries ``--queries`` photos never indexed (new images) on one core, alternating the two ways a
segment is probed (``postings.ROWS_PER_PROBE``: 0 reads every segment bucket by bucket, the
default matches a segment with few rows row by row) over ``--rounds`` rounds. Prints the p50 of
each round and the ratio of the medians; the answers of the two ways are compared too (they must
be the same).

    .venv/bin/python scripts/bench_small_segments.py --indexed 475 --small 12
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import workload
from rich.console import Console
from rich.table import Table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--indexed", type=int, default=475)
    parser.add_argument("--small", type=int, default=12, help="photos added one at a time, unmerged")
    parser.add_argument("--queries", type=int, default=60, help="photos never indexed, queried")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)

    from imgsearch import Index, IndexConfig
    from imgsearch.store import postings, scan

    photos = workload.list_images(args.folder, None)
    indexed = photos[: args.indexed]
    small = photos[args.indexed : args.indexed + args.small]
    new = photos[args.indexed + args.small : args.indexed + args.small + args.queries]
    if len(new) < args.queries:
        raise SystemExit(f"error: {args.folder} holds {len(photos)} photos, fewer than asked for")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    default = postings.ROWS_PER_PROBE
    ways = {"bucket by bucket": 0.0, f"row by row (ROWS_PER_PROBE {default})": default}
    with tempfile.TemporaryDirectory(prefix="bench-small-") as tmp:
        with Index.create(Path(tmp) / "ix", IndexConfig()) as index:
            index.add(indexed, workers=2)
            for path in small:
                index.add([path], workers=1, merge=False)
        index = Index.open(Path(tmp) / "ix")
        segments = len(index.reader.parts)
        scan.warm_up()  # compiled, as in a service: the small segments' way is ROWS_PER_PROBE's
        index.query_many(new[:3])
        p50: dict[str, list[float]] = {w: [] for w in ways}
        answers: dict[str, list] = {}
        for _ in range(args.rounds):
            for way, value in ways.items():
                postings.ROWS_PER_PROBE = value
                results = index.query_many(new)
                p50[way].append(statistics.median(r.elapsed_ms for r in results))
                answers[way] = [[(m.path, m.tier, m.inliers) for m in r.matches] for r in results]
        postings.ROWS_PER_PROBE = default
        index.close()
    console = Console(width=120) if not sys.stdout.isatty() else Console()
    table = Table(title=f"new images, {args.indexed} photos in one segment and {args.small} one-image segments")
    for col in ("probed", "p50 ms of each round", "median"):
        table.add_column(col, justify="right")
    for way, values in p50.items():
        table.add_row(way, ", ".join(f"{v:.1f}" for v in values), f"{statistics.median(values):.1f}")
    console.print(table)
    first, second = (statistics.median(v) for v in p50.values())
    same = len({repr(a) for a in answers.values()}) == 1
    console.print(
        f"{segments} segments; row by row / bucket by bucket: {second / first:.2f}; "
        f"answers {'the same' if same else 'DIFFERENT'}; {workload.cpu_note()}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
