"""Do two checkouts give the same answers? Every field of each explained result, on a kept index.

Research script (issue 12: a faster probe must change no answer). Runs this checkout and another
(``PYTHONPATH`` set to each, the same venv) over the same kept bench_scale.py index: ``--new`` of
its new-image photos (its split, seed 0) and ``--copies`` of its query files, and compares
``QueryResult.to_dict(explain=True)`` without the timings: matches, scores, geometry, every
rejection and its reason.

    .venv/bin/python scripts/bench_scale.py --max-images 32000 --keep --work /tmp/sc32
    .venv/bin/python scripts/research/same_answers.py /tmp/sc32 --other /tmp/head
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
WORKER = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import bench_scale, workload
from imgsearch import Index
work, n_new, n_copies = Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
_, new, _ = bench_scale.split_photos(workload.list_images(workload.DEFAULT_PHOTOS), 0)
copies = [str(p) for p in sorted(work.glob("*/queries/*"))[:n_copies]]
index = Index.open(next(work.glob("*/index")))
out = []
for p in list(new[:n_new]) + copies:
    r = index.query_many([p])[0].to_dict(explain=True)
    r.pop("elapsed_ms", None)
    r.pop("timings_ms", None)
    out.append(r)
json.dump(out, open(sys.argv[1], "w"), sort_keys=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="bench_scale.py's --work folder (run with --keep)")
    parser.add_argument("--other", type=Path, required=True, help="the other checkout")
    parser.add_argument("--new", type=int, default=80)
    parser.add_argument("--copies", type=int, default=80)
    args = parser.parse_args()
    answers = {}
    with tempfile.TemporaryDirectory(prefix="same-answers-") as tmp:
        for name, checkout in (("this", SCRIPTS.parent), ("other", args.other.resolve())):
            out = Path(tmp) / f"{name}.json"
            command = [sys.executable, "-c", WORKER, str(out), str(SCRIPTS), str(args.work), str(args.new), str(args.copies)]
            subprocess.run(command, env=dict(os.environ, PYTHONPATH=str(checkout)), check=True, cwd="/")
            answers[name] = json.loads(out.read_text())
    this, other = answers["this"], answers["other"]
    differ = [r["query"] if "query" in r else i for i, (r, o) in enumerate(zip(this, other, strict=True)) if r != o]
    print(f"{len(this)} queries: {sum(bool(r.get('matches')) for r in this)} with matches, "
          f"{sum(len(r.get('rejected', [])) for r in this)} rejections; {len(differ)} differ {differ[:5]}")  # fmt: skip
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
