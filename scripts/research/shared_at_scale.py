"""Hard negatives at a million images: renders of shared marks, packaging and templates added to an
index kept by bench_scale.py, then queried under search overrides (the vote floor, the zoomed pass).

Research script (issues 11 and 12). The hard-negative protocol (``imgsearch.evaluate.shared``)
indexes each design's renders in an index of its own, a few hundred images, where the vote floor is
2; this asks what the decision does when the same renders sit among a million images, and what a
lower floor than the million's 7 lets through there. For every kind and design in turn, renders of
the design on one pool of photos are **added to the kept index**, renders on the other pool are
queried, plain and under a transform (any match is a false positive), with copies of the added
renders (hit@1: their own render), and the added renders are removed again: as in the protocol,
where each design has an index of its own, no design sees another's renders (they reuse photos).

The renders' content photos are bench_scale's **new** part only (its split, seed 0): the other
photos are indexed in the kept index already (as themselves, or cropped and rescaled), and a render
of one of them would rightly match it. The kept index gains segments and tombstones.

    .venv/bin/python scripts/bench_scale.py --cpu 1 --work /tmp/s1m --keep
    .venv/bin/python scripts/research/shared_at_scale.py /tmp/s1m/bench-scale-*/ \\
        --settings="-;min_votes=5;min_votes=5,zoom_factor=None"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from probes_at_scale import overrides, upper_bound

from imgsearch import Index
from imgsearch.evaluate import shared
from imgsearch.evaluate.negatives import KINDS
from imgsearch.evaluate.protocol import encode_query
from imgsearch.evaluate.transforms import apply_transform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="bench_scale.py's run folder (the one holding spec.json)")
    parser.add_argument("--designs", default="0,1,2")
    parser.add_argument("--kinds", default="all")
    parser.add_argument(
        "--per-design", type=int, default=30, help="renders added, and queried as new, a design"
    )
    parser.add_argument(
        "--copies", type=int, default=4, help="added renders copied under each copy transform"
    )
    parser.add_argument("--settings", default="-;min_votes=5")
    parser.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)))
    parser.add_argument("--show", action="store_true", help="print each false positive's match")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    spec = json.loads((args.work / "spec.json").read_text())
    photos = sorted(spec["new"])
    kinds = list(KINDS) if args.kinds == "all" else args.kinds.split(",")
    designs = [int(d) for d in args.designs.split(",")]
    settings = args.settings.split(";")
    index = Index.open(spec["index"])
    print(
        f"{len(index):,} images; {len(kinds)} kinds x {len(designs)} designs, each added, queried, removed; one core"
    )
    fp = {e: {} for e in settings}  # setting -> kind -> new images matched
    hits = dict.fromkeys(settings, 0)
    ms: dict[str, list[float]] = {e: [] for e in settings}
    new_n = copy_n = 0
    for kind in kinds:
        for d in designs:
            rng = np.random.default_rng([0, list(KINDS).index(kind), d, 1])
            indexed_pool, new_pool = shared._pools(photos, 0, kind, d)
            indexed = shared._renders(kind, d, indexed_pool, args.per_design, rng)
            new = shared._renders(kind, d, new_pool, args.per_design, rng)
            out = args.work / "shared-renders" / f"{kind}-{d}"
            out.mkdir(parents=True, exist_ok=True)
            names = []
            for i, image in enumerate(indexed):
                path = out / f"{i:05d}.jpg"
                cv2.imwrite(
                    str(path), np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 92]
                )
                names.append(os.path.realpath(path))
            queries: list[tuple[str, str | None, bytes]] = []  # (what, expected path, data)
            for i, image in enumerate(new):
                queries.append(("new", None, encode_query(image)))
                t = shared.NEW_TRANSFORMS[(i + d) % len(shared.NEW_TRANSFORMS)]
                queries.append(("new", None, encode_query(apply_transform(t, image, 10_000 * d + i))))
            for i in rng.choice(len(indexed), size=min(args.copies, len(indexed)), replace=False):
                for t in shared.COPY_TRANSFORMS:
                    copy = apply_transform(t, indexed[int(i)], int(i))
                    queries.append(("copy", names[int(i)], encode_query(copy)))
            index.add(names, workers=1)
            try:
                for entry in settings:
                    extra = overrides(entry)
                    for what, expected, data in queries:
                        (r,) = index.query_many([data], **extra)
                        if what == "new":
                            ms[entry].append(r.elapsed_ms)
                            fp[entry][kind] = fp[entry].get(kind, 0) + bool(r.matches)
                            if r.matches and args.show:
                                m = r.matches[0]
                                print(
                                    f"    {entry} {kind}-{d}: {'/'.join(Path(m.path).parts[-2:])} {m.tier} "
                                    f"{m.search_pass} votes {m.votes} inliers {m.inliers} coverage {m.coverage} "
                                    f"agreement {m.agreement} distance {m.distance}"
                                )
                        else:
                            hits[entry] += bool(r.matches) and r.matches[0].path == expected
            finally:
                index.remove(names)
            new_n += sum(q[0] == "new" for q in queries)
            copy_n += sum(q[0] == "copy" for q in queries)
            print(f"  {kind} design {d}: {len(names)} renders, {len(queries)} queries", flush=True)
    print("| settings | new images matched (95 % bound) | by kind | copies: hit@1 | new images p50 ms |")
    print("|---|---|---|---|---|")
    for entry in settings:
        n_fp = sum(fp[entry].values())
        by_kind = {k: v for k, v in fp[entry].items() if v} or "-"
        print(
            f"| {entry} | {n_fp} of {new_n} ({upper_bound(n_fp, new_n):.2%}) | {by_kind} | "
            f"{hits[entry] / max(copy_n, 1):.4f} ({hits[entry]} of {copy_n}) | {np.median(ms[entry]):.1f} |"
        )


if __name__ == "__main__":
    main()
