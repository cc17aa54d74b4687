"""False positives when distinct images share an overlay (a catalogue's logo, watermark or caption).

Draws one and the same overlay (``--kind text``: a caption block of ``--area`` of the image;
``logo``: a logo block; its words, colours and corner fixed by ``--seed``) on the first
``--indexed`` photos, which are indexed, and on the photos after the first 800, which are queried:
every match is a false positive, made by the overlay alone. Prints, per ``min_coverage`` value,
the queries that found a match, the largest inlier coverage among them, and how many of them each
local pass and fitted model (similarity, affine) gave.

    .venv/bin/python scripts/shared_overlay.py --kind text --seed 21 --area 0.2
    .venv/bin/python scripts/shared_overlay.py --kind logo --seed 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import workload
from rich.console import Console
from rich.table import Table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--kind", choices=("text", "logo"), default="text")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--area", type=float, default=0.2, help="caption area share (text only)")
    parser.add_argument("--indexed", type=int, default=300)
    parser.add_argument("--queries-from", type=int, default=800, help="query the photos from this one on")
    parser.add_argument("--min-coverage", default="0,0.15,0.25", help="comma-separated values")
    parser.add_argument("--workers", type=int, default=2)
    workload.add_search_option(parser)
    args = parser.parse_args(argv)
    overrides = workload.search_overrides(parser, args, "min_coverage")

    from imgsearch import Index, IndexConfig, io
    from imgsearch.evaluate.overlays import logo_overlay, text_overlay

    def mark(path: str) -> np.ndarray:
        rgb = io.read_image(path)
        rng = np.random.default_rng(args.seed)
        return logo_overlay(rgb, rng) if args.kind == "logo" else text_overlay(rgb, rng, args.area, args.area)

    photos = workload.list_images(args.folder, None)
    indexed, queried = photos[: args.indexed], photos[args.queries_from :]
    if not queried:
        raise SystemExit(f"error: no photos after the first {args.queries_from} to query")
    console = Console(width=140) if not sys.stdout.isatty() else Console()
    table = Table(
        title=f"shared {args.kind} overlay (seed {args.seed}"
        + (f", area {args.area:.0%}" if args.kind == "text" else "")
        + "".join(f", {item}" for item in args.search)
        + f"): {len(indexed)} indexed, {len(queried)} distinct photos queried"
    )
    for col in ("min_coverage", "false positives", "largest coverage among them", "by pass and model"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory(prefix="shared-overlay-") as tmp:
        folder = Path(tmp) / "indexed"
        folder.mkdir()
        for i, path in enumerate(indexed):
            bgr = np.ascontiguousarray(mark(path)[:, :, ::-1])
            cv2.imwrite(str(folder / f"{i:05d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
        queries = [mark(path) for path in queried]
        with Index.create(Path(tmp) / "index", IndexConfig()) as index:
            index.add([folder], workers=args.workers)
            for value in (float(v) for v in args.min_coverage.split(",") if v.strip()):
                results = index.query_many(queries, min_coverage=value, **overrides)
                found = [r.matches[0] for r in results if r.matches]
                largest = max((m.coverage or 0.0 for m in found), default=float("nan"))
                kinds = Counter(
                    f"{m.tier}" if m.geometry is None else f"{m.search_pass} {m.geometry.model}"
                    for m in found
                )
                table.add_row(
                    f"{value:.2f}",
                    f"{len(found)} / {len(queries)}",
                    f"{largest:.3f}",
                    ", ".join(f"{k} {n}" for k, n in kinds.most_common()),
                )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
