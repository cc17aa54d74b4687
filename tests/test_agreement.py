"""imgsearch.agreement: keypoints of a candidate described again in the aligned query.

The fast paths are checked against slow references (one keypoint at a time, OpenCV's own point
transforms), and the measure itself on Kodak photos: a copy agrees with its original, another
photo under the same map does not, and the padding of a rotated copy is unseen, not disagreement.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import kodak_gray

from imgsearch import agreement as agr
from imgsearch import decide
from imgsearch import keypoints as kp_mod
from imgsearch.config import KeypointConfig
from imgsearch.descriptors import patch_descriptors
from imgsearch.extract import local_features
from imgsearch.patches import extract_patches

CONFIG = KeypointConfig()


def _stored(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Photo ``i`` at the index's 210 px and its stored (rows, descriptors, hashes) as indexed."""
    gray = kodak_gray(i)
    small, _ = kp_mod.downscale(gray, CONFIG.max_side)
    lf = local_features(gray, CONFIG, CONFIG.budget, CONFIG.patch_scales, max(gray.shape))
    return small, lf.keypoints, lf.descriptors, lf.patch_hash[:, 0, :]


def _similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * np.cos(np.radians(angle)), scale * np.sin(np.radians(angle))
    return np.array([[c, -s, tx], [s, c, ty]])


