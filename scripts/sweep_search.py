"""Sweep one setting with the evaluation protocol: hit@1, false positives and latency per value.

How a default is chosen by measurement: for each value of ``--name`` (a
:class:`imgsearch.SearchConfig` field, or with ``--keypoint`` a :class:`imgsearch.KeypointConfig`
field, which builds one index per value) and each seed, one ``imgsearch eval`` run
(:func:`imgsearch.evaluate.protocol.run_eval`, the same split, transforms and distractors as the CLI)
with that field set for every query. Prints one row per value: hit@1 per K averaged over the seeds
(and the worst seed), false positives summed over every run, median and p95 latency, and the
transforms that missed at the largest K.

    .venv/bin/python scripts/sweep_search.py --name query_side --values 150,180,null --seeds 0,1 \\
        --json scripts/results/sweep_query_side.json
    .venv/bin/python scripts/sweep_search.py --keypoint --name hashed --values 160,240,null \\
        --json scripts/results/sweep_hashed.json
    .venv/bin/python scripts/sweep_search.py --keypoint --name contrast_floor --values 0.01,0.005,0.0025 \\
        --seeds 0,1,2 --per-transform 20 --fewest-keypoints 150 --json scripts/results/sweep_contrast_floor.json

``--fewest-keypoints N`` evaluates on the N photos of the folder that have the fewest SIFT keypoints
at 210 px (with the floor off): objects on plain backgrounds, the hardest photos for the local tier.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import workload
from rich.console import Console
from rich.table import Table


def run_one(folder: Path, name: str, value, seed: int, args, work: Path) -> dict:
    from imgsearch.evaluate.protocol import EvalConfig, run_eval

    config = EvalConfig(
        folder,
        per_transform=args.per_transform,
        js=(args.j,),
        ks=tuple(int(k) for k in args.k.split(",") if k.strip()),
        seed=seed,
        workers=args.workers,
        **({"keypoints": {name: value}} if args.keypoint else {"search": {name: value}}),
    )
    start = time.perf_counter()
    result = run_eval(config, work / "out", work_dir=work / "eval")
    k_max = config.reference[1]
    rows = list(result.outcomes)
    return {
        "value": value,
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "runs": {
            str(r.k): {
                "hit_at_1": r.hit_at_1,
                "fp": round(r.fp_rate * r.distractors),
                "p50_ms": r.p50_ms,
                "p95_ms": r.p95_ms,
            }
            for r in result.runs
        },
        "distractors": result.runs[0].distractors,
        # The outcomes are those of the reference run: K=400 when swept, else the largest K.
        "misses_at_k_max": dict(
            collections.Counter(
                o["transform"] for o in rows if o["original"] and o["top_match"] != o["original"]
            )
        ),
        "k_max": k_max,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--name", required=True, help="a SearchConfig field, e.g. query_side")
    parser.add_argument("--keypoint", action="store_true", help="--name is a KeypointConfig field")
    parser.add_argument("--values", required=True, help="comma-separated JSON values, e.g. 150,180,null")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    parser.add_argument("--per-transform", type=int, default=30)
    parser.add_argument("--j", type=int, default=400)
    parser.add_argument("--k", default="40,400", help="comma-separated K values (default 40,400)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--fewest-keypoints",
        type=int,
        default=None,
        metavar="N",
        help="evaluate on the N photos of the folder with the fewest SIFT keypoints (objects on plain backgrounds)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    values = [json.loads(v) for v in args.values.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    console = Console(width=160) if not sys.stdout.isatty() else Console()

    runs = []
    with tempfile.TemporaryDirectory(prefix="sweep-photos-") as photos:
        folder = args.folder
        if args.fewest_keypoints:
            folder = workload.fewest_keypoints(args.folder, args.fewest_keypoints, Path(photos))
        for value in values:
            for seed in seeds:
                console.print(f"{args.name}={json.dumps(value)}, seed {seed} ...")
                with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
                    runs.append(run_one(folder, args.name, value, seed, args, Path(tmp)))

    ks = [str(int(k)) for k in args.k.split(",") if k.strip()]
    subset = (
        f", the {args.fewest_keypoints} photos with the fewest keypoints" if args.fewest_keypoints else ""
    )
    table = Table(
        title=f"{args.name}: evaluation per value (J={args.j}, {args.per_transform} per transform, "
        f"seeds {args.seeds}{subset})",
        caption=workload.cpu_note() + "; hit@1 is the mean over the seeds (worst seed in brackets)",
    )
    table.add_column(args.name)
    for k in ks:
        table.add_column(f"hit@1 K={k}", justify="right")
    table.add_column("false positives", justify="right")
    for k in ks:
        table.add_column(f"p50 / p95 ms K={k}", justify="right")
    table.add_column(f"misses at K={runs[0]['k_max'] if runs else ''} (all seeds)")
    for value in values:
        mine = [r for r in runs if r["value"] == value]
        cells = [json.dumps(value)]
        for k in ks:
            hits = [r["runs"][k]["hit_at_1"] for r in mine]
            cells.append(f"{np.mean(hits):.4f} ({min(hits):.3f})")
        fp = sum(run["fp"] for r in mine for run in r["runs"].values())
        cells.append(f"{fp} / {sum(r['distractors'] for r in mine) * len(ks)}")
        for k in ks:
            p50 = np.mean([r["runs"][k]["p50_ms"] for r in mine])
            p95 = np.mean([r["runs"][k]["p95_ms"] for r in mine])
            cells.append(f"{p50:.1f} / {p95:.1f}")
        misses: collections.Counter = collections.Counter()
        for r in mine:
            misses.update(r["misses_at_k_max"])
        cells.append(", ".join(f"{t} {n}" for t, n in misses.most_common()) or "none")
        table.add_row(*cells)
    console.print(table)
    workload.save_json(
        {"name": args.name, "args": vars(args) | {"folder": str(args.folder), "json": None}, "runs": runs},
        args.json,
        console,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
