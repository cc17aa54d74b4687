"""Which hash bits to key the postings on: recall of true pairs against the rows a probe reads.

Research script (issue 12), on the output of ``key_pairs.py``. For a key order (the bits of a
patch hash, the key being its first ``W``) it simulates the probes of :mod:`imgsearch.store.postings`
(the ``PROBE_MASKS`` over each query hash's ``PROBE_BITS`` least confident key bits, by its
margins): **recall** is the share of true pairs within the radius whose indexed hash one of the
query's probes reaches; **rows** the mean number of the index's voting rows a query hash's probes
read (scaled to rows per bucket as at the index's own width). Compares the current
``RELIABLE_ORDER`` with orders chosen greedily for balance among the most reliable bits.

    .venv/bin/python scripts/research/key_bits.py /tmp/keybits/tune.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from imgsearch.store import postings as P

RADIUS = 8


def bits_of(codes: np.ndarray) -> np.ndarray:
    """``(N, 64)`` uint8: bit b of each code (b as in imgsearch.hashing)."""
    return ((codes[:, None] >> np.arange(63, -1, -1, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)


def keys(bits: np.ndarray, order: list[int], w: int) -> np.ndarray:
    weights = (1 << np.arange(w - 1, -1, -1)).astype(np.int64)
    return bits[:, order[:w]].astype(np.int64) @ weights


def probes(qbits: np.ndarray, margins: np.ndarray, order: list[int], w: int, n_probes: int = 32) -> np.ndarray:
    """``(Q, T)`` int64 probe keys of each query hash."""
    k = keys(qbits, order, w)
    least = np.argsort(margins[:, order[:w]], axis=1, kind="stable")[:, : min(P.PROBE_BITS, w)]
    value = (1 << (w - 1 - least)).astype(np.int64)  # key bit of each least confident position
    masks = np.zeros((len(k), n_probes), np.int64)
    for t, m in enumerate(P.PROBE_MASKS[:n_probes]):
        for r in range(least.shape[1]):
            if (m >> r) & 1:
                masks[:, t] |= value[:, r]
    return k[:, None] ^ masks


def evaluate(d: dict, order: list[int], w: int, n_probes: int = 32) -> tuple[float, float]:
    qb, sb, rb = d["qbits"], d["sbits"], d["rbits"]
    near = d["near"]
    pk = probes(qb[near], d["margins"][near], order, w, n_probes)
    sk = keys(sb[near], order, w)
    recall = float((pk == sk[:, None]).any(axis=1).sum() / len(d["near_all"]))
    rk = keys(rb, order, w)
    counts = np.bincount(rk, minlength=1 << w)
    sample = d["sample"]
    pq = probes(qb[sample], d["margins"][sample], order, w, n_probes)
    rows = float(counts[pq].sum(axis=1).mean())
    return recall, rows


def greedy(d: dict, w: int, pool: int, alpha: float) -> list[int]:
    """An order: at each place the bit, among the ``pool`` most reliable left, that leaves the
    fewest colliding pairs of voting rows (sum of squared bucket sizes), times (1 + alpha * flip rate)."""
    rb, flip = d["rbits"], d["flip"]
    left = [b for b in P.RELIABLE_ORDER if b != 0]
    order: list[int] = []
    key = np.zeros(len(rb), np.int64)
    for _ in range(w):
        best, best_score = None, None
        for b in left[:pool]:
            k = key * 2 + rb[:, b]
            _, c = np.unique(k, return_counts=True)
            score = float((c.astype(np.float64) ** 2).sum()) * (1 + alpha * flip[b])
            if best_score is None or score < best_score:
                best, best_score = b, score
        order.append(best)
        left.remove(best)
        key = key * 2 + rb[:, best]
    return order + left + [0]


def main() -> None:
    z = np.load(sys.argv[1])
    q, s, rows, margins = z["q"], z["s"], z["rows"], z["margins"]
    d = {"qbits": bits_of(q), "sbits": bits_of(s), "rbits": bits_of(rows), "margins": margins}
    dist = np.bitwise_count(q ^ s)
    d["near"] = np.flatnonzero(dist <= RADIUS)
    d["near_all"] = d["near"]
    d["flip"] = (d["qbits"] != d["sbits"]).mean(axis=0)
    rng = np.random.default_rng(0)
    d["sample"] = rng.choice(len(q), 5000, replace=False)
    print(f"{len(q)} true pairs, {len(d['near'])} within {RADIUS} bits; {len(rows)} voting rows")
    for w in (16, 22):  # how often two voting rows share a key, against uniform codes
        _, c = np.unique(keys(d["rbits"], list(P.RELIABLE_ORDER), w), return_counts=True)
        n = float(len(rows))
        print(f"  pairs of rows sharing their first {w} key bits: {(c * (c - 1.0)).sum() / (n * (n - 1)) * 2**w:.1f}x uniform")
    w0 = P.key_width(len(rows) // 240)
    current = list(P.RELIABLE_ORDER)
    for w in (w0, w0 + 2):
        r, c = evaluate(d, current, w)
        print(f"W={w} current order: recall {r:.4f}, rows read per query hash {c:.1f}")
        for pool in (4, 8, 16):
            for alpha in (0.0, 5.0, 20.0):
                o = greedy(d, w, pool, alpha)
                r2, c2 = evaluate(d, o, w)
                print(f"   greedy pool {pool:2d} alpha {alpha:4.1f}: recall {r2:.4f} rows {c2:7.1f}  key {o[:w]}")


if __name__ == "__main__":
    main()
