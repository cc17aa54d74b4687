"""Record, for every query that reaches the zoomed pass, the evidence of the earlier local passes.

Monkeypatches (in this process only) imgsearch.local.LocalIndex._hits/_fit/_search_pass/search,
imgsearch.decide.decide and imgsearch.search.search_local to log per pass: votes per image (the
output of votes.count), candidates fitted and how each ended, and per query the zoomed pass's wall
time. Queries one at a time with Index.query_many([bytes]).

Research code of issue 12 (written against commit 76240a9; the internals it patches may move):

    .venv/bin/python scripts/research/zoom_gate_driver.py stress /tmp/tune_photos \
        --indexed 380 --per-transform 30 --k 40,400 --out /tmp/zoomgate/stress_tune.jsonl
    .venv/bin/python scripts/research/zoom_gate_driver.py eval /tmp/tune_photos \
        --per-transform 20 --k 40,400 --out /tmp/zoomgate/eval_tune.jsonl
    cd /tmp/zoomgate && python .../zoom_gate_analyse.py stress_tune.jsonl ... ; python .../zoom_gate_pooled.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: workload, stress_transforms

from imgsearch import decide as decide_mod
from imgsearch import local as local_mod
from imgsearch import search as search_mod

LOG: dict = {}


def reset() -> None:
    LOG.clear()
    LOG.update(passes=[], searches=[], local_ms=None)


reset()
LI = local_mod.LocalIndex
_orig_hits, _orig_fit, _orig_pass, _orig_search = LI._hits, LI._fit, LI._search_pass, LI.search
_orig_decide = decide_mod.decide
_orig_search_local = search_mod.search_local


def _hits(self, qp, cfg, hinted):
    _kp, _image, (cand, counts) = out = _orig_hits(self, qp, cfg, hinted)
    cur = LOG["passes"][-1]
    cur["votes"] = dict(zip(cand.tolist(), counts.tolist(), strict=False))
    return out


def _fit(self, image, n_votes, qp, cfg, pairs=None):
    res = _orig_fit(self, image, n_votes, qp, cfg, pairs)
    cur = LOG["passes"][-1]
    rec = {"image": int(image), "votes": int(n_votes), "hint": int(image) in cur["hinted"]}
    if isinstance(res, str):
        rec.update(fitted=False, reason=res)
    else:
        rec.update(
            fitted=True, inliers=int(res.inliers), scale=float(res.scale), coverage=float(res.coverage)
        )
    cur["fits"].append(rec)
    return res


def _decide(fits, *a, **kw):
    verdicts = _orig_decide(fits, *a, **kw)
    cur = LOG["passes"][-1]
    cur["verdicts"] = [
        {"image": int(f.image), "inliers": int(f.inliers), "reason": v.reason}
        for f, v in zip(fits, verdicts, strict=False)
    ]
    return verdicts


def _search_pass(self, qp, cfg, path_of, hinted, region, vote=True):
    LOG["passes"].append(
        {
            "name": qp.name,
            "zoomed": bool(qp.zoomed),
            "hinted": sorted(int(i) for i in hinted),
            "vote": vote,
            "fits": [],
            "verdicts": [],
            "votes": {},
            "shape": list(qp.shape),
            "lookups": len(qp.lookup),
        }
    )
    matches, rejected = _orig_pass(self, qp, cfg, path_of, hinted, region, vote)
    LOG["passes"][-1]["matches"] = [int(m.image_id) for m in matches]
    return matches, rejected


def _search(self, gray, cfg, path_of, hints=(), **kw):
    t = time.perf_counter()
    out = _orig_search(self, gray, cfg, path_of, hints, **kw)
    LOG["searches"].append({"zoomed": bool(kw.get("zoomed")), "ms": (time.perf_counter() - t) * 1e3})
    return out


def _search_local(index, q, cfg):
    t = time.perf_counter()
    out = _orig_search_local(index, q, cfg)
    LOG["local_ms"] = (time.perf_counter() - t) * 1e3
    return out


LI._hits, LI._fit, LI._search_pass, LI.search = _hits, _fit, _search_pass, _search
decide_mod.decide = _decide
search_mod.search_local = _search_local
search_mod.TIER_SEARCH["local"] = _search_local


def stress_queries(folder: Path, n_indexed: int, per_transform: int, seed: int):
    """Exactly the queries of scripts/stress_transforms.py main() (same rng sequence)."""
    import stress_transforms as st
    import workload

    photos = workload.list_images(folder, None)
    indexed, others = photos[:n_indexed], photos[n_indexed:]
    queries = st.stress_queries(indexed, others, per_transform, seed)
    return indexed, queries


def eval_queries(folder: Path, per_transform: int, seed: int, work: Path):
    from imgsearch.evaluate.protocol import make_queries, split
    from imgsearch.evaluate.spec import EvalConfig
    from imgsearch.index import collect_paths

    cfg = EvalConfig(folder=folder, per_transform=per_transform, seed=seed)
    paths, _, _ = collect_paths([folder])
    indexed, distractors = split(paths, cfg.distractor_fraction, seed)
    specs, failed = make_queries(indexed, distractors, cfg.transforms, per_transform, seed, work / "queries")
    assert not failed, failed
    queries = [
        (s.transform, os.path.realpath(s.original) if s.original else None, Path(s.path).read_bytes())
        for s in specs
    ]
    return indexed, queries


def summarise(passes, true_id):
    out = []
    for p in passes:
        v = np.array(sorted(p["votes"].values(), reverse=True) or [0])
        fitted = [f for f in p["fits"] if f["fitted"]]
        out.append(
            {
                "name": p["name"],
                "lookups": p["lookups"],
                "max": int(v[0]),
                "second": int(v[1]) if len(v) > 1 else 0,
                "n_ge": {k: int((v >= k).sum()) for k in (2, 3, 4, 5)},
                "true_votes": None if true_id is None else int(p["votes"].get(true_id, 0)),
                "top": sorted(p["votes"].items(), key=lambda kv: -kv[1])[:5],
                "n_tried": len(p["fits"]),
                "n_tried_vote": sum(not f["hint"] for f in p["fits"]),
                "n_hints": len(p["hinted"]),
                "n_fitted": len(fitted),
                "n_fitted_vote": sum(not f["hint"] for f in fitted),
                "max_inliers": max((f["inliers"] for f in fitted), default=0),
                "max_inliers_vote": max((f["inliers"] for f in fitted if not f["hint"]), default=0),
                "fits": p["fits"],
                "verdicts": p["verdicts"],
                "matches": p.get("matches", []),
            }
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("set", choices=["stress", "eval"])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--indexed", type=int, default=380)
    ap.add_argument("--per-transform", type=int, default=30)
    ap.add_argument("--k", default="40")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--index-dir", type=Path, default=None)
    args = ap.parse_args()

    from imgsearch import Index, IndexConfig

    work = args.out.with_suffix(".work")
    work.mkdir(parents=True, exist_ok=True)
    index_dir = args.index_dir or work / "index"
    t = time.perf_counter()
    if args.set == "stress":
        indexed, queries = stress_queries(args.folder, args.indexed, args.per_transform, args.seed)
    else:
        indexed, queries = eval_queries(args.folder, args.per_transform, args.seed, work)
    print(f"{len(queries)} queries made in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    if not (index_dir / ".built").exists():
        t = time.perf_counter()
        # (stress_transforms uses IndexConfig(keypoints=workload.keypoint_config(...)): the default)
        with Index.create(index_dir, IndexConfig()) as index:
            report = index.add(indexed, workers=1)
            assert report.ok, report.failed
        (index_dir / ".built").touch()
        print(f"index of {len(indexed)} built in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    with Index.open(index_dir) as index, args.out.open("w") as fh:
        n_images = len(index)
        id_of = {index.path_of(i): i for i in range(n_images)}
        from imgsearch.votes import votes_needed

        print(f"index: {n_images} images, votes_needed {votes_needed(n_images)}", file=sys.stderr)
        for k in [int(x) for x in args.k.split(",")]:
            t0 = time.perf_counter()
            for qi, (tname, expected, data) in enumerate(queries):
                reset()
                res = index.query_many([data], keypoints=k, top=3)[0]
                true_id = id_of.get(expected) if expected else None
                if expected:
                    assert true_id is not None, expected
                zoom_passes = [p for p in LOG["passes"] if p["zoomed"]]
                pre = [p for p in LOG["passes"] if not p["zoomed"]]
                top = res.matches[0] if res.matches else None
                first_ms = next((s["ms"] for s in LOG["searches"] if not s["zoomed"]), None)
                zoom_ms = next((s["ms"] for s in LOG["searches"] if s["zoomed"]), None)
                rec = {
                    "k": k,
                    "q": qi,
                    "transform": tname,
                    "copy": expected is not None,
                    "true_id": true_id,
                    "index_images": n_images,
                    "tiers_run": res.tiers_run,
                    "reached_zoom": bool(zoom_passes),
                    "top_id": None if top is None else top.image_id,
                    "top_pass": None if top is None else (top.search_pass or top.tier),
                    "top_agreement": None if top is None else top.agreement,
                    "top_inliers": None if top is None else top.inliers,
                    "top_right": top is not None and expected is not None and top.path == expected,
                    "timings": res.timings,
                    "elapsed_ms": res.elapsed_ms,
                    "local_ms": LOG["local_ms"],
                    "first_search_ms": first_ms,
                    "zoom_search_ms": zoom_ms,
                    "pre": summarise(pre, true_id),
                    "zoom": summarise(zoom_passes, true_id),
                }
                fh.write(json.dumps(rec) + "\n")
                if qi % 200 == 0:
                    print(f"K={k} {qi}/{len(queries)} {time.perf_counter() - t0:.0f}s", file=sys.stderr)
            print(f"K={k}: {(time.perf_counter() - t0) / len(queries) * 1e3:.1f} ms/query", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
