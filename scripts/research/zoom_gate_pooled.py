"""Pooled gate table over the stress records given (default: stress_tune.jsonl stress_report.jsonl
in the current folder), K=400 and K=40 (all pre-zoom passes)."""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoom_gate_analyse import ev, zoom_found

files = sys.argv[1:] or ["stress_tune.jsonl", "stress_report.jsonl"]
for k, which in ((400, "dm"), (40, "dm"), (40, "all")):
    F, N = [], []
    for f in files:
        for line in open(f):
            r = json.loads(line)
            if r["k"] != k or not r["reached_zoom"]:
                continue
            if r["copy"] and zoom_found(r) and r["top_right"]:
                F.append(ev(r, which))
            elif not r["copy"]:
                N.append(ev(r, which))
    print(f"K={k} evidence={which}: finds {len(F)}, new reaching zoom {len(N)}")
    for v in range(1, 6):
        print(
            f"  max>={v}: keeps {sum(e['max'] >= v for e in F)}/{len(F)}, new skip {np.mean([e['max'] < v for e in N]):.1%}"
        )
    for name, g in (
        ("n imgs >=2 votes >=2", lambda e: e["ge"][2] >= 2),
        ("fitted any", lambda e: e["fitted_any"] > 0),
        ("tried by votes", lambda e: e["tried_vote"] > 0),
    ):
        print(
            f"  {name}: keeps {sum(g(e) for e in F)}/{len(F)}, new skip {np.mean([not g(e) for e in N]):.1%}"
        )
    print(
        "  true-image votes of finds:",
        sorted(e["true"] for e in F),
        " max votes of finds:",
        sorted(e["max"] for e in F),
    )