def _slow_map(rows: np.ndarray, transform: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference for map_keypoints: one keypoint at a time, OpenCV's point transform on the inverse
    and central finite differences (h = 1e-3 px) for the local linear map."""
    inverse = np.linalg.inv(transform if transform.shape == (3, 3) else np.vstack([transform, [0, 0, 1]]))
    xy, size, angle = [], [], []
    h = 1e-3
    for x, y, s, a, _ in rows.astype(np.float64):
        pts = np.array([[[x, y], [x + h, y], [x - h, y], [x, y + h], [x, y - h]]])
        out = cv2.perspectiveTransform(pts, inverse)[0]
        jx, jy = (out[1] - out[2]) / (2 * h), (out[3] - out[4]) / (2 * h)
        d = np.cos(np.radians(a)) * jx + np.sin(np.radians(a)) * jy
        xy.append(out[0])
        size.append(s * np.sqrt(abs(jx[0] * jy[1] - jx[1] * jy[0])))
        angle.append(np.degrees(np.arctan2(d[1], d[0])) % 360.0)
    return np.array(xy), np.array(size), np.array(angle)


@pytest.mark.parametrize("kind", ["similarity", "affine", "homography"])
def test_map_keypoints_matches_a_slow_reference(kind: str) -> None:
    rng = np.random.default_rng(3)
    rows = np.column_stack(
        [rng.uniform(0, 200, (50, 2)), rng.uniform(4, 40, 50), rng.uniform(0, 360, 50), rng.uniform(0, 1, 50)]
    ).astype(np.float32)
    transform = _similarity(33.0, 1.7, 12.0, -5.0)
    if kind == "affine":
        transform = transform @ np.array([[1.0, 0.3, 0.0], [0.0, 0.8, 0.0], [0.0, 0.0, 1.0]])
    elif kind == "homography":
        transform = np.vstack([transform, [1e-3, -6e-4, 1.0]])
    xy, size, angle = agr.map_keypoints(rows, transform)
    ref_xy, ref_size, ref_angle = _slow_map(rows, transform)
    np.testing.assert_allclose(xy, ref_xy, atol=1e-6)
    np.testing.assert_allclose(size, ref_size, rtol=1e-5)  # finite differences: ~1e-7 relative
    np.testing.assert_allclose(np.mod(angle - ref_angle + 180.0, 360.0) - 180.0, 0.0, atol=1e-4)


def test_map_keypoints_refuses_a_singular_map() -> None:
    rows = np.ones((3, 5), np.float32)
    for transform in (np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]]), np.zeros((3, 3))):
        with pytest.raises(np.linalg.LinAlgError):
            agr.map_keypoints(rows, transform)


def test_agreement_matches_a_slow_reference() -> None:
    """Each keypoint's state equals cutting and describing its one patch on its own."""
    small, rows, desc, hashes = _stored(5)
    query = cv2.resize(small, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    transform = _similarity(0.0, 1.25, 0.0, 0.0)  # query pixels -> stored pixels
    fill = agr.fill_mask(query)
    fast = agr.agreement(query, fill, rows, transform, desc, hashes, limit=None)
    xy, size, angle = agr.map_keypoints(rows, transform)
    h, w = query.shape
    for k in range(len(rows)):
        half = size[k] / 2
        inside = -0.5 <= xy[k, 0] - half and xy[k, 0] + half <= w - 0.5
        inside &= -0.5 <= xy[k, 1] - half and xy[k, 1] + half <= h - 0.5
        probes = [xy[k] + np.array(o) * size[k] for o in agr._PROBES]
        on_fill = np.mean([fill[min(max(round(py), 0), h - 1), min(max(round(px), 0), w - 1)] for px, py in probes])
        if not (inside and size[k] >= agr.MIN_SIDE and on_fill <= agr.FILL_MAX):
            assert fast.state[k] == agr.UNSEEN, k
            continue
        one = kp_mod.Keypoints(
            xy=xy[k : k + 1].astype(np.float32), size=size[k : k + 1].astype(np.float32),
            angle=angle[k : k + 1].astype(np.float32), response=np.zeros(1, np.float32),
            descriptors=np.zeros((1, 0), np.uint8), shape=(h, w),
        )  # fmt: skip
        again = patch_descriptors(extract_patches(query, one, (1.0,), side=agr.DESCRIBE_SIDE))[0]
        close = np.linalg.norm(again - desc[k].astype(np.float32)) < agr.AGREE_DISTANCE
        assert fast.state[k] == (agr.AGREE if close else agr.DISAGREE), k
    assert fast.count(agr.AGREE) > 0 and fast.count(agr.UNSEEN) < len(rows)
    # With a limit, the first ``limit`` keypoints that can be seen keep their states; the rest are
    # unseen; so are those within the radius of an excluded point.
    seen = np.nonzero(fast.state != agr.UNSEEN)[0]
    capped = agr.agreement(query, fill, rows, transform, desc, hashes, limit=50)
    np.testing.assert_array_equal(capped.state[seen[:50]], fast.state[seen[:50]])
    assert np.all(capped.state[seen[50:]] == agr.UNSEEN) and capped.count(agr.UNSEEN) == len(rows) - 50
    centre = xy[seen[0]][None, :]
    excluded = agr.agreement(query, fill, rows, transform, desc, hashes, exclude=centre, radius=10.0, limit=None)
    near = np.hypot(*(xy - centre).T) <= 10.0
    assert near.sum() >= 1 and np.all(excluded.state[near] == agr.UNSEEN)
    np.testing.assert_array_equal(excluded.state[~near], fast.state[~near])
    # No fill mask (None) is an all-false one.
    none = agr.agreement(query, None, rows, transform, desc, hashes, limit=None)
    zeros = agr.agreement(query, np.zeros(query.shape, bool), rows, transform, desc, hashes, limit=None)
    np.testing.assert_array_equal(none.state, zeros.state)


def _copy_and_other(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Photo ``i``'s 210 px image rescaled by 0.7 and recompressed, another photo at that size,
    and the map from them to photo ``i``."""
    small = kp_mod.downscale(kodak_gray(i), CONFIG.max_side)[0]
    smaller = cv2.resize(small, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", smaller, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    copy = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    other_small = kp_mod.downscale(kodak_gray((i + 7) % 24), CONFIG.max_side)[0]
    other = cv2.resize(other_small, (copy.shape[1], copy.shape[0]), interpolation=cv2.INTER_AREA)
    return copy, other, _similarity(0.0, 1 / 0.7, 0.0, 0.0)


@pytest.mark.parametrize("i", [0, 8])
def test_staged_agreement_describes_the_same_keypoints_and_stops_when_told(i: int) -> None:
    """Described STAGE at a time, each keypoint gets the state the one-batch run gives it; a stage
    that is ``enough`` leaves the rest unseen, and ``enough`` is asked after every stage but the last."""
    _, rows, desc, hashes = _stored(i)
    copy, _, transform = _copy_and_other(i)
    fill = agr.fill_mask(copy)
    whole = agr.agreement(copy, fill, rows, transform, desc, hashes)
    judged = np.flatnonzero(whole.state != agr.UNSEEN)
    assert len(judged) == agr.LIMIT  # two stages of 64
    asked: list[int] = []

    def never(partial: agr.Agreement) -> bool:
        asked.append(partial.count(agr.AGREE) + partial.count(agr.DISAGREE))
        return False

    staged = agr.agreement(copy, fill, rows, transform, desc, hashes, enough=never)
    np.testing.assert_array_equal(staged.state, whole.state)
    assert asked == [agr.STAGE]
    first = agr.agreement(copy, fill, rows, transform, desc, hashes, enough=lambda partial: True)
    np.testing.assert_array_equal(first.state[judged[: agr.STAGE]], whole.state[judged[: agr.STAGE]])
    assert np.all(first.state[judged[agr.STAGE :]] == agr.UNSEEN)


@pytest.mark.parametrize("i", [0, 3, 8, 14, 21])
def test_the_verdict_stops_early_only_on_a_clear_copy(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """decide's agreement with the share it needs: a copy settles in the first stage (within 0.1 of
    its full share, far above what it needs); another photo is always measured on every keypoint,
    so its share is exactly the full one."""
    described: list[int] = []
    real = agr.agreement

    def counted(*args, **kwargs) -> agr.Agreement:  # type: ignore[no-untyped-def]
        result = real(*args, **kwargs)
        described.append(result.count(agr.AGREE) + result.count(agr.DISAGREE))
        return result

    monkeypatch.setattr(decide.agr, "agreement", counted)
    _, rows, desc, hashes = _stored(i)
    copy, other, transform = _copy_and_other(i)
    fit = decide.CandidateFit(
        image=0, votes=10, model=transform, kind="similarity", inliers=40,
        inlier_pairs=np.zeros((0, 2), np.int64), pairs=np.zeros((0, 2), np.int64), coverage=1.0,
        scale=1.0, rows=rows, descriptors=desc, patch_hash=hashes, hash_scale=1.0,
        global_hash=np.zeros(8, np.uint8),
    )  # fmt: skip
    none = np.zeros((0, 2))
    for query, clear in ((copy, True), (other, False)):
        fill = agr.fill_mask(query)
        full = decide._agreement(fit, query, fill, none, 10.0, transform, 70.0)
        staged = decide._agreement(fit, query, fill, none, 10.0, transform, 70.0, needed=0.4)
        if clear:
            assert full >= 0.4 + decide.EARLY_MARGIN and staged >= 0.4 + decide.EARLY_MARGIN
            assert abs(staged - full) <= 0.1, (staged, full)
            assert described[-2:] == [agr.LIMIT, agr.STAGE]  # the full run, then the first stage alone
        else:
            assert staged == full < 0.4
            assert described[-2:] == [agr.LIMIT, agr.LIMIT]
    # A shared region over the left three quarters of the copy: the first stage judges too few of
    # its keypoints outside it (fewer than EARLY_JUDGED), so the copy is measured on all of them.
    h, w = copy.shape
    grid = np.stack(np.meshgrid(np.arange(0, 0.75 * w, 8.0), np.arange(0, h, 8.0)), -1).reshape(-1, 2)
    fill = agr.fill_mask(copy)
    full = decide._agreement(fit, copy, fill, grid, 10.0, transform, 70.0)
    staged = decide._agreement(fit, copy, fill, grid, 10.0, transform, 70.0, needed=0.4)
    assert staged == full >= 0.4 + decide.EARLY_MARGIN
    assert described[-2:] == [agr.LIMIT, agr.LIMIT]


@pytest.mark.parametrize("i", [0, 3, 8, 14, 21])
def test_a_copy_agrees_and_another_photo_does_not(i: int) -> None:
    """A rescaled, recompressed copy aligned by its true map agrees over most of the image; another
    photo under the same map agrees with few keypoints (measured: 0.78-0.94 and 0.00-0.06 on these;
    by patch hashes 0.43-0.75 and 0.00-0.05)."""
    small, rows, desc, hashes = _stored(i)
    smaller = cv2.resize(small, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", smaller, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    copy = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    transform = _similarity(0.0, 1 / 0.7, 0.0, 0.0)
    good = agr.agreement(copy, agr.fill_mask(copy), rows, transform, desc, hashes)
    other_small = kp_mod.downscale(kodak_gray((i + 7) % 24), CONFIG.max_side)[0]
    other = cv2.resize(other_small, (copy.shape[1], copy.shape[0]), interpolation=cv2.INTER_AREA)
    bad = agr.agreement(other, agr.fill_mask(other), rows, transform, desc, hashes)
    assert good.fraction() >= 0.75, good.fraction()
    assert bad.fraction() <= 0.15, bad.fraction()
    # The hash comparison (indexes without patch descriptors) tells them apart too.
    assert agr.agreement(copy, agr.fill_mask(copy), rows, transform, None, hashes).fraction() >= 0.35
    assert agr.agreement(other, agr.fill_mask(other), rows, transform, None, hashes).fraction() <= 0.15


@pytest.mark.parametrize("i", [0, 3, 8])
def test_padding_is_unseen_and_other_content_disagrees(i: int) -> None:
    """The left half of the photo replaced by black padding (as a rotation or a border leaves):
    keypoints whose patch lies on it are unseen, not disagreeing, and the rest still agrees. The
    same half filled with noise (other content) makes them disagree."""
    small, rows, desc, hashes = _stored(i)
    half = small.shape[1] // 2
    padded, noisy = small.copy(), small.copy()
    padded[:, :half] = 0
    noisy[:, :half] = np.random.default_rng(i).integers(0, 256, noisy[:, :half].shape, dtype=np.uint8)
    left = rows[:, 0] + rows[:, 2] * 0.5 < half - 2  # the whole patch on the left half
    right = rows[:, 0] - rows[:, 2] * 0.5 > half + 2
    assert left.sum() >= 20 and right.sum() >= 20
    black = agr.agreement(padded, agr.fill_mask(padded), rows, np.eye(2, 3), desc, hashes, limit=None)
    noise = agr.agreement(noisy, agr.fill_mask(noisy), rows, np.eye(2, 3), desc, hashes, limit=None)
    assert np.all(black.state[left] == agr.UNSEEN)
    # What is seen is the untouched half, and patches straddling the edge (measured 0.83-0.85).
    assert black.fraction() >= 0.75, black.fraction()
    seen = left & (noise.state != agr.UNSEEN)
    assert seen.sum() >= 0.5 * left.sum()  # the others hang over the image edge
    assert np.mean(noise.state[seen] == agr.DISAGREE) >= 0.95
    assert noise.fraction() < black.fraction() - 0.2


def test_a_photo_seen_as_itself_is_seen_almost_everywhere() -> None:
    """Fill is padding, not texture: a photo's own keypoints are seen in it (unseen only where a
    patch hangs over the edge), whatever its flat regions (0019's blown-out sky is 38 % flat)."""
    for i in range(24):
        small, rows, desc, hashes = _stored(i)
        result = agr.agreement(small, agr.fill_mask(small), rows, np.eye(2, 3), desc, hashes, limit=None)
        assert result.count(agr.UNSEEN) <= 0.3 * len(rows), (i, result.count(agr.UNSEEN))
        assert result.fraction() >= 0.97, (i, result.fraction())


def _slow_fill(gray: np.ndarray) -> np.ndarray:
    """Reference for fill_mask: flood each flat pixel of the edge, one at a time, through 4-connected
    flat pixels (OpenCV's floodFill), keeping the regions of at least 0.2 % of the image."""
    f = gray.astype(np.float32)
    mean = cv2.blur(f, (5, 5))
    flat = cv2.blur(f * f, (5, 5)) - mean * mean < agr._FLAT_VARIANCE
    h, w = gray.shape
    out = np.zeros((h, w), bool)
    done = np.zeros((h, w), bool)
    edge = [(0, x) for x in range(w)] + [(h - 1, x) for x in range(w)]
    edge += [(y, 0) for y in range(h)] + [(y, w - 1) for y in range(h)]
    for y, x in edge:
        if not flat[y, x] or done[y, x]:
            continue
        mask = np.zeros((h + 2, w + 2), np.uint8)
        cv2.floodFill(flat.astype(np.uint8), mask, (x, y), 2, 0, 0, 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
        region = mask[1:-1, 1:-1].astype(bool)
        done |= region
        if region.sum() >= agr._FILL_MIN_AREA * gray.size:
            out |= region
    return out


@pytest.mark.parametrize("kind", ["plain", "padded", "rotated", "flat corner inside", "many on the edge"])
def test_fill_mask_matches_a_flood_fill_from_the_edge(kind: str) -> None:
    """Fill is the flat regions touching the edge, whether there are none (the plain photo, where
    fill_mask stops early) or some (padding, the corners of a rotation); a flat patch inside is not.
    Few regions on the edge are measured one by one, many by one count: both are checked, with
    regions large enough and too small."""
    gray, _ = kp_mod.downscale(kodak_gray(3), 180)
    if kind == "padded":
        gray = cv2.copyMakeBorder(gray, 12, 12, 20, 20, cv2.BORDER_CONSTANT, value=0)
    elif kind == "rotated":
        h, w = gray.shape
        gray = cv2.warpAffine(gray, cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0), (w, h))
    elif kind == "flat corner inside":
        gray = gray.copy()
        gray[40:70, 50:90] = 128
    elif kind == "many on the edge":  # 7 flat blocks on the top edge: 4 large, 3 below 0.2 % flat
        gray = gray.copy()
        for k, side in enumerate((14, 7, 12, 7, 16, 7, 10)):
            gray[:side, 20 * k + 2 : 20 * k + 2 + side] = 40 + 20 * k
        f = gray.astype(np.float32)
        flat = (cv2.blur(f * f, (5, 5)) - cv2.blur(f, (5, 5)) ** 2 < agr._FLAT_VARIANCE).astype(np.uint8)
        labels = cv2.connectedComponents(flat, connectivity=4)[1]
        edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        assert len(np.unique(edge[edge > 0])) > agr._FEW_EDGE_REGIONS  # so the count is the one used
    fill = agr.fill_mask(gray)
    np.testing.assert_array_equal(fill, _slow_fill(gray))
    assert fill.any() == (kind in ("padded", "rotated", "many on the edge"))
    if kind == "many on the edge":  # the first block is fill, the second too small
        assert fill[:14, 2:16].any() and not fill[:, 22:29].any()
