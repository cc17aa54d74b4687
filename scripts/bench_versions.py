"""Query time of this engine against another checkout of it (an earlier release), measured in one run.

Both engines index the same first ``--limit`` photos, each in its own index (their formats may
differ), in two worker processes pinned to the same core. The parent sends them the same queries
query by query in turn (which goes first alternates), so that a drift of the shared machine's
speed falls on both: ``--queries`` modified copies of indexed photos (the evaluation's transforms
in turn) and one modified copy of every photo after ``--limit`` (new images). Each worker times
its own ``Index.query_many([path])`` (``QueryResult.elapsed_ms``): start-up and the pipe are not
counted. Prints per engine and kind of query the mean, p50 and p95 ms, copies found (top-1 right)
and new images matched, and the ratio of the means (median over rounds).

    git worktree add --detach /tmp/old becb2bd && (cd /tmp/old && bash scripts/setup.sh)
    .venv/bin/python scripts/bench_versions.py --baseline-python /tmp/old/.venv/bin/python \\
        --json scripts/results/bench_versions.json

The baseline checkout must offer ``Index.create(folder, IndexConfig())``, ``Index.add(paths,
workers=)`` and ``Index.query_many(paths)`` returning results with ``elapsed_ms`` and ``matches``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import workload
from rich.console import Console

# The worker: reads its index folder, core and photo list as one JSON line, builds, answers "ready",
# then answers each query path (one line) with one JSON line; an empty line ends it.
WORKER = r"""
import json, os, sys
from pathlib import Path
setup = json.loads(sys.stdin.readline())
from imgsearch import Index, IndexConfig
import imgsearch
with Index.create(Path(setup["folder"]), IndexConfig()) as index:
    index.add(setup["photos"], workers=setup["workers"])
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {setup["core"]})
index = Index.open(Path(setup["folder"]))
print(json.dumps({"ready": imgsearch.__file__}), flush=True)
for line in sys.stdin:
    path = line.rstrip("\n")
    if not path:
        break
    res = index.query_many([path])[0]
    top = res.matches[0] if res.matches else None
    print(json.dumps({"ms": res.elapsed_ms, "top": None if top is None else os.path.realpath(top.path),
                      "tier": None if top is None else top.tier}), flush=True)
"""


class Engine:
    """One worker process of one checkout's Python."""

    def __init__(self, python: str, folder: Path, photos: list[str], core: int, workers: int) -> None:
        self.proc = subprocess.Popen(
            # -P and the folder as working directory: the checkout's own package, not one found in
            # the caller's working directory.
            [python, "-P", "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            cwd=folder.parent,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"folder": str(folder), "photos": photos, "core": core,
                                          "workers": workers}) + "\n")  # fmt: skip
        ready = self.proc.stdout.readline()
        if not ready:
            raise SystemExit(f"error: the engine of {python} did not start (see its messages above)")
        self.module = json.loads(ready)["ready"]

    def query(self, path: str) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(path + "\n")
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--baseline-python", required=True, help="the Python of the other checkout's venv")
    parser.add_argument("--limit", type=int, default=800)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from imgsearch.evaluate.transforms import TRANSFORMS

    photos = workload.list_images(args.folder, None)
    indexed, others = photos[: args.limit], photos[args.limit :]
    console = Console(width=140) if not sys.stdout.isatty() else Console()
    note = workload.cpu_note()
    core = sorted(os.sched_getaffinity(0))[0] if hasattr(os, "sched_getaffinity") else 0
    with tempfile.TemporaryDirectory(prefix="bench-versions-") as tmp:
        names = [t for t in TRANSFORMS if t != "exact_copy"]
        copies = workload.make_queries(indexed, names, args.queries, args.seed, Path(tmp) / "copies")
        new = [
            workload.write_query(p, names[i % len(names)], args.seed + i, Path(tmp) / "new" / f"{i:05d}.jpg", None)
            for i, p in enumerate(others)
        ]
        engines = {
            "this": Engine(sys.executable, Path(tmp) / "this", indexed, core, args.workers),
            "baseline": Engine(args.baseline_python, Path(tmp) / "baseline", indexed, core, args.workers),
        }
        sets = {"copies": [q.path for q in copies], "new images": [q.path for q in new]}
        truth = {"copies": [os.path.realpath(q.expected) for q in copies if q.expected], "new images": None}
        times: dict[tuple[str, str], list[float]] = {}
        found: dict[tuple[str, str], int] = {}
        ratios: dict[str, list[float]] = {k: [] for k in sets}
        # Warm-up: copies and new images, so that both tiers and every local pass have run once (an
        # engine's first local query loads its compiled kernels: 0.4 s, which three global copies
        # left to the first round).
        for engine in engines.values():
            for path in sets["copies"][:3] + sets["new images"][:3]:
                engine.query(path)
        for r in range(args.rounds):
            for kind, paths in sets.items():
                ms: dict[str, list[float]] = {name: [] for name in engines}
                hits = dict.fromkeys(engines, 0)
                for i, path in enumerate(paths):
                    order = list(engines.items())
                    for name, engine in order[:: 1 if (i + r) % 2 == 0 else -1]:
                        answer = engine.query(path)
                        ms[name].append(answer["ms"])
                        expected = None if truth[kind] is None else truth[kind][i]
                        hits[name] += answer["top"] is not None and (expected is None or answer["top"] == expected)
                for name in engines:
                    times.setdefault((name, kind), []).extend(ms[name])
                    found[(name, kind)] = hits[name]
                ratios[kind].append(statistics.fmean(ms["this"]) / statistics.fmean(ms["baseline"]))
        for engine in engines.values():
            engine.close()
    table, rows = workload.paired_table(
        f"query ms on one core: this checkout vs {args.baseline_python} ({note})", "engine",
        "copies right / new matched", times, found, ratios, {k: len(v) for k, v in sets.items()}, "this",
    )  # fmt: skip
    result = {"baseline": args.baseline_python, "modules": {k: e.module for k, e in engines.items()},
              "machine": note, "rows": rows}  # fmt: skip
    console.print(table)
    for name, engine in engines.items():
        console.print(f"{name}: {engine.module}")
    workload.save_json(result, args.json, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
