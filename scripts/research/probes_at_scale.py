"""What more probes, or a lower vote floor, buy and cost on an index kept by bench_scale.py.

Research script (issues 11 and 12). At a million images the key is 27 bits wide and a query hash's
32 probes reach fewer of its true pairs than at 1,000 images (``directed_probes.py``: 0.98 of the
tune half's true pairs at 17 bits, 0.89 at 25), and the vote floor has grown to 7: bench_scale's
million loses two of its 316 copies that a 1,000-image index finds. This queries the kept index's
copies and new images (its own split) under each ``--settings`` entry (search overrides, ``;``
between entries, ``,`` between keys; ``-`` for the defaults), one core, and prints hit@1, the copies
lost, the new images matched (with the 95 % upper bound of their rate) and the wall ms of each,
after one untimed pass over every query.

    .venv/bin/python scripts/bench_scale.py --cpu 1 --work /tmp/s1m --keep
    .venv/bin/python scripts/research/probes_at_scale.py /tmp/s1m/bench-scale-*/ \\
        --settings "-;probes=48;probes=64;min_votes=5;probes=64,min_votes=5"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from imgsearch import Index


def overrides(entry: str) -> dict[str, int | float | None]:
    """``probes=64,min_votes=5`` as keyword overrides (``-``: none; ``None`` for a value)."""
    if entry.strip() in ("", "-"):
        return {}
    out: dict[str, int | float | None] = {}
    for item in entry.split(","):
        key, value = item.split("=")
        out[key.strip()] = None if value == "None" else float(value) if "." in value else int(value)
    return out


def upper_bound(k: int, n: int) -> float:
    """95 % upper bound of a rate seen k times in n (exact binomial; 3/n for 0 of n, about)."""
    if n == 0:
        return 1.0
    if k == n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(60):  # bisect P(X <= k | p) = 0.05
        mid = (lo + hi) / 2
        term, total = (1 - mid) ** n, 0.0
        for i in range(k + 1):
            total += term
            term *= (n - i) / (i + 1) * mid / (1 - mid) if mid < 1 else 0.0
        lo, hi = (mid, hi) if total > 0.05 else (lo, mid)
    return hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="bench_scale.py's run folder (the one holding spec.json)")
    parser.add_argument("--settings", default="-;probes=64")
    parser.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    spec = json.loads((args.work / "spec.json").read_text())
    index = Index.open(spec["index"])
    copies = [(p, os.path.realpath(e)) for p, e in spec["copies"]]
    # Once, untimed, every query: the first reads of the index's pages (a million images' 38 GB do
    # not fit the page cache; their postings, 2.6 GB, do) would fall on the first setting alone.
    index.query_many([p for p, _ in copies] + spec["new"])
    print(f"{len(index):,} images; {len(copies)} copies, {len(spec['new'])} new images; one core")
    print("| settings | hit@1 | copies lost | new images matched (95 % bound) | copies p50 / p95 ms | new images p50 / p95 ms |")
    print("|---|---|---|---|---|---|")
    for entry in args.settings.split(";"):
        extra = overrides(entry)
        lost, copy_ms = [], []
        for path, original in copies:
            t = time.perf_counter()
            (r,) = index.query_many([path], **extra)
            copy_ms.append((time.perf_counter() - t) * 1e3)
            if not (r.matches and r.matches[0].path == original):
                lost.append(Path(path).name)
        matched, new_ms = 0, []
        for path in spec["new"]:
            t = time.perf_counter()
            (r,) = index.query_many([path], **extra)
            new_ms.append((time.perf_counter() - t) * 1e3)
            matched += bool(r.matches)
        n = len(spec["new"])

        def q(v: list[float], p: float) -> float:
            return statistics.quantiles(v, n=100)[int(p) - 1]

        print(
            f"| {entry} | {1 - len(lost) / len(copies):.4f} | {', '.join(lost) or 'none'} | "
            f"{matched} of {n} ({upper_bound(matched, n):.1%}) | {statistics.median(copy_ms):.1f} / {q(copy_ms, 95):.1f} | "
            f"{statistics.median(new_ms):.1f} / {q(new_ms, 95):.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
