"""New images against an index kept by bench_scale.py, this checkout against another, in one run.

Research script (issue 12: what a new image costs at scale). Two worker processes, one per
checkout (``PYTHONPATH`` set to it, the same venv), open the same kept index and, round after
round (which goes first alternates), each query ``--queries`` of bench_scale's new-image photos
(its split, seed 0) on the same core; prints each round's p50 and the ratio this / other.

    .venv/bin/python scripts/bench_scale.py --max-images 32000 --keep --work /tmp/sc32
    git worktree add --detach /tmp/head HEAD~1
    .venv/bin/python scripts/research/pair_checkouts.py /tmp/sc32 --other /tmp/head
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
WORKER = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
import bench_scale, workload
import imgsearch
from imgsearch import Index
os.sched_setaffinity(0, {int(sys.argv[1])})
_, new, _ = bench_scale.split_photos(workload.list_images(workload.DEFAULT_PHOTOS), 0)
data = [Path(f).read_bytes() for f in new[: int(sys.argv[2])]]
index = Index.open(next(Path(sys.argv[3]).glob("*/index")))
index.query_many(data[:3])
print(json.dumps({"ready": imgsearch.__file__}), flush=True)
for _ in sys.stdin:
    ms, found = [], 0
    for d in data:
        start = time.perf_counter()
        found += bool(index.query_many([d])[0].matches)
        ms.append((time.perf_counter() - start) * 1e3)
    print(json.dumps({"ms": ms, "found": found}), flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="bench_scale.py's --work folder (run with --keep)")
    parser.add_argument("--other", type=Path, required=True, help="the other checkout")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    args = parser.parse_args()
    workers = {}
    for name, checkout in (("this", SCRIPTS.parent), ("other", args.other.resolve())):
        env = dict(os.environ, PYTHONPATH=str(checkout))
        command = [sys.executable, "-c", WORKER, str(args.cpu), str(args.queries), str(args.work), str(SCRIPTS)]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd="/")
        assert proc.stdout is not None
        print(name, json.loads(proc.stdout.readline())["ready"])
        workers[name] = proc
    p50: dict[str, list[float]] = {name: [] for name in workers}
    for r in range(args.rounds):
        for name in list(workers)[:: 1 if r % 2 == 0 else -1]:
            proc = workers[name]
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            out = json.loads(proc.stdout.readline())
            p50[name].append(statistics.median(out["ms"]))
            print(f"round {r} {name:5s} p50 {p50[name][-1]:6.1f} ms, {out['found']} matched", flush=True)
    for proc in workers.values():
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
    ratios = [a / b for a, b in zip(p50["this"], p50["other"], strict=True)]
    print(f"this / other, p50 per round: {[round(x, 3) for x in ratios]}, median {statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
