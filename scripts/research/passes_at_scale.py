"""New images and copies on an index kept by bench_scale.py: p50 and what each tier and pass costs.

Research script (issue 12). Opens the kept index once (long-lived, as a service would), queries
``--warm`` new images untimed, then, ``--rounds`` times, every new image and every copy of
bench_scale's own split, one core: new images p50 / p95 and how many matched, copies p50 and
hit@1, and the mean ms of each tier and local pass (``QueryResult.timings``). Used to measure
what the number of large segments costs at a million images (docs/results.md, "Fewer, larger
segments at a million"), between merges by ``merge_kept.py``.

    .venv/bin/python scripts/bench_scale.py --keep --work /tmp/s1m
    .venv/bin/python scripts/research/passes_at_scale.py /tmp/s1m/bench-scale-*/ --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from imgsearch import Index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kept", type=Path, help="the folder bench_scale.py --keep left (holds spec.json)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warm", type=int, default=40, help="new images queried untimed first")
    parser.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)))
    args = parser.parse_args()
    spec = json.loads((args.kept / "spec.json").read_text())
    os.sched_setaffinity(0, {args.core})
    index = Index.open(spec["index"])
    print("segments (live images):", [p.entry.live for p in index.reader.parts])
    new, copies = spec["new"], spec["copies"]
    for path in new[: args.warm]:
        index.query_many([path])
    for r in range(args.rounds):
        per: dict[str, list[float]] = {}
        new_ms, matched = [], 0
        for path in new:
            res = index.query_many([path])[0]
            new_ms.append(res.elapsed_ms)
            matched += bool(res.matches)
            for k, v in res.timings.items():
                per.setdefault(k, []).append(v)
        copy_ms, hits = [], 0
        for path, expected in copies:
            res = index.query_many([path])[0]
            copy_ms.append(res.elapsed_ms)
            hits += bool(res.matches) and os.path.realpath(res.matches[0].path) == os.path.realpath(expected)
        print(
            f"round {r}: new images p50 {statistics.median(new_ms):.1f} p95 "
            f"{statistics.quantiles(new_ms, n=20)[-1]:.1f} ms, {matched} of {len(new)} matched; copies p50 "
            f"{statistics.median(copy_ms):.1f} ms, hit@1 {hits} of {len(copies)}; mean ms a new image: "
            + ", ".join(f"{k} {statistics.fmean(v):.1f}" for k, v in per.items()),
            flush=True,
        )


if __name__ == "__main__":
    main()
