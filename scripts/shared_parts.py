"""False positives on new images that share a part with indexed ones, and hits on their copies.

Runs :mod:`imgsearch.evaluate.shared` (the hard-negative protocol of ``imgsearch eval --negatives``)
on one part of a folder: the photos sorted by name, ``--part tune`` the first half (0000-0474 of
the shared photos: the decision's defaults were chosen there) and ``--part report`` the second half
(0475-0948, never tuned on), or ``all``. For every kind of shared element (a corner logo, a tiled
watermark, a caption band, a frame, a brand's packaging and shelves, a web page, a social post, a
catalogue page) and every design seed, renders of the design on photos of one pool are indexed and
renders on the other pool are queried, plain and under a transform: any match is a false positive.
Copies of the indexed renders are queried under seven transforms: hit@1 is their own original.

    .venv/bin/python scripts/shared_parts.py --part report --json scripts/results/shared_parts.json
    .venv/bin/python scripts/shared_parts.py --part report --search min_own_inliers=0 \\
        --search min_agreement=0 --json scripts/results/shared_parts_off.json   # the tests off
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import workload
from rich.console import Console
from rich.table import Table as RichTable

DESIGNS = {"tune": "0,1,2", "report": "100,101,102", "all": "0,1,2,100,101,102"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--part", choices=("tune", "report", "all"), default="report")
    parser.add_argument("--kinds", default="all", help="comma-separated kinds, or all")
    parser.add_argument(
        "--designs",
        default=None,
        help="comma-separated design seeds (default: 0,1,2 for --part tune, where the decision's defaults "
        "were chosen; 100,101,102 for report; both for all)",
    )
    parser.add_argument("--per-design", type=int, default=50, help="indexed, and new, images per design")
    parser.add_argument("--copies", type=int, default=10, help="indexed images copied per transform")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write every query's outcome (CSV) here")
    workload.add_search_option(parser)
    args = parser.parse_args(argv)
    overrides = workload.search_overrides(parser, args, "tiers")

    from imgsearch.evaluate.negatives import KINDS
    from imgsearch.evaluate.shared import SharedEvalConfig, run_shared_eval

    photos = workload.list_images(args.folder, None)
    half = (len(photos) + 1) // 2  # 949 photos: 0000-0474 and 0475-0948
    photos = {"tune": photos[:half], "report": photos[half:], "all": photos}[args.part]
    config = SharedEvalConfig(
        photos=tuple(photos),
        kinds=tuple(KINDS) if args.kinds == "all" else tuple(k for k in args.kinds.split(",") if k),
        designs=tuple(int(d) for d in (args.designs or DESIGNS[args.part]).split(",") if d),
        per_design=args.per_design,
        copies=args.copies,
        seed=args.seed,
        workers=args.workers,
        search=overrides,
    )
    console = Console(width=150) if not sys.stdout.isatty() else Console()
    note = workload.cpu_note()
    result = run_shared_eval(
        config, lambda stage, done, total: print(f"{stage} {done}/{total}", file=sys.stderr)
    )
    for table in (result.false_positives, result.copies):
        rich = RichTable(title=f"{table.title} ({args.part}: {Path(photos[0]).name}-{Path(photos[-1]).name})")
        for column in table.columns:
            rich.add_column(column, justify="right")
        for row in table.rows:
            rich.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
        console.print(rich)
    console.print(
        f"{result.new_queries} new-image queries, {result.new_matched} matched; {result.seconds:.0f} s; {note}"
    )
    workload.save_json(
        {
            "part": args.part,
            "first": Path(photos[0]).name,
            "last": Path(photos[-1]).name,
            "machine": note,
            **result.to_dict(),
        },
        args.json,
        console,
    )
    if args.out is not None:
        for path in result.write(args.out):
            console.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
