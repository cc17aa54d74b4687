"""Geometric verification (imgsearch.verify) against slow references and seeded point sets."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import kodak_gray

from imgsearch import KeypointConfig, SearchConfig, arrays
from imgsearch import keypoints as kp_mod
from imgsearch.verify import (
    AFFINE_EXTRA_INLIERS,
    _affine_refusal,
    fit_transform,
    two_nearest_l2,
    unique_pairs,
)

CFG = SearchConfig()


def _points(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` query keypoint positions (x, y) spread over a 180 x 135 keypoint image."""
    return rng.uniform([0, 0], [180, 135], (n, 2))


def _mapped(linear: np.ndarray, shift: np.ndarray, xy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``xy`` through the map ``linear @ p + shift``, with 0.5 px of noise."""
    return xy @ linear.T + shift + rng.normal(0.0, 0.5, xy.shape)


def _pairs(n: int) -> np.ndarray:
    return np.column_stack([np.arange(n), np.arange(n)]).astype(np.int64)


def _with_outliers(query: np.ndarray, stored: np.ndarray, rng: np.random.Generator, k: int):
    """``k`` more correspondences from random query keypoints to random places."""
    query = np.concatenate([query, _points(rng, k)])
    stored = np.concatenate([stored, rng.uniform([0, 0], [210, 157], (k, 2))])
    return query, stored, _pairs(len(query))


@pytest.mark.parametrize("seed", range(5))
def test_a_similarity_is_fitted_as_one(seed: int) -> None:
    """40 keypoints turned 30°, scaled 1.3 and shifted, plus 40 outliers: a similarity with the
    40 inliers; the affine, which explains no more, is not taken."""
    rng = np.random.default_rng(seed)
    c, s = 1.3 * np.cos(np.radians(30)), 1.3 * np.sin(np.radians(30))
    linear, shift = np.array([[c, -s], [s, c]]), np.array([12.0, -7.0])
    xy = _points(rng, 40)
    query, stored, pairs = _with_outliers(xy, _mapped(linear, shift, xy, rng), rng, 40)
    fit = fit_transform(query, stored, pairs, CFG)
    assert not isinstance(fit, str), fit
    model, _, inliers, kind = fit
    assert kind == "similarity" and 38 <= inliers <= 42  # an outlier may land within the threshold
    np.testing.assert_allclose(model[:, :2], linear, atol=0.02)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shear", [0.3, -0.4])
def test_a_shear_is_fitted_by_the_affine_map(seed: int, shear: float) -> None:
    """40 keypoints sheared along x, plus 40 outliers: the similarity fits a band of them, the
    affine map all of them, and it is the one taken, close to the true map."""
    rng = np.random.default_rng(seed)
    linear, shift = np.array([[1.0, shear], [0.0, 1.0]]), np.array([30.0, 5.0])
    xy = _points(rng, 40)
    query, stored, pairs = _with_outliers(xy, _mapped(linear, shift, xy, rng), rng, 40)
    fit = fit_transform(query, stored, pairs, CFG)
    assert not isinstance(fit, str), fit
    model, _, inliers, kind = fit
    assert kind == "affine" and inliers >= 38
    np.testing.assert_allclose(model[:, :2], linear, atol=0.02)
    np.testing.assert_allclose(model[:, 2], shift, atol=1.5)


@pytest.mark.parametrize("seed", range(5))
def test_random_correspondences_fit_nothing(seed: int) -> None:
    """80 correspondences to random places: no map reaches min_inliers, and the reason says why."""
    rng = np.random.default_rng(seed)
    query, stored, pairs = _with_outliers(np.zeros((0, 2)), np.zeros((0, 2)), rng, 80)
    fit = fit_transform(query, stored, pairs, CFG)
    assert isinstance(fit, str) and "RANSAC inliers < min_inliers" in fit, fit


def test_a_reflection_or_a_squeeze_is_not_an_affine_copy() -> None:
    """A left-right flip (the mirrored pass finds those) and a 4x squeeze are refused as affine
    maps; a shear with enough inliers is not."""
    shift = np.zeros((2, 1))
    assert _affine_refusal(np.hstack([np.diag([-1.0, 1.0]), shift]), 40, 12) == "a reflection"
    assert _affine_refusal(np.hstack([np.diag([1.0, 0.25]), shift]), 40, 12).startswith("anisotropy 4.00")
    assert _affine_refusal(np.array([[1.0, 0.4, 3.0], [0.0, 1.0, 0.0]]), 40, 12) == ""
    assert _affine_refusal(np.array([[1.0, 0.4, 3.0], [0.0, 1.0, 0.0]]), 11, 12) == "11 RANSAC inliers < 12"


def test_the_affine_needs_more_inliers_than_the_similarity() -> None:
    """Sheared points, but fewer than min_inliers + AFFINE_EXTRA_INLIERS of them: refused, and the
    reason gives the affine's count against what it needed."""
    rng = np.random.default_rng(1)
    n = CFG.min_inliers + AFFINE_EXTRA_INLIERS - 2
    xy = _points(rng, n)
    query, stored, pairs = _with_outliers(
        xy, _mapped(np.array([[1.0, 0.5], [0.0, 1.0]]), 0.0, xy, rng), rng, 30
    )
    fit = fit_transform(query, stored, pairs, CFG)
    assert isinstance(fit, str) and "; affine: " in fit, fit


@pytest.mark.parametrize(("a", "b"), [(0, 1), (5, 5), (12, 20)])
def test_two_nearest_matches_a_brute_force_scan(a: int, b: int) -> None:
    """The matrix-product nearest neighbours equal a float64 scan over every pair, on real descriptors."""
    config = KeypointConfig()
    query, _ = kp_mod.detect_features(kp_mod.downscale(kodak_gray(a), 210)[0], config)
    stored, _ = kp_mod.detect_features(kp_mod.downscale(kodak_gray(b), 210)[0], config)
    q = query.descriptors.astype(np.float64)
    s = np.rint(stored.descriptors).astype(np.uint8)  # as stored in the index
    nearest, first, second = two_nearest_l2(query.descriptors, s)
    full = ((q[:, None, :] - s[None, :, :].astype(np.float64)) ** 2).sum(axis=2)
    ranked = np.sort(full, axis=1)
    np.testing.assert_array_equal(first, ranked[:, 0])  # exact: integer descriptors
    np.testing.assert_array_equal(second, ranked[:, 1])
    np.testing.assert_array_equal(full[np.arange(len(q)), nearest], ranked[:, 0])
    np.testing.assert_array_equal(nearest, np.argmin(full, axis=1))  # ties: the lowest index
    if a == b:  # an image against itself: every keypoint finds itself at distance 0
        assert np.all(first[: len(s)] == 0)


def test_unique_pairs_equals_numpy_unique_rows() -> None:
    rng = np.random.default_rng(3)
    for n, hi in [(0, 5), (1, 5), (500, 7), (5000, 300_000)]:
        pairs = np.column_stack([rng.integers(0, 400, n), rng.integers(0, hi, n)])
        np.testing.assert_array_equal(unique_pairs(pairs), np.unique(pairs.reshape(-1, 2), axis=0))


def test_distinct_values_by_sorting_equal_numpys_unique() -> None:
    """imgsearch.arrays against np.unique, the slow reference: random integers of several sizes
    and ranges (many repeats, none), empty and single arrays."""
    rng = np.random.default_rng(7)
    for n in (0, 1, 2, 5, 50, 5000):
        for high in (3, 10 * n + 1, 2**40):
            values = rng.integers(0, high, n, dtype=np.int64)
            assert np.array_equal(arrays.distinct(values), np.unique(values))
            assert arrays.count_distinct(values) == len(np.unique(values))
    pairs = rng.integers(0, 20, (300, 2))
    assert np.array_equal(unique_pairs(pairs), np.unique(pairs, axis=0))
