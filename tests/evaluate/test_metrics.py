"""Scoring functions of imgsearch.evaluate.metrics against hand-computed values and a slow reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imgsearch.evaluate.metrics import fp_rate, hit_at_1, latency_percentiles, micro_ap, recall_at_decision

# Five queries: 0, 1, 2 and 4 have originals (positives), 3 is a distractor.
TRUTH = ["a", "c", "c", None, "d"]
TOP = ["a", "b", None, "x", "d"]  # first match of each query, None when nothing was judged a copy
FOUND = [["a"], ["b", "c"], [], ["x"], ["e", "d"]]


def test_hit_at_1_counts_only_positives_and_first_matches():
    # Hits: query 0 ("a") and query 4 ("d"); query 1 has its original second; 2 found nothing.
    assert hit_at_1(TOP, TRUTH) == 2 / 4


def test_recall_at_decision_counts_originals_at_any_rank():
    # Query 1 has "c" second, query 4 has "d" second: 3 of 4 positives.
    assert recall_at_decision(FOUND, TRUTH) == 3 / 4
    assert recall_at_decision(FOUND, TRUTH) >= hit_at_1(TOP, TRUTH)


def test_fp_rate_counts_distractor_queries_with_any_match():
    assert fp_rate([len(f) for f in FOUND], TRUTH) == 1.0
    assert fp_rate([1, 0, 3, 0], [None, None, "a", None]) == 1 / 3


def test_empty_groups_give_nan():
    assert math.isnan(hit_at_1(["a"], [None]))
    assert math.isnan(recall_at_decision([[]], [None]))
    assert math.isnan(fp_rate([1], ["a"]))
    assert math.isnan(micro_ap([], [], 0))
    assert all(math.isnan(v) for v in latency_percentiles([]))


def test_lengths_must_match():
    with pytest.raises(ValueError, match="lengths"):
        hit_at_1(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="same length"):
        micro_ap([0.5, 0.4], [True], 1)


def test_micro_ap_hand_computed():
    # Sorted: 0.9 T, 0.8 F, 0.8 T (false first among ties), 0.7 F, 0.6 T; 4 ground-truth pairs.
    # Precision at the true predictions: 1/1, 2/3, 3/5.  AP = (1 + 2/3 + 3/5) / 4 = 17/30.
    scores = [0.8, 0.9, 0.6, 0.7, 0.8]
    is_true = [True, True, True, False, False]
    assert micro_ap(scores, is_true, 4) == pytest.approx(17 / 30, abs=1e-12)


def test_micro_ap_ties_are_pessimistic():
    # Constant scores cannot earn a good AP: the order is F, F, T, T, precisions 1/3 and 2/4.
    assert micro_ap([1.0] * 4, [True, False, True, False], 2) == pytest.approx((1 / 3 + 1 / 2) / 2, abs=1e-12)


def test_micro_ap_perfect_and_truncated():
    assert micro_ap([0.9, 0.8], [True, True], 2) == 1.0
    # Ground-truth pairs never predicted lower the AP in proportion.
    assert micro_ap([0.9, 0.8], [True, True], 4) == 0.5
    # Only false predictions.
    assert micro_ap([0.9], [False], 3) == 0.0


def test_micro_ap_refuses_more_true_predictions_than_positives():
    with pytest.raises(ValueError, match="n_positives=1"):
        micro_ap([0.9, 0.8], [True, True], 1)
    with pytest.raises(ValueError, match=">= 0"):
        micro_ap([], [], -1)


def _reference_micro_ap(scores, is_true, n_positives):
    """The ISC formulation: sort (score, not true) descending, AP = Σ Δrecall · precision."""
    order = sorted(range(len(scores)), key=lambda i: (scores[i], not is_true[i]), reverse=True)
    ap, tp, prev_recall = 0.0, 0, 0.0
    for rank, i in enumerate(order, start=1):
        tp += is_true[i]
        recall = tp / n_positives
        ap += (recall - prev_recall) * (tp / rank)
        prev_recall = recall
    return ap


def test_micro_ap_matches_slow_reference_on_seeded_data():
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        scores = rng.integers(0, 8, size=n) / 8.0  # coarse scores: many ties
        is_true = rng.random(n) < 0.4
        n_pos = int(is_true.sum()) + int(rng.integers(0, 5))
        if n_pos == 0:
            continue
        expected = _reference_micro_ap(scores.tolist(), is_true.tolist(), n_pos)
        # Same sums in another order: agree to float rounding.
        assert micro_ap(scores, is_true, n_pos) == pytest.approx(expected, abs=1e-12)
        perm = rng.permutation(n)
        assert micro_ap(scores[perm], is_true[perm], n_pos) == pytest.approx(expected, abs=1e-12)


def test_latency_percentiles_interpolate_linearly():
    p50, p95 = latency_percentiles([4.0, 1.0, 3.0, 2.0])
    assert p50 == pytest.approx(2.5)
    assert p95 == pytest.approx(1.0 + 0.95 * 3.0)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        latency_percentiles([1.0], (101.0,))
