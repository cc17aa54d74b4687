"""Scoring functions of the evaluation, pure and on plain lists or arrays.

Conventions shared by every function: one entry per query, in the same order in every argument;
``truth[i]`` is the path of query ``i``'s original, or ``None`` for a distractor query (a query whose
original was never indexed). A *positive* query is one with an original.

Empty inputs give ``nan`` (there is nothing to average), never an error: an evaluation may
legitimately have no distractors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["fp_rate", "hit_at_1", "latency_percentiles", "micro_ap", "recall_at_decision"]


def _check_same_length(**arrays: Sequence[object]) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"one entry per query is needed in each argument, got lengths {lengths}")


def hit_at_1(top: Sequence[str | None], truth: Sequence[str | None]) -> float:
    """Fraction of positive queries whose first match is their original.

    Parameters
    ----------
    top : sequence of (str or None), length n_queries
        Path of each query's first match (the engine judged it a copy), ``None`` when the engine
        found no copy.
    truth : sequence of (str or None), length n_queries
        Each query's original, ``None`` for distractor queries (which are ignored here).

    Returns
    -------
    float
        In [0, 1]; ``nan`` when there is no positive query.
    """
    _check_same_length(top=top, truth=truth)
    pairs = [(t, g) for t, g in zip(top, truth, strict=True) if g is not None]
    if not pairs:
        return float("nan")
    return sum(t == g for t, g in pairs) / len(pairs)


def recall_at_decision(found: Sequence[Sequence[str]], truth: Sequence[str | None]) -> float:
    """Fraction of positive queries whose original is among the matches, at any rank.

    Parameters
    ----------
    found : sequence of sequences of str, length n_queries
        The paths the engine judged copies of each query (its decision), best first.
    truth : sequence of (str or None), length n_queries
        Each query's original, ``None`` for distractor queries (ignored).

    Returns
    -------
    float
        In [0, 1], at least :func:`hit_at_1`; ``nan`` when there is no positive query.
    """
    _check_same_length(found=found, truth=truth)
    pairs = [(f, g) for f, g in zip(found, truth, strict=True) if g is not None]
    if not pairs:
        return float("nan")
    return sum(g in f for f, g in pairs) / len(pairs)


def fp_rate(n_matches: Sequence[int], truth: Sequence[str | None]) -> float:
    """Fraction of distractor queries for which the engine judged anything a copy.

    Parameters
    ----------
    n_matches : sequence of int, length n_queries
        Number of matches returned for each query.
    truth : sequence of (str or None), length n_queries
        Each query's original; only queries with ``None`` (distractors) count.

    Returns
    -------
    float
        In [0, 1]; ``nan`` when there is no distractor query.
    """
    _check_same_length(n_matches=n_matches, truth=truth)
    flags = [n > 0 for n, g in zip(n_matches, truth, strict=True) if g is None]
    if not flags:
        return float("nan")
    return sum(flags) / len(flags)


def micro_ap(
    scores: Sequence[float] | np.ndarray, is_true: Sequence[bool] | np.ndarray, n_positives: int
) -> float:
    """Micro average precision (µAP) over pooled predictions, as in the DISC21 / ISC benchmark.

    All ``(query, candidate, score)`` predictions of all queries are pooled and sorted by score,
    highest first; among equal scores the false predictions come first (the pessimistic order of
    the ISC reference, so that constant scores cannot earn a good AP). Precision and recall are
    taken at every prefix of that list, and AP is the area under the precision-recall curve as a
    sum of rectangles::

        AP = sum over true predictions of (precision at its rank) / n_positives

    Recall is relative to ``n_positives``, so ground-truth pairs never predicted lower the AP.

    Parameters
    ----------
    scores : (n_predictions,) float array-like
        Score of each prediction; higher means surer.
    is_true : (n_predictions,) bool array-like
        Whether the prediction's candidate is the query's original. Each query has at most one
        original, so at most one of its predictions is true.
    n_positives : int
        Ground-truth pairs: the number of queries that have an original in the index.

    Returns
    -------
    float
        In [0, 1]; ``nan`` when ``n_positives`` is 0.

    Raises
    ------
    ValueError
        If the lengths differ, ``n_positives`` is negative, or there are more true predictions
        than ``n_positives``.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(is_true, dtype=bool).ravel()
    if s.shape != t.shape:
        raise ValueError(f"scores and is_true must have the same length, got {len(s)} and {len(t)}")
    if n_positives < 0:
        raise ValueError(f"n_positives must be >= 0, got {n_positives}")
    if t.sum() > n_positives:
        raise ValueError(
            f"{int(t.sum())} true predictions but only n_positives={n_positives} ground-truth pairs"
        )
    if n_positives == 0:
        return float("nan")
    # lexsort: last key is primary. Descending score, then false before true among ties.
    order = np.lexsort((t, -s))
    t = t[order]
    precision = np.cumsum(t) / np.arange(1, len(t) + 1)
    return float(precision[t].sum() / n_positives)


def latency_percentiles(
    elapsed_ms: Sequence[float] | np.ndarray, percentiles: Sequence[float] = (50.0, 95.0)
) -> tuple[float, ...]:
    """Percentiles of per-query latencies (linear interpolation, as :func:`numpy.percentile`).

    Parameters
    ----------
    elapsed_ms : (n_queries,) float array-like
        Wall time of each query, in milliseconds.
    percentiles : sequence of float
        Percentiles in [0, 100]; default p50 and p95.

    Returns
    -------
    tuple of float
        One value (ms) per percentile; all ``nan`` for an empty input.
    """
    ms = np.asarray(elapsed_ms, dtype=np.float64).ravel()
    bad = [p for p in percentiles if not 0.0 <= p <= 100.0]
    if bad:
        raise ValueError(f"percentiles must be in [0, 100], got {bad}")
    if ms.size == 0:
        return tuple(float("nan") for _ in percentiles)
    return tuple(float(v) for v in np.percentile(ms, list(percentiles)))


def upper_bound(failures: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen as ``failures`` out of ``n`` trials.

    The rate ``p`` at which seeing at most ``failures`` has probability ``1 - confidence``; for 0 of
    ``n`` it is ``1 - (1 - confidence) ** (1 / n)``, about ``3 / n`` at 95 %. Found by bisection on
    the binomial distribution function (60 halvings: exact to double precision).

    Returns
    -------
    float
        In (0, 1]; ``nan`` when ``n`` is 0.
    """
    if n <= 0:
        return float("nan")
    if not 0 <= failures <= n:
        raise ValueError(f"failures must be in [0, {n}], got {failures}")
    if failures == n:
        return 1.0
    alpha = 1.0 - confidence
    lo, hi = failures / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _binomial_cdf(failures, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0 if k < n else 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q for i in range(k + 1)]
    top = max(terms)
    return math.exp(top) * sum(math.exp(t - top) for t in terms)
