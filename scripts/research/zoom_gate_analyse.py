"""Summarise driver.py records: who reaches the zoomed pass, what the earlier passes saw, gates.

.venv/bin/python scripts/research/zoom_gate_analyse.py /tmp/zoomgate/stress_tune.jsonl ...
"""

import json
import sys
from collections import Counter

import numpy as np


def ev(r, which):
    """Evidence over the pre-zoom passes: 'dm' = direct+mirrored only, 'all' = + full passes."""
    ps = [p for p in r["pre"] if which == "all" or p["name"] in ("direct", "mirrored")]
    # per pass statistics; the max (or sum) over the passes
    mx = max((p["max"] for p in ps), default=0)
    sec = max((p["second"] for p in ps), default=0)
    ge = {k: max((p["n_ge"][str(k)] for p in ps), default=0) for k in (2, 3, 4, 5)}
    tried_vote = sum(p["n_tried_vote"] for p in ps)
    fitted_vote = sum(p["n_fitted_vote"] for p in ps)
    fitted_any = sum(p["n_fitted"] for p in ps)
    tried_any = sum(p["n_tried"] for p in ps)
    hints = max((p["n_hints"] for p in ps), default=0)
    inl = max((p["max_inliers"] for p in ps), default=0)
    inl_vote = max((p["max_inliers_vote"] for p in ps), default=0)
    tv = max((p["true_votes"] or 0 for p in ps), default=0) if r["copy"] else None
    tv_dm = {p["name"]: p["true_votes"] for p in ps} if r["copy"] else None
    return dict(
        max=mx,
        second=sec,
        ge=ge,
        tried_vote=tried_vote,
        fitted_vote=fitted_vote,
        tried_any=tried_any,
        fitted_any=fitted_any,
        hints=hints,
        inl=inl,
        inl_vote=inl_vote,
        true=tv,
        true_per=tv_dm,
    )


def zoom_found(r):
    return r["top_pass"] is not None and r["top_pass"].startswith("zoomed")


def main():
    for path in sys.argv[1:]:
        rs = [json.loads(line) for line in open(path)]
        for k in sorted({r["k"] for r in rs}):
            R = [r for r in rs if r["k"] == k]
            Z = [r for r in R if r["reached_zoom"]]
            copies = [r for r in Z if r["copy"]]
            new = [r for r in Z if not r["copy"]]
            print(
                f"\n===== {path}  K={k}  index {R[0]['index_images']} images; queries {len(R)} "
                f"({sum(r['copy'] for r in R)} copies, {sum(not r['copy'] for r in R)} new)"
            )
            print(
                f"reach zoom: {len(copies)} copies, {len(new)} new "
                f"(not reaching: new images matched earlier {sum((not r['copy']) and r['top_id'] is not None and not r['reached_zoom'] for r in R)}, "
                f"new too small {sum((not r['copy']) and r['top_id'] is None and not r['reached_zoom'] for r in R)})"
            )
            found = [r for r in copies if zoom_found(r) and r["top_right"]]
            wrong = [r for r in copies if zoom_found(r) and not r["top_right"]]
            fp = [r for r in new if zoom_found(r)]
            print(
                f"zoomed finds (top-1 right): {len(found)}; zoomed wrong top on copies: {len(wrong)}; "
                f"zoomed matches on new images (FP): {len(fp)}"
            )
            for which in ("dm", "all"):
                if which == "all" and k >= 400:
                    continue  # no full passes at K=400 (every keypoint looks up already)
                print(
                    f"  -- evidence from {'direct+mirrored' if which == 'dm' else 'direct+mirrored+full passes'}"
                )
                for r in found:
                    e = ev(r, which)
                    print(
                        f"   FOUND {r['transform']:>16} q{r['q']}: max {e['max']} 2nd {e['second']} "
                        f">=2:{e['ge'][2]} >=3:{e['ge'][3]} true votes {e['true_per']} tried(vote) {e['tried_vote']} "
                        f"fitted(vote) {e['fitted_vote']} fitted(any) {e['fitted_any']} hints {e['hints']} "
                        f"max inl {e['inl']}; zoom: inl {r['zoom'][0]['max_inliers']} true votes {r['zoom'][0]['true_votes']} max {r['zoom'][0]['max']}"
                    )
                for r in fp:
                    e = ev(r, which)
                    print(f"   FP    {r['transform']:>16} q{r['q']}: max {e['max']} fitted {e['fitted_any']}")
                for label, group in (("copies (all reaching zoom)", copies), ("new images", new)):
                    E = [ev(r, which) for r in group]
                    n = len(E)
                    if not n:
                        continue
                    mx = np.array([e["max"] for e in E])
                    row = "  ".join(f">={v}:{(mx >= v).mean():6.1%}" for v in range(1, 7))
                    print(f"   {label:28s} n={n:4d} max votes {row}")
                    print(f"   {'':28s}        max-votes hist {sorted(Counter(mx.tolist()).items())}")
                    sec = np.array([e["second"] for e in E])
                    print(
                        f"   {'':28s}        second>=2 {(sec >= 2).mean():.1%}; n(>=2 votes)>=2 "
                        f"{np.mean([e['ge'][2] >= 2 for e in E]):.1%}; any image >=3 {np.mean([e['ge'][3] >= 1 for e in E]):.1%}"
                    )
                    print(
                        f"   {'':28s}        tried by votes {np.mean([e['tried_vote'] > 0 for e in E]):.1%}; "
                        f"fitted by votes {np.mean([e['fitted_vote'] > 0 for e in E]):.1%}; "
                        f"fitted any (incl. global hints) {np.mean([e['fitted_any'] > 0 for e in E]):.1%}; "
                        f"had hints {np.mean([e['hints'] > 0 for e in E]):.1%}; "
                        f"max inliers (fitted) {sorted(Counter(e['inl'] for e in E if e['fitted_any']).items())}"
                    )
                    if group is copies:
                        tv = np.array([e["true"] for e in E])
                        print(
                            f"   {'':28s}        true-image votes hist {sorted(Counter(tv.tolist()).items())}"
                        )
                # gates
                Ef = [ev(r, which) for r in found]
                En = [ev(r, which) for r in new]
                print("   gate                         keeps finds   new images skipping zoom")
                for v in range(1, 6):
                    keep = sum(e["max"] >= v for e in Ef)
                    skip = np.mean([e["max"] < v for e in En]) if En else float("nan")
                    print(f"   max votes >= {v}               {keep}/{len(Ef)}          {skip:.1%}")
                for name, f in (
                    ("fitted by votes", lambda e: e["fitted_vote"] > 0),
                    ("tried by votes", lambda e: e["tried_vote"] > 0),
                    ("fitted any (incl hints)", lambda e: e["fitted_any"] > 0),
                    ("tried any (incl hints)", lambda e: e["tried_any"] > 0),
                ):
                    keep = sum(f(e) for e in Ef)
                    skip = np.mean([not f(e) for e in En]) if En else float("nan")
                    print(f"   {name:28s} {keep}/{len(Ef)}          {skip:.1%}")
            zm = [r["timings"].get("zoomed", 0) for r in new]
            zs = [r["local_ms"] - r["first_search_ms"] for r in new]
            el = [r["elapsed_ms"] for r in new]
            if new:
                print(
                    f"  time, new images reaching zoom: zoomed pass (timings['zoomed']) mean {np.mean(zm):.1f} ms "
                    f"median {np.median(zm):.1f}; zoom incl. re-decode (local - first search) mean {np.mean(zs):.1f}; "
                    f"whole query mean {np.mean(el):.1f} ms median {np.median(el):.1f}"
                )


if __name__ == "__main__":
    main()
