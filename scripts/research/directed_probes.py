"""Query-directed probes: which buckets a query hash should probe, ranked by its own bits' odds.

Research script (issue 12: a new image's probes), on the output of ``key_pairs.py`` (true keypoint
pairs of copies: the query's hash and margins, the indexed hash). Today each query hash probes the
32 ``PROBE_MASKS`` over its 10 least confident key bits, one fixed order for every hash. Here a
model of how often a key bit flips given its margin (40 margin bins, fitted on the pairs of the
even copies, evaluated on the odd ones) scores every subset of a hash's 10 most likely flips by the
probability that exactly those flip; then

* **ranked**: each hash probes its own T most probable subsets;
* **threshold**: every (hash, subset) above one probability threshold is probed, so sure hashes
  probe few buckets and unsure ones many (a budget shared by the query's hashes);
* **rescored 64**: the threshold, among only the 64 first ``PROBE_MASKS``-like subsets of the
  fixed order (cheap enough to run in a query: 64 scores a hash instead of 1,024).

Recall is the share of the true pairs within 8 bits whose indexed key one of the probes reaches
(the exact key always probed), at key width ``W`` (17 for about 1,000 images, 22 for 32,000).

    .venv/bin/python scripts/research/key_pairs.py /tmp/tune_photos --out /tmp/keybits/tune.npz
    .venv/bin/python scripts/research/directed_probes.py /tmp/keybits/tune.npz --width 17 22
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from imgsearch.store import postings as P

RADIUS = 8
K = 10  # the most likely flips whose subsets are scored


def bits_of(codes: np.ndarray) -> np.ndarray:
    return ((codes[:, None] >> np.arange(63, -1, -1, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=Path, help="key_pairs.py's .npz")
    parser.add_argument("--width", type=int, nargs="+", default=[17, 22])
    args = parser.parse_args()
    z = np.load(args.pairs)
    q, s, margins, copy = z["q"], z["s"], z["margins"], z["copy"]
    qb, sb = bits_of(q), bits_of(s)
    near = np.bitwise_count(q ^ s) <= RADIUS
    order = list(P.RELIABLE_ORDER)
    fit, ev = (copy % 2 == 0) & near, (copy % 2 == 1) & near
    subsets = ((np.arange(1 << K)[:, None] >> np.arange(K)) & 1).astype(np.float64)  # (1024, K)
    for w in args.width:
        flipped = qb[:, order[:w]] != sb[:, order[:w]]
        m = margins[:, order[:w]]
        edges = np.quantile(m[fit].ravel(), np.linspace(0, 1, 41)[1:-1])
        b = np.searchsorted(edges, m)
        count = np.bincount(b[fit].ravel(), minlength=40)
        flips = np.bincount(b[fit].ravel(), weights=flipped[fit].ravel(), minlength=40)
        p = np.clip(((flips + 0.5) / (count + 1))[b], 1e-4, 0.4999)
        e = np.flatnonzero(ev)
        truth, pe, me = flipped[e], p[e], m[e]
        # the fixed scheme: PROBE_MASKS over the 10 least confident by margin
        least = np.argsort(me, axis=1, kind="stable")[:, :10]
        inside = truth.sum(1) == np.take_along_axis(truth, least, 1).sum(1)
        code = (np.take_along_axis(truth, least, 1) * (1 << np.arange(10))).sum(1)
        # the directed ones: subsets of the K likeliest flips, by probability
        likely = np.argsort(-pe, axis=1)[:, :K]
        pk = np.take_along_axis(pe, likely, 1)
        score = np.log(pk) @ subsets.T + np.log1p(-pk) @ (1 - subsets).T  # (n, 1024)
        inside_k = truth.sum(1) == np.take_along_axis(truth, likely, 1).sum(1)
        tcode = (np.take_along_axis(truth, likely, 1) * (1 << np.arange(K))).sum(1)
        rank = np.argsort(-score, axis=1)
        position = np.argmax(rank == tcode[:, None], axis=1)
        true_score = score[np.arange(len(e)), tcode]
        print(f"key width {w}: {len(e)} true pairs of the odd copies within {RADIUS} bits")
        print("  probes a hash | fixed PROBE_MASKS | ranked per hash")
        for t in (8, 16, 32, 64):
            fixed = float((inside & np.isin(code, list(P.PROBE_MASKS[:t]))).mean()) if t <= 32 else float("nan")
            print(f"  {t:13d} | {fixed:17.4f} | {float((inside_k & (position < t)).mean()):.4f}")
        # the 64 most probable subsets under the mean flip rate by rank: the candidates of "rescored 64"
        mean_rank_p = np.sort(pe, axis=1)[:, ::-1][:, :K].mean(0)
        prior = np.log(mean_rank_p) @ subsets.T + np.log1p(-mean_rank_p) @ (1 - subsets).T
        candidates = np.argsort(-prior)[:64]
        top = np.sort(score, axis=1)[:, ::-1]
        cand_scores = score[:, candidates]
        in_cand = np.isin(tcode, candidates)
        print("  threshold: mean probes a hash (p90) -> recall | rescored 64: mean probes -> recall")
        for quantile in (0.5, 0.6, 0.7, 0.8, 0.9):
            tau = np.quantile(top[:, :64].ravel(), quantile)
            n_all = (top >= tau).sum(1).clip(1)
            got_all = inside_k & ((true_score >= tau) | (position == 0))
            n_64 = (cand_scores >= tau).sum(1).clip(1)
            got_64 = inside_k & in_cand & ((true_score >= tau) | (tcode == 0))
            print(f"  {n_all.mean():6.1f} ({np.quantile(n_all, 0.9):3.0f}) -> {got_all.mean():.4f}"
                  f" | {n_64.mean():6.1f} -> {got_64.mean():.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
