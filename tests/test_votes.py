"""Vote counting (imgsearch.votes) against a slow reference: one image at a time, one query keypoint
at a time, windows enumerated by hand."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch import votes
from imgsearch.store.postings import ANGLE_BINS, SCALE_BINS


def reference(query_kp, image, indexed_geometry, query_geometry, consistent):
    """Votes per image: distinct query keypoints, or the (query keypoint, cell) pairs in the best
    window of orientation differences (ANGLE_WINDOW bins, cyclic) and scale differences
    (SCALE_WINDOW bins), at most the distinct keypoints."""
    out = {}
    for img in sorted(set(image.tolist())):
        sel = image == img
        distinct = len(set(query_kp[sel].tolist()))
        if not consistent:
            out[img] = distinct
            continue
        cells = set()
        for k, ig, qg in zip(query_kp[sel], indexed_geometry[sel], query_geometry[sel], strict=True):
            d_angle = ((int(ig) >> 3) - (int(qg) >> 3)) % ANGLE_BINS
            d_scale = (int(ig) & 7) - (int(qg) & 7)
            cells.add((int(k), d_angle, d_scale))
        best = 0
        half = votes.ANGLE_WINDOW // 2
        for a0 in range(ANGLE_BINS):
            angles = {(a0 + d) % ANGLE_BINS for d in range(-half, half + 1)}
            for s0 in range(-(SCALE_BINS - 1), SCALE_BINS):
                scales = set(range(s0, s0 + votes.SCALE_WINDOW))
                # A keypoint counts once per cell it votes in (not once per window), as defined.
                best = max(best, sum(1 for _, a, s in cells if a in angles and s in scales))
        out[img] = min(best, distinct)
    return out


def hits(seed: int, n: int = 3000, images: int = 400, keypoints: int = 120):
    """Seeded hits: a few images with many votes clustered in one geometry (copies), many with one or
    two scattered ones (chance), repeated (keypoint, image) pairs included."""
    rng = np.random.default_rng(seed)
    image = np.concatenate([rng.integers(0, 5, n // 3), rng.integers(0, images, n - n // 3)])
    query_kp = rng.integers(0, keypoints, n)
    query_geometry = rng.integers(0, 256, n).astype(np.uint8)
    shift = rng.integers(0, ANGLE_BINS, images)[image]
    jitter = rng.integers(-1, 2, n)
    scale = np.clip((query_geometry & 7).astype(np.int64) + rng.integers(0, 2, n), 0, 7)
    angle = ((query_geometry >> 3).astype(np.int64) + shift + jitter) % ANGLE_BINS
    clustered = image < 5
    random = rng.integers(0, 256, n)
    indexed_geometry = np.where(clustered, (angle << 3) | scale, random).astype(np.uint8)
    return query_kp.astype(np.int64), image.astype(np.int64), indexed_geometry, query_geometry


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("consistent", [False, True])
def test_count_is_the_reference(seed: int, consistent: bool) -> None:
    args = hits(seed)
    images, counted = votes.count(*args, consistent)
    assert dict(zip(images.tolist(), counted.tolist(), strict=True)) == reference(*args, consistent)
    if consistent:  # the clustered images keep most of their votes, chance pairs scatter
        assert counted[:5].min() > 3 * np.median(counted[5:])


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("floor", [2, 5, 20, 10_000])
def test_floor_counts_exactly_what_can_reach_it(seed: int, floor: int) -> None:
    """Images with ``floor`` distinct keypoints or more, and those in ``always``, get their exact
    window votes; the others their distinct keypoints, below the floor."""
    args = hits(seed)
    exact = reference(*args, True)
    distinct = reference(*args, False)
    always = np.array([7, 11, 399], np.int64)
    images, counted = votes.count(*args, True, floor, always)
    got = dict(zip(images.tolist(), counted.tolist(), strict=True))
    assert set(got) == set(exact)
    for img, v in got.items():
        if distinct[img] >= floor or img in always:
            assert v == exact[img], img
        else:
            assert v == distinct[img] < floor
    # Which images reach a min_votes at the floor does not change.
    assert {i for i, v in got.items() if v >= floor} == {i for i, v in exact.items() if v >= floor}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("floor", [3, 5, 8])
@pytest.mark.parametrize("batch", [1, 3, 32])
def test_best_below_the_floor_is_the_references_best(seed: int, floor: int, batch: int) -> None:
    """The image with the most exact window votes among those below the floor (at least 2, not
    excluded), ties to the lower id: the reference's, whatever the batch of recounts, although
    count reports upper bounds there."""
    args = hits(seed, n=1500, images=200)
    exact = reference(*args, True)
    distinct = reference(*args, False)
    exclude = np.array([sorted(exact)[7]], np.int64)
    counted = votes.count(*args, True, floor)
    below = [i for i in exact if 2 <= exact[i] < floor and i not in exclude]
    want = max(below, key=lambda i: (exact[i], -i)) if below else None
    got = votes.best_below(*args, True, counted, floor, 2, exclude, batch=batch)
    assert got == (None if want is None else (want, exact[want]))
    # Without consistent votes the distinct keypoints are the votes.
    below = [i for i in distinct if 2 <= distinct[i] < floor and i not in exclude]
    want = max(below, key=lambda i: (distinct[i], -i)) if below else None
    got = votes.best_below(*args, False, votes.count(*args, False), floor, 2, exclude)
    assert got == (None if want is None else (want, distinct[want]))


@pytest.mark.parametrize("seed", [0, 1])
def test_keypoints_per_image_on_sparse_ids_is_the_reference(seed: int) -> None:
    """Image ids as a million-image index gives them (sparse, any order), repeated pairs included:
    the images ascending, each with its distinct query keypoints; every hit's index into them."""
    query_kp, image, _, _ = hits(seed)
    image = np.random.default_rng(seed).permutation(2_000_000)[image]
    images, distinct = votes.keypoints_per_image(query_kp, image)
    assert images.tolist() == sorted(set(image.tolist()))
    assert distinct.tolist() == [len(set(query_kp[image == i].tolist())) for i in images.tolist()]
    _, at, _ = votes._per_image(query_kp, image)
    assert np.array_equal(images[at], image)
