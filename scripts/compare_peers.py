"""imgsearch beside its peers on the same queries: hit rate per transform, false positives, speed.

Peers, each optional (skipped with a message when it cannot be imported or set up):

* ``imagehash`` pHash: the nearest indexed hash, a copy if within 10 bits;
* PDQ (``pdqhash``): the query's 8 dihedral hashes, a copy if within 31 bits of one;
* thorn ``perception``'s SIFT deduplication with its defaults
  (``perception.local_descriptor_deduplication``), the queries deduplicated against the indexed set.

**The peers run in their own virtual environment**, ``scripts/.peers-venv`` (git-ignored), never in
the project's ``.venv``: ``perception`` pins OpenCV below 5, which would break imgsearch. On first
use this script creates it with ``python3 -m venv scripts/.peers-venv`` and
``pip install imagehash pdqhash "perception[approximate-deduplication]"`` (``--no-setup`` to forbid
that), then runs ``scripts/peers_worker.py`` with that venv's Python on a JSON job file of indexed
and query paths; the worker writes the peers' matches and timings to a JSON result file.

The queries are those of :mod:`imgsearch.evaluate.protocol`: ``--limit`` photos are indexed and
``--distractors`` more are held out; ``--per-transform`` indexed photos (one seeded sample) are
queried under every transform, and each distractor is queried plain and under one transform. A
query is a *hit* when the original is among the tool's matches; a distractor with any match is a
*false positive*. imgsearch runs with the tiers its index has (all, or exact+global while the local
tier is not implemented); its index is built in a child process with ``--workers`` (default 1, like
the peers, which run in one process).

Writes ``hit_rates.csv``, ``timing.csv``, ``results.json`` and ``hit_rates.png`` to ``--out``.

    .venv/bin/python scripts/compare_peers.py                       # 500 indexed, 20 per transform
    .venv/bin/python scripts/compare_peers.py --limit 200 --per-transform 10 --peers imagehash,pdq
    .venv/bin/python scripts/compare_peers.py --peers none          # imgsearch alone, no venv needed
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import workload
from rich.console import Console
from rich.table import Table

SCRIPTS = Path(__file__).resolve().parent
PEERS_VENV = SCRIPTS / ".peers-venv"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
PEERS_PACKAGES = ["imagehash", "pdqhash", "perception[approximate-deduplication]"]
PEERS = ("imagehash", "pdq", "perception")
IMAGEHASH_MAX_DISTANCE = 10
PDQ_MAX_DISTANCE = 31

_BUILD_CHILD = """
import json, sys, time
from imgsearch import Index, IndexConfig
directory, workers, list_file = sys.argv[1:]
files = [line for line in open(list_file).read().split("\\n") if line]
index = Index.create(directory, IndexConfig())
start = time.perf_counter()
report = index.add(files, workers=int(workers))
print(json.dumps({"seconds": time.perf_counter() - start, "failed": len(report.failed)}))
"""


def setup_peers_venv(console: Console) -> str | None:
    """Create ``scripts/.peers-venv`` with the peers if it is missing; returns an error or None."""
    if PEERS_PYTHON.exists():
        return None
    console.print(f"creating {PEERS_VENV} and installing {' '.join(PEERS_PACKAGES)} (a few minutes) ...")
    steps = [
        ["python3", "-m", "venv", str(PEERS_VENV)],
        [str(PEERS_PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(PEERS_PYTHON), "-m", "pip", "install", "--quiet", *PEERS_PACKAGES],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {(proc.stderr or proc.stdout).strip()[-1500:]}"
    return None


def run_peers(peers: list[str], indexed: list[str], queries: list[str], tmp: Path, console: Console) -> dict:
    """Run ``peers_worker.py`` in the peers venv; ``{peer: result}`` (see the worker's docstring)."""
    job, result = tmp / "peers_job.json", tmp / "peers_result.json"
    job.write_text(
        json.dumps(
            {
                "indexed": indexed,
                "queries": queries,
                "peers": peers,
                "imagehash_max_distance": IMAGEHASH_MAX_DISTANCE,
                "pdq_max_distance": PDQ_MAX_DISTANCE,
            }
        )
    )
    console.print(f"running {', '.join(peers)} in {PEERS_VENV} ...")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(PEERS_PYTHON), str(SCRIPTS / "peers_worker.py"), str(job), str(result)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0 or not result.exists():
        reason = f"peers worker failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}"
        return {p: {"available": False, "error": reason} for p in peers}
    return json.loads(result.read_text())


def run_imgsearch(indexed: list[str], queries: list[str], workers: int, tmp: Path, console: Console) -> dict:
    """Build (child process, all tiers) and query (in-process) imgsearch."""
    from imgsearch import Index
    from imgsearch.evaluate.metrics import latency_percentiles

    list_file = tmp / "indexed.txt"
    list_file.write_text("\n".join(indexed) + "\n")
    directory = tmp / "index-all"
    console.print("building the imgsearch index (all tiers) ...")
    cmd = [sys.executable, "-c", _BUILD_CHILD, str(directory), str(workers), str(list_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"error: imgsearch build failed: {proc.stderr.strip()[-2000:]}")
    built = json.loads(proc.stdout.strip().splitlines()[-1])
    index = Index.open(directory)
    tiers = "+".join(t for t in index.search_config().tiers if t != "local" or index.local is not None)
    start = time.perf_counter()
    results = index.query_many(queries)
    query_s = time.perf_counter() - start
    index.close()
    errors = sum(r.error is not None for r in results)
    return {
        "available": True,
        "error": None,
        "version": tiers,
        "build_s": built["seconds"],
        "query_s": query_s,
        "matches": [[m.path for m in r.matches] for r in results],
        "failed_to_index": built["failed"],
        "query_errors": errors,
        **dict(zip(("p50_ms", "p95_ms"), latency_percentiles([r.elapsed_ms for r in results]), strict=True)),
    }


def score(specs, tools: dict, transforms: list[str]) -> tuple[list[list], dict]:
    """Hit-rate rows ``[transform, n, rate per tool...]`` and per-tool totals."""
    names = list(tools)
    rows = []
    hits_all = {t: [] for t in names}
    for tr in transforms:
        idx = [i for i, s in enumerate(specs) if s.original is not None and s.transform == tr]
        row: list = [tr, len(idx)]
        for t in names:
            h = [specs[i].original in tools[t]["matches"][i] for i in idx]
            hits_all[t] += h
            row.append(float(np.mean(h)) if h else float("nan"))
        rows.append(row)
    distractors = [i for i, s in enumerate(specs) if s.original is None]
    totals = {}
    for t in names:
        fp = [bool(tools[t]["matches"][i]) for i in distractors]
        totals[t] = {
            "hit_rate": float(np.mean(hits_all[t])) if hits_all[t] else float("nan"),
            "fp_rate": float(np.mean(fp)) if fp else float("nan"),
            "copies": len(hits_all[t]),
            "distractors": len(fp),
        }
    return rows, totals


def plot(rows: list[list], names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.1 * len(rows) * max(1, len(names))))
    y = np.arange(len(rows))
    height = 0.8 / len(names)
    for k, name in enumerate(names):
        values = [0.0 if np.isnan(r[2 + k]) else r[2 + k] for r in rows]
        ax.barh(y + (k - (len(names) - 1) / 2) * height, values, height, label=name)
    ax.set_yticks(y, [r[0] for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("hit rate (original among the matches)")
    ax.set_title(title, fontsize=9, pad=22)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(names), fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS, help="image folder")
    parser.add_argument("--limit", type=int, default=500, help="photos indexed (default 500)")
    parser.add_argument("--distractors", type=int, default=100, help="photos held out (default 100)")
    parser.add_argument(
        "--per-transform", type=int, default=20, help="indexed photos per transform (default 20)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transforms", default=None, help="comma-separated transform names (default all)")
    parser.add_argument(
        "--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}, or none"
    )
    parser.add_argument("--workers", type=int, default=1, help="imgsearch indexing workers (default 1)")
    parser.add_argument("--no-setup", action="store_true", help="do not create the peers venv if missing")
    parser.add_argument("--out", type=Path, default=SCRIPTS / "results" / "peers", help="output folder")
    args = parser.parse_args(argv)

    from imgsearch.evaluate import protocol
    from imgsearch.evaluate.transforms import get_transforms

    peers = [] if args.peers.strip() == "none" else [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown peers {unknown}; choose from {','.join(PEERS)} or none")
    transforms = [t.name for t in get_transforms(args.transforms.split(",") if args.transforms else None)]
    if args.limit < 1 or args.distractors < 0 or args.per_transform < 1:
        parser.error("--limit and --per-transform must be >= 1, --distractors >= 0")

    console = Console(width=150) if not sys.stdout.isatty() else Console()
    files = workload.list_images(args.folder)
    n = min(len(files), args.limit + args.distractors)
    chosen = sorted(np.random.default_rng(args.seed).permutation(len(files))[:n].tolist())
    pool = [files[i] for i in chosen]
    fraction = min(args.distractors, n - 1) / n
    indexed, distractors = protocol.split(pool, fraction, args.seed)

    tools: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="compare-peers-") as tmp_name:
        tmp = Path(tmp_name)
        console.print(
            f"making queries: {len(indexed)} indexed, {len(distractors)} distractors, "
            f"{args.per_transform} per transform × {len(transforms)} transforms ..."
        )
        specs, failed = protocol.make_queries(
            indexed, distractors, transforms, args.per_transform, args.seed, tmp / "queries"
        )
        for path, reason in failed:
            console.print(f"[red]query source failed:[/red] {path}: {reason}")
        queries = [s.path for s in specs]
        workload.warm_cache(indexed + queries)
        tools["imgsearch"] = run_imgsearch(indexed, queries, args.workers, tmp, console)
        if peers:
            error = (
                None
                if args.no_setup and PEERS_PYTHON.exists()
                else ("no peers venv (--no-setup)" if args.no_setup else setup_peers_venv(console))
            )
            if error:
                for p in peers:
                    skipped[p] = error
            else:
                for p, res in run_peers(peers, indexed, queries, tmp, console).items():
                    if res.get("available") and not res.get("error"):
                        tools[p] = res
                    else:
                        skipped[p] = res.get("error") or "not available"
    for p, why in skipped.items():
        console.print(f"[yellow]skipped {p}[/yellow]: {why}")

    names = list(tools)
    rows, totals = score(specs, tools, transforms)
    n_copies = totals["imgsearch"]["copies"]
    n_distractor_q = totals["imgsearch"]["distractors"]
    title = (
        f"hit rate per transform: {len(indexed)} indexed photos, {args.per_transform} per transform, "
        f"{n_distractor_q} distractor queries, seed {args.seed}"
    )
    table = Table(title=title)
    table.add_column("transform")
    table.add_column("n", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(r[0], str(r[1]), *("" if np.isnan(v) else f"{v:.0%}" for v in r[2:]))
    table.add_section()
    table.add_row("all copies", str(n_copies), *(f"{totals[t]['hit_rate']:.1%}" for t in names))
    table.add_row(
        "false positives (distractors)", str(n_distractor_q), *(f"{totals[t]['fp_rate']:.1%}" for t in names)
    )
    console.print(table)

    ref = tools["imgsearch"]
    timing = Table(title=f"speed, same run ({workload.cpu_note()})")
    for col in (
        "tool",
        "version / tiers",
        "build s",
        "build images/s",
        "query ms (mean)",
        "query time vs imgsearch",
    ):
        timing.add_column(col, justify="left" if col in ("tool", "version / tiers") else "right")
    timing_rows = []
    for t in names:
        res = tools[t]
        ms = res["query_s"] / max(len(queries), 1) * 1e3
        ratio = res["query_s"] / ref["query_s"] if ref["query_s"] > 0 else float("nan")
        timing_rows.append(
            [t, res.get("version", ""), res["build_s"], len(indexed) / res["build_s"], ms, ratio]
        )
        timing.add_row(
            t,
            str(res.get("version", "")),
            f"{res['build_s']:.2f}",
            f"{len(indexed) / res['build_s']:.1f}",
            f"{ms:.2f}",
            f"{ratio:.2f}×",
        )
    console.print(timing)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "hit_rates.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["transform", "n", *names])
        w.writerows([[r[0], r[1], *("" if np.isnan(v) else f"{v:.4f}" for v in r[2:])] for r in rows])
        w.writerow(["all copies", n_copies, *(f"{totals[t]['hit_rate']:.4f}" for t in names)])
        w.writerow(
            ["false positives (distractors)", n_distractor_q, *(f"{totals[t]['fp_rate']:.4f}" for t in names)]
        )
    with open(args.out / "timing.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["tool", "version", "build_s", "build_images_per_s", "query_ms_mean", "query_time_vs_imgsearch"]
        )
        w.writerows(timing_rows)
    from imgsearch.evaluate.results import json_safe

    (args.out / "results.json").write_text(
        json.dumps(
            json_safe(
                {
                    "config": {
                        "folder": str(args.folder),
                        "indexed": len(indexed),
                        "distractors": len(distractors),
                        "per_transform": args.per_transform,
                        "seed": args.seed,
                        "transforms": transforms,
                        "imgsearch_workers": args.workers,
                        "imagehash_max_distance": IMAGEHASH_MAX_DISTANCE,
                        "pdq_max_distance": PDQ_MAX_DISTANCE,
                    },
                    "hit_rates": [dict(zip(["transform", "n", *names], r, strict=True)) for r in rows],
                    "totals": totals,
                    "timing": [
                        dict(
                            zip(
                                [
                                    "tool",
                                    "version",
                                    "build_s",
                                    "build_images_per_s",
                                    "query_ms_mean",
                                    "query_time_vs_imgsearch",
                                ],
                                r,
                                strict=True,
                            )
                        )
                        for r in timing_rows
                    ],
                    "skipped": skipped,
                }
            ),
            indent=2,
        )
        + "\n"
    )
    plot(rows, names, args.out / "hit_rates.png", title)
    console.print(f"saved hit_rates.csv, timing.csv, results.json, hit_rates.png in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
