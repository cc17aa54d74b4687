"""The stress set's copies that another checkout finds and this one misses, and why.

Issue 11 asks the shared-part decision to keep the hits; this measures, query by query, what it
costs on the stress set (``scripts/stress_transforms.py``'s queries, the same seed and photos):
both checkouts build their own index of the first ``--indexed`` photos of ``folder`` (in two
worker processes, side by side) and answer the same encoded queries, written once to a work
folder. Prints per transform the copies each found and the new images each matched, then every
copy found by one and not the other with this checkout's reason for turning its original down
(``QueryResult.rejected``).

    git worktree add --detach /tmp/old becb2bd && (cd /tmp/old && bash scripts/setup.sh)
    .venv/bin/python scripts/research/stress_versions.py /tmp/report_photos --indexed 380 \\
        --per-transform 30 --baseline-python /tmp/old/.venv/bin/python \\
        --json scripts/results/stress_versions_report.json

The baseline checkout must offer ``Index.create``, ``Index.add(paths, workers=)`` and
``Index.query_many(paths, keypoints=, top=)``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: workload, stress_transforms

import stress_transforms
import workload
from rich.console import Console
from rich.table import Table

# The worker: one JSON line of setup in, one JSON line per query out (run by either checkout's
# Python; -P and the work folder as working directory keep the caller's package out of its path).
WORKER = r"""
import json, os, sys
from pathlib import Path
setup = json.loads(sys.stdin.readline())
from imgsearch import Index, IndexConfig
with Index.create(Path(setup["folder"]), IndexConfig()) as index:
    index.add(setup["photos"], workers=1)
index = Index.open(Path(setup["folder"]))
for path, expected in setup["queries"]:
    res = index.query_many([path], keypoints=setup["k"], top=3)[0]
    top = res.matches[0] if res.matches else None
    why = [[r.search_pass or r.tier, r.votes, r.inliers, r.reason]
           for r in getattr(res, "rejected", []) if expected and os.path.realpath(r.path) == expected]
    print(json.dumps({"top": None if top is None else os.path.realpath(top.path),
                      "by": None if top is None else (getattr(top, "search_pass", None) or top.tier),
                      "inliers": None if top is None else top.inliers, "why": why}), flush=True)
"""


def run_engine(python: str, folder: Path, setup: dict, out: Path) -> subprocess.Popen:
    """Start one checkout's worker; its answers go to ``out`` (so that neither waits on a pipe)."""
    with out.open("w") as answers:
        proc = subprocess.Popen(
            [python, "-P", "-c", WORKER], stdin=subprocess.PIPE, stdout=answers, text=True, cwd=folder
        )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(setup) + "\n")
    proc.stdin.close()
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--indexed", type=int, default=380)
    parser.add_argument("--per-transform", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=40, help="query keypoint budget")
    parser.add_argument("--baseline-python", required=True, help="the Python of the other checkout's venv")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    photos = workload.list_images(args.folder, None)
    indexed, others = photos[: args.indexed], photos[args.indexed :]
    if not others:
        raise SystemExit(f"error: need photos after the first {args.indexed} as new images")
    queries = stress_transforms.stress_queries(indexed, others, args.per_transform, args.seed)
    engines = {"baseline": args.baseline_python, "this": sys.executable}
    with tempfile.TemporaryDirectory(prefix="stress-versions-") as tmp:
        work = Path(tmp)
        listed = []
        for i, (_, expected, data) in enumerate(queries):
            path = work / f"q{i:05d}.jpg"
            path.write_bytes(data)
            listed.append([str(path), expected])
        procs = {
            name: run_engine(
                python,
                work,
                {"folder": str(work / f"index-{name}"), "photos": indexed, "queries": listed, "k": args.k},
                work / f"{name}.jsonl",
            )
            for name, python in engines.items()
        }
        answers = {}
        for name, proc in procs.items():
            if proc.wait() != 0:
                raise SystemExit(f"error: the {name} engine ({engines[name]}) failed, exit {proc.returncode}")
            answers[name] = [json.loads(line) for line in (work / f"{name}.jsonl").read_text().splitlines()]
            if len(answers[name]) != len(queries):
                raise SystemExit(f"error: the {name} engine answered {len(answers[name])} of {len(queries)}")

    per_transform: dict[str, dict[str, int]] = {}
    differ = []
    for i, (name, expected, _) in enumerate(queries):
        row = per_transform.setdefault(
            name, {"copies": 0, "baseline": 0, "this": 0, "new": 0, "baseline_fp": 0, "this_fp": 0}
        )
        found = {e: answers[e][i]["top"] == expected for e in engines}
        if expected is None:
            row["new"] += 1
            for e in engines:
                row[f"{e}_fp"] += answers[e][i]["top"] is not None
            continue
        row["copies"] += 1
        for e in engines:
            row[e] += found[e]
        if found["baseline"] != found["this"]:
            differ.append(
                {
                    "query": i,
                    "transform": name,
                    "expected": expected,
                    "found_by": "baseline" if found["baseline"] else "this",
                    "baseline": {k: answers["baseline"][i][k] for k in ("by", "inliers")},
                    "this": {k: answers["this"][i][k] for k in ("by", "inliers")},
                    "why_this_refused": answers["this"][i]["why"],
                }
            )

    console = Console(width=160)
    table = Table(title=f"stress copies, {len(indexed)} indexed, seed {args.seed}, K={args.k}")
    for column in ("transform", "copies", "baseline", "this", "new images", "matched: baseline", "this"):
        table.add_column(column, justify="right")
    total = {k: sum(r[k] for r in per_transform.values()) for k in next(iter(per_transform.values()))}
    for name, r in [*per_transform.items(), ("all", total)]:
        if (
            name != "all"
            and r["baseline"] == r["this"] == r["copies"]
            and r["baseline_fp"] == r["this_fp"] == 0
        ):
            continue
        cells = (r["copies"], r["baseline"], r["this"], r["new"], r["baseline_fp"], r["this_fp"])
        table.add_row(name, *(str(v) for v in cells))
    console.print(table)
    for d in differ:
        reasons = "; ".join(f"{p} ({v} votes, {n} inliers): {why}" for p, v, n, why in d["why_this_refused"])
        console.print(
            f"[bold]{d['transform']}[/] {Path(d['expected']).name}: found by {d['found_by']} "
            f"(baseline {d['baseline']['by']} {d['baseline']['inliers']}, this {d['this']['by']} "
            f"{d['this']['inliers']}); this refused it: {reasons or 'never a candidate'}",
            soft_wrap=True,
        )
    result = {
        "folder": str(args.folder),
        "indexed": len(indexed),
        "per_transform": args.per_transform,
        "seed": args.seed,
        "k": args.k,
        "baseline_python": args.baseline_python,
        "per_transform_counts": per_transform,
        "total": total,
        "differ": differ,
    }
    workload.save_json(result, args.json, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
