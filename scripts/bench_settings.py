"""Query time of the engine under two settings, measured in one run: the ratio is what counts.

Indexes the first ``--limit`` photos (all tiers) and queries, in this one process pinned to one
core, ``--queries`` modified copies of them (the evaluation's transforms in turn) and one modified
copy of every photo after ``--limit`` (new images, never indexed), first under the ``--baseline``
settings (``SearchConfig`` fields, e.g. the shared-part tests off) and under the defaults (or
``--search``), query by query in turn, ``--rounds`` times, so that a drift of the shared machine's
speed falls on both. Prints per setting and kind of query the mean, p50 and p95 ms, hits and matches, and the
ratio of the means round by round.

    .venv/bin/python scripts/bench_settings.py --baseline min_own_inliers=0 --baseline min_agreement=0 \\
        --json scripts/results/bench_decision.json
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--limit", type=int, default=800)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline", action="append", default=[], help="NAME=VALUE of the baseline")
    parser.add_argument("--json", type=Path, default=None)
    workload.add_search_option(parser)
    args = parser.parse_args(argv)

    from imgsearch import Index, IndexConfig
    from imgsearch.cli.common import parse_setting
    from imgsearch.evaluate.transforms import TRANSFORMS

    baseline = dict(parse_setting(item) for item in args.baseline)
    candidate = dict(parse_setting(item) for item in args.search)
    photos = workload.list_images(args.folder, None)
    indexed, others = photos[: args.limit], photos[args.limit :]
    console = Console(width=140) if not sys.stdout.isatty() else Console()
    note = workload.cpu_note()
    with tempfile.TemporaryDirectory(prefix="bench-settings-") as tmp:
        with Index.create(Path(tmp) / "ix", IndexConfig()) as index:
            index.add(indexed, workers=args.workers)
        names = [t for t in TRANSFORMS if t != "exact_copy"]
        copies = workload.make_queries(indexed, names, args.queries, args.seed, Path(tmp) / "copies")
        new = [
            workload.write_query(p, names[i % len(names)], args.seed + i, Path(tmp) / "new" / f"{i:05d}.jpg", None)
            for i, p in enumerate(others)
        ]
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        sets = {"copies": [q.path for q in copies], "new images": [q.path for q in new]}
        truth = {"copies": [q.expected for q in copies], "new images": [None] * len(new)}
        times: dict[tuple[str, str], list[float]] = {}
        found: dict[tuple[str, str], int] = {}
        ratios: dict[str, list[float]] = {k: [] for k in sets}
        with Index.open(Path(tmp) / "ix") as index:
            index.query_many(sets["copies"][:3])  # warm-up
            for r in range(args.rounds):
                for kind, paths in sets.items():
                    # Query by query, the two settings in turn (which goes first alternates), so
                    # that the shared machine's drift falls on both alike.
                    ms: dict[str, list[float]] = {"baseline": [], "setting": []}
                    hits = {"baseline": 0, "setting": 0}
                    for i, (path, t) in enumerate(zip(paths, truth[kind], strict=True)):
                        order = [("baseline", baseline), ("setting", candidate)]
                        for label, overrides in order[:: 1 if (i + r) % 2 == 0 else -1]:
                            res = index.query_many([path], **overrides)[0]
                            ms[label].append(res.elapsed_ms)
                            hits[label] += bool(res.matches) and (t is None or res.matches[0].path == t)
                    for label in ms:
                        times.setdefault((label, kind), []).extend(ms[label])
                        found[(label, kind)] = hits[label]
                    ratios[kind].append(statistics.fmean(ms["setting"]) / statistics.fmean(ms["baseline"]))
    table, rows = workload.paired_table(
        f"query ms on one core: baseline {baseline} vs {candidate or 'defaults'} ({note})", "setting",
        "found (copies: top-1 right)", times, found, ratios, {k: len(v) for k, v in sets.items()}, "setting",
    )  # fmt: skip
    result = {"baseline": baseline, "setting": candidate, "machine": note, "rows": rows}
    console.print(table)
    workload.save_json(result, args.json, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
