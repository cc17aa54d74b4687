"""The local tier: crops, rotations, mirrors and overlays are found with the right transform.

Ground truth comes from our own construction of each query, in the indexed image's original pixels
with pixel centres at integer coordinates (OpenCV's convention), so a pixel's outer edge is at -0.5.
Conventions checked here (``imgsearch.local.LocalIndex._geometry``):

* ``footprint``: the query's corners top-left, top-right, bottom-right, bottom-left (in the query's
  own frame), mapped into the original's pixels; the outer edges of the query's corner pixels.
* ``rotation``: degrees, positive when the query is the original turned counter-clockwise on screen,
  i.e. made with ``cv2.getRotationMatrix2D(centre, +angle, 1)``. That matrix maps original to query;
  the fitted model maps query to original, ``[[cos, -sin], [sin, cos]]``, whose
  ``atan2(m10, m00)`` is ``+angle``.
* ``scale``: original pixels per query pixel.
* ``mirrored``: the query is a left-right mirror of (part of) the original; its footprint still
  starts at the query's top-left, which is the top-RIGHT corner of the crop box in the original.

Tolerances (observed on the fixtures with OpenCV 4 / SIFT, max over the photos tested):

========================  ==========  =========
quantity                  tolerance   observed
========================  ==========  =========
crop footprint corner     2.0 px      1.0 px    (2 px at 256 px ≈ 1.6 px at the 210 px index scale)
crop rotation             2°          0.41°
resized crop corner       2.0 px      0.4 px
mirrored crop corner      2.0 px      0.8 px
overlay footprint corner  2.0 px      0.3 px
rotation angle            3°          0.07°
rotated footprint corner  3.0 px      1.04 px   (extrapolated far past the content)
rotated footprint centre  1.5 px      0.78 px
scale                     2 %         0.4 %
========================  ==========  =========
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import KODAK, encode_jpeg, kodak_gray, kodak_rgb

from imgsearch import Index, IndexConfig, KeypointConfig, SearchConfig, decide, merge_results, passes
from imgsearch import keypoints as kp_mod
from imgsearch.local import LocalIndex, hash_pairs
from imgsearch.store import postings
from imgsearch.store.segment import LOCAL_FIELDS

CORNER_TOL = 2.0  # px of the 256 px original, ≈ 1.6 px at the 210 px keypoint scale
CROP_ROTATION_TOL = 2.0  # degrees
ROTATION_TOL = 3.0  # degrees
ROTATED_CORNER_TOL = 3.0  # px; the canvas corners lie outside the photo, so errors are extrapolated
ROTATED_CENTRE_TOL = 1.5  # px
SCALE_RTOL = 0.02

# 0019 is left out of the crop suite: a low-texture photo (200 of 400 keypoints) whose 55 % crop keeps
# 11 inliers and a footprint 6.7 px off: found, but not within CORNER_TOL.
CROP_PHOTOS = [i for i in range(24) if i != 19]
PHOTOS = [0, 3, 8, 14, 21]  # landscape and portrait (0003, 0008), busy and smooth
ANGLES = [37.0, -110.0]
LOCAL = ("local",)
_DEFAULTS = SearchConfig()
ZOOM_SIDE = round(_DEFAULTS.zoom_factor * _DEFAULTS.query_side)  # the zoomed passes' side, 225 px

_WEAK = (  # decide._weak's parts
    r"(?:on fewer than \d+ own inliers|on \d+ votes, below the vote floor \d+"
    r"|at scale [\d.]+ < [\d.]+ \(not a copy too small at query_side\))"
)
REASONS = re.compile(
    r"(zoomed pass: |full pass: )?(mirrored pass: )?(global candidate at \d+ bits: )?"
    r"(a spare below min_votes \d+: )?"
    r"(?:\d+ votes < min_votes \d+"
    r"|\d+ correspondences < min_inliers \d+"
    r"|\d+ orientation-consistent correspondences < min_inliers \d+"
    r"|RANSAC found no transform(?:; affine: (?:no transform|\d+ RANSAC inliers < \d+|a reflection|anisotropy [\d.]+ > [\d.]+))?"
    r"|implausible scale [\d.]+ \(RANSAC, \d+ inliers\)"
    r"|at scale [\d.]+ < [\d.]+ \(not a copy too small at query_side\) on \d+ own inliers < \d+:"
    r" only strong evidence can make it a copy"
    r"|\d+ RANSAC inliers < min_inliers \d+"
    r"(?:; affine: (?:no transform|\d+ RANSAC inliers < \d+|a reflection|anisotropy [\d.]+ > [\d.]+))?"
    r"|\d+ inliers cover \d+% of the query and \d+% of the image < min_coverage \d+%"
    r" \(a shared logo, watermark or text\?\)"
    r"|\d+ of its \d+ inliers are its own and unambiguous < min_own_inliers \d+"
    r"(?:, \d+ on a pattern the query repeats)?: other indexed pictures fit the others too, or they"
    r" match a repeated pattern \(a shared logo, mark, packaging or template\?\)"
    r"|\d+ inliers \(\d+(?: or more)? its own\), but the query agrees with it over \d+% of their overlap < \d+%"
    rf" \(min_agreement(?: \+ \d+% {_WEAK}(?: and {_WEAK})*)?\): it shares a part, not a copy\?"
    r"|\d+ votes, \d+ from outside a region other indexed pictures share < min_votes \d+)"
)


# -- fixtures and query construction ---------------------------------------------------------
def _build(directory: Path, paths: list[Path], config: IndexConfig | None = None) -> Index:
    index = Index.create(directory, config or IndexConfig())
    report = index.add(paths, workers=1)
    assert report.ok and len(report.added) == len(paths), report
    return index


@pytest.fixture(scope="module")
def local_index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    """All 24 fixture photos, default configuration (local tier on). Read-only."""
    index = _build(tmp_path_factory.mktemp("local_index") / "ix", list(KODAK))
    yield index
    index.close()


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Index, Index]:
    """Two disjoint indexes: even-numbered photos and odd-numbered photos. Read-only."""
    yield from _index_pair(tmp_path_factory.mktemp("local_shards"), KODAK[0::2], KODAK[1::2])


def _index_pair(root: Path, first: list[Path], second: list[Path]):
    pair = _build(root / "a", first), _build(root / "b", second)
    yield pair
    for index in pair:
        index.close()


def crop_box(shape: tuple[int, ...], frac: float = 0.55) -> tuple[int, int, int, int]:
    """An off-centre ``(x0, y0, w, h)`` box of ``frac`` of each side, right of centre and high."""
    h, w = shape[:2]
    return round(0.3 * w), round(0.1 * h), round(frac * w), round(frac * h)


def box_corners(x0: float, y0: float, w: float, h: float) -> np.ndarray:
    """Outer corners TL, TR, BR, BL of the pixel block ``[x0, x0 + w) × [y0, y0 + h)``."""
    return np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]], np.float64) - 0.5


def rotate_expanded(rgb: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``rgb`` turned ``angle`` degrees counter-clockwise on a canvas holding all of it.

    Returns the query and the ``(2, 3)`` affine map from original to query pixels.
    """
    h, w = rgb.shape[:2]
    centre = ((w - 1) / 2, (h - 1) / 2)
    m = cv2.getRotationMatrix2D(centre, angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    new_w, new_h = int(np.ceil(w * cos + h * sin)), int(np.ceil(w * sin + h * cos))
    m[0, 2] += (new_w - 1) / 2 - centre[0]
    m[1, 2] += (new_h - 1) / 2 - centre[1]
    return cv2.warpAffine(rgb, m, (new_w, new_h), flags=cv2.INTER_LINEAR), m


def overlay(rgb: np.ndarray) -> np.ndarray:
    """A filled box with white text over the lower-left ~20 % of the image."""
    out = rgb.copy()
    h, w = out.shape[:2]
    cv2.rectangle(out, (int(0.05 * w), int(0.55 * h)), (int(0.5 * w), int(0.95 * h)), (200, 30, 30), -1)
    cv2.putText(
        out, "SALE", (int(0.07 * w), int(0.85 * h)), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 3
    )
    return out


def only_match(result, i: int):
    """The single best match, asserted to be fixture ``i`` found by the local tier."""
    assert result.matches, f"{KODAK[i].name} not found; rejected: {result.rejected}"
    best = result.matches[0]
    assert Path(best.path) == KODAK[i].absolute()
    assert best.tier == "local"
    assert best.geometry is not None
    return best


# -- transforms are found and estimated ------------------------------------------------------
@pytest.mark.parametrize("i", CROP_PHOTOS)
def test_crop_found_with_its_box(local_index: Index, i: int) -> None:
    rgb = kodak_rgb(i)
    x0, y0, w, h = crop_box(rgb.shape)
    best = only_match(local_index.query(rgb[y0 : y0 + h, x0 : x0 + w], tiers=LOCAL), i)
    g = best.geometry
    assert not g.mirrored
    assert abs(g.rotation) <= CROP_ROTATION_TOL
    assert g.scale == pytest.approx(1.0, rel=SCALE_RTOL)
    np.testing.assert_allclose(g.footprint, box_corners(x0, y0, w, h), atol=CORNER_TOL)
    assert best.inliers >= local_index.config.search.min_inliers


@pytest.mark.parametrize("query_side", [None, 120, 400])
@pytest.mark.parametrize("i", [0, 8])
def test_any_query_side_finds_the_crop_and_its_box(
    local_index: Index, i: int, query_side: int | None
) -> None:
    """The query's detection size (``query_side``; None: the index's 210 px) changes the keypoints,
    not the answer: the crop is found with its box in the original's pixels."""
    rgb = kodak_rgb(i)
    x0, y0, w, h = crop_box(rgb.shape, 0.7)
    query = cv2.resize(rgb[y0 : y0 + h, x0 : x0 + w], (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC)
    result = local_index.query(query, tiers=LOCAL, query_side=query_side)
    g = only_match(result, i).geometry
    assert g.scale == pytest.approx(0.5, rel=SCALE_RTOL)
    np.testing.assert_allclose(g.footprint, box_corners(x0, y0, w, h), atol=CORNER_TOL)


def test_query_side_is_validated() -> None:
    from imgsearch import SearchConfig
    from imgsearch.errors import ConfigError

    with pytest.raises(ConfigError, match="query_side"):
        SearchConfig(query_side=10)


@pytest.mark.parametrize("factor", [1.6, 0.7])
def test_resized_crop_reports_scale(local_index: Index, factor: float) -> None:
    """A crop shown larger (smaller) has scale 1/factor; its footprint is still the crop box.

    Resizing maps pixel edges to pixel edges, so the outer corners of the query are those of the crop.
    """
    rgb = kodak_rgb(0)
    x0, y0, w, h = crop_box(rgb.shape)
    crop = rgb[y0 : y0 + h, x0 : x0 + w]
    size = (round(w * factor), round(h * factor))
    query = cv2.resize(crop, size, interpolation=cv2.INTER_LINEAR if factor > 1 else cv2.INTER_AREA)
    g = only_match(local_index.query(query, tiers=LOCAL), 0).geometry
    assert g.scale == pytest.approx(w / size[0], rel=SCALE_RTOL)
    assert abs(g.rotation) <= CROP_ROTATION_TOL
    np.testing.assert_allclose(g.footprint, box_corners(x0, y0, w, h), atol=CORNER_TOL)


@pytest.mark.parametrize("angle", ANGLES)
@pytest.mark.parametrize("i", PHOTOS)
def test_rotation_found_with_its_angle(local_index: Index, i: int, angle: float) -> None:
    rgb = kodak_rgb(i)
    h, w = rgb.shape[:2]
    query, to_query = rotate_expanded(rgb, angle)
    g = only_match(local_index.query(query, tiers=LOCAL), i).geometry
    assert not g.mirrored
    # Signed angle difference, wrapped to (-180, 180].
    assert abs((g.rotation - angle + 180.0) % 360.0 - 180.0) <= ROTATION_TOL
    assert g.scale == pytest.approx(1.0, rel=SCALE_RTOL)
    # The query canvas's outer corners, taken back into the original by the inverse of our warp.
    qh, qw = query.shape[:2]
    to_original = cv2.invertAffineTransform(to_query)
    expected = box_corners(0, 0, qw, qh) @ to_original[:, :2].T + to_original[:, 2]
    footprint = np.array(g.footprint)
    np.testing.assert_allclose(footprint, expected, atol=ROTATED_CORNER_TOL)
    # The canvas is centred on the photo: the footprint's centre is the photo's centre.
    np.testing.assert_allclose(footprint.mean(axis=0), [(w - 1) / 2, (h - 1) / 2], atol=ROTATED_CENTRE_TOL)


# Photo 0 is left out: sheared, its patch hashes give its original a single vote (patches are
# normalised for rotation, not shear), so it is never verified.
@pytest.mark.parametrize("shear", [0.25, -0.2])
@pytest.mark.parametrize("i", PHOTOS[1:])
def test_sheared_crop_found_by_an_affine_map(local_index: Index, i: int, shear: float) -> None:
    """A crop sheared along x (no similarity fits it all) is found through the affine fit: the
    footprint is the sheared canvas taken back into the original, a parallelogram."""
    rgb = kodak_rgb(i)
    x0, y0, w, h = crop_box(rgb.shape, 0.8)
    to_query = np.array([[1.0, shear, -x0 - shear * y0], [0.0, 1.0, -y0]])
    to_query[0, 2] -= min(0.0, shear * (h - 1))  # the canvas starts at the leftmost sheared pixel
    qw, qh = w + int(np.ceil(abs(shear) * (h - 1))), h
    query = cv2.warpAffine(rgb, to_query, (qw, qh), flags=cv2.INTER_LINEAR)
    best = only_match(local_index.query(query, tiers=LOCAL), i)
    g = best.geometry
    assert g.model == "affine" and not g.mirrored
    assert g.scale == pytest.approx(1.0, rel=SCALE_RTOL)
    to_original = cv2.invertAffineTransform(to_query)
    expected = box_corners(0, 0, qw, qh) @ to_original[:, :2].T + to_original[:, 2]
    np.testing.assert_allclose(g.footprint, expected, atol=ROTATED_CORNER_TOL)


@pytest.mark.parametrize("i", PHOTOS)
def test_mirrored_crop_found_mirrored(local_index: Index, i: int) -> None:
    """The mirrored pass finds it; the query's top-left is the crop's top-right in the original.

    ``_geometry`` takes the query's corner x to ``(w - 1) - x`` in the mirrored pass's frame, so the
    footprint runs TR, TL, BL, BR of the crop box (counter-clockwise in the original).
    """
    rgb = kodak_rgb(i)
    x0, y0, w, h = crop_box(rgb.shape)
    query = np.ascontiguousarray(rgb[y0 : y0 + h, x0 : x0 + w][:, ::-1])
    best = only_match(local_index.query(query, tiers=LOCAL), i)
    g = best.geometry
    assert g.mirrored
    assert abs(g.rotation) <= CROP_ROTATION_TOL
    assert g.scale == pytest.approx(1.0, rel=SCALE_RTOL)
    tl, tr, br, bl = box_corners(x0, y0, w, h)
    np.testing.assert_allclose(g.footprint, [tr, tl, bl, br], atol=CORNER_TOL)


@pytest.mark.parametrize("i", PHOTOS)
def test_overlay_found(local_index: Index, i: int) -> None:
    rgb = kodak_rgb(i)
    h, w = rgb.shape[:2]
    g = only_match(local_index.query(overlay(rgb), tiers=LOCAL), i).geometry
    assert not g.mirrored
    assert abs(g.rotation) <= CROP_ROTATION_TOL
    np.testing.assert_allclose(g.footprint, box_corners(0, 0, w, h), atol=CORNER_TOL)


# -- distinct images never match -------------------------------------------------------------
@pytest.mark.parametrize("i", range(24))
def test_distinct_photos_never_match(local_index: Index, shards: tuple[Index, Index], i: int) -> None:
    """Every other fixture is verified (max_candidates ≥ index size) and none is called a copy.

    Against the full index only the photo itself matches (all 23 other pairs); against the shard
    without it nothing does, and the mirrored pass runs too.
    """
    own = local_index.query(kodak_rgb(i), tiers=LOCAL, max_candidates=24)
    assert [Path(m.path) for m in own.matches] == [KODAK[i].absolute()]
    other = shards[1 - i % 2]
    assert other.query(kodak_rgb(i), tiers=LOCAL, max_candidates=24).matches == []


@pytest.mark.parametrize(
    "query",
    [
        np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8),
        np.full((171, 256, 3), 128, np.uint8),
        np.full((8, 8), 7, np.uint8),
        np.random.default_rng(1).integers(0, 256, (5, 400), dtype=np.uint8),
        np.zeros((1, 1), np.uint8),
    ],
    ids=["noise", "flat-grey", "tiny-flat", "thin-noise", "one-pixel"],
)
def test_noise_and_flat_queries_match_nothing(local_index: Index, query: np.ndarray) -> None:
    result = local_index.query(query, tiers=LOCAL)
    assert result.matches == []
    assert result.tiers_run == ["local"]


# -- J and K ---------------------------------------------------------------------------------
def test_budget_j_is_honoured(tmp_path: Path) -> None:
    config = IndexConfig(keypoints=KeypointConfig(budget=50))
    with _build(tmp_path / "ix", KODAK[:4], config) as index:
        (part,) = index.reader.parts
        counts = np.diff(part.segment.column("kp_offsets"))
        assert counts.tolist() == [50, 50, 50, 50]  # textured photos: exactly J
        for image in range(4):
            assert len(index.reader.read_local(image, ("keypoints",))["keypoints"]) == 50
        words, _ = part.segment.postings()  # 50 < hashed: every keypoint votes, at every scale
        assert len(words) == counts.sum() * len(config.keypoints.patch_scales)


def test_budget_k_is_honoured(local_index: Index) -> None:
    """K keypoints are looked up (hashed, voting); ``max(K, verify_keypoints)`` are described."""
    scales = (0.8, 1.0, 1.25)
    small, ratio = kp_mod.downscale(kodak_gray(3), local_index.config.keypoints.max_side)
    for verify, described in ((0, 30), (100, 100)):
        cfg = local_index.search_config(keypoints=30, verify_keypoints=verify, query_scales=scales)
        for mirrored in (False, True):
            qp = passes.query_pass(small, mirrored, ratio, cfg, local_index.config.keypoints)
            assert len(qp.lookup) == 30  # a textured photo: exactly K
            assert qp.hashes.shape == (30 * len(scales), 8)
            assert len(qp.rows) == len(qp.descriptors) == described
            assert len(np.unique(qp.lookup)) == 30 and qp.lookup.max() < described
    # One vote per query keypoint and image: no candidate can have more than K votes.
    result = local_index.query(kodak_rgb(3), tiers=LOCAL, keypoints=30, min_votes=1, max_candidates=24)
    assert result.matches
    assert all(m.votes <= 30 for m in result.matches)
    assert all(r.votes <= 30 for r in result.rejected)


# -- geometric verification ------------------------------------------------------------------
def _crop_candidate(index: Index, i: int, **overrides):
    """(config, query pass, hash pairs of candidate ``i``) for the standard crop of photo ``i``."""
    cfg = index.search_config(tiers=LOCAL, **overrides)
    rgb = kodak_rgb(i)
    x0, y0, w, h = crop_box(rgb.shape)
    gray = np.ascontiguousarray(kodak_gray(i)[y0 : y0 + h, x0 : x0 + w])
    small, ratio = kp_mod.downscale(gray, index.config.keypoints.max_side)
    qp = passes.query_pass(small, False, ratio, cfg, index.config.keypoints)
    image = index.find(KODAK[i])
    stored = index.reader.read_local(image, ("patch_hash",))["patch_hash"]
    return cfg, qp, image, hash_pairs(qp, stored, cfg.patch_radius)


@pytest.mark.parametrize("i", [0, 8, 14])
def test_the_best_voted_image_below_an_automatic_floor_is_fitted_in_the_direct_pass(
    local_index: Index, monkeypatch: pytest.MonkeyPatch, i: int
) -> None:
    """With the automatic vote floor (``min_votes=0``) out of reach, as a million images make it for
    a heavy crop, the best-voted image is still fitted in the direct pass (local.SPARE_FITS) and the
    crop found; with no spare, or with a floor the user set, nothing is fitted and the reason says
    the floor; nor in the fallback passes."""
    from imgsearch import local, votes

    real = votes.votes_needed
    monkeypatch.setattr(votes, "votes_needed", lambda n: real(0) if n == 0 else 10_000)
    rgb = kodak_rgb(i)
    x0, y0, w, h = crop_box(rgb.shape)
    crop = rgb[y0 : y0 + h, x0 : x0 + w]
    best = only_match(local_index.query(crop, tiers=LOCAL), i)
    assert best.search_pass == "direct" and best.votes < 10_000
    for overrides, spares in (({}, 0), ({"min_votes": 10_000}, 1)):
        monkeypatch.setattr(local, "SPARE_FITS", spares)
        result = local_index.query(crop, tiers=LOCAL, **overrides)
        assert not result.matches
        assert any(r.reason.endswith("votes < min_votes 10000") for r in result.rejected), result.rejected
    # The direct pass alone has a spare: the mirrored crop, which only the mirrored pass finds, is lost.
    monkeypatch.setattr(local, "SPARE_FITS", 1)
    result = local_index.query(np.ascontiguousarray(crop[:, ::-1]), tiers=LOCAL)
    assert not result.matches
    assert any(
        r.search_pass == "mirrored" and r.reason.endswith("votes < min_votes 10000") for r in result.rejected
    ), result.rejected


@pytest.mark.parametrize("i", [0, 8, 14])
def test_a_spare_below_the_vote_floor_needs_a_weak_fits_agreement(
    local_index: Index, monkeypatch: pytest.MonkeyPatch, i: int
) -> None:
    """A fit with many own inliers needs ``min_agreement``; the same fit reached as a spare below
    the automatic floor is weak evidence and needs ``WEAK_EXTRA_AGREEMENT`` more: with
    ``min_agreement`` set just below the crop's agreement, the crop is found above the floor and
    refused below it, the reason naming the floor."""
    from imgsearch import votes

    rgb = kodak_rgb(i)
    x0, y0, w, h = crop_box(rgb.shape)
    crop = rgb[y0 : y0 + h, x0 : x0 + w]
    found = only_match(local_index.query(crop, tiers=LOCAL), i)
    assert found.inliers >= decide.STRONG_OWN_INLIERS and found.agreement is not None
    loose = {"min_agreement": found.agreement - decide.WEAK_EXTRA_AGREEMENT / 2}
    assert only_match(local_index.query(crop, tiers=LOCAL, **loose), i).agreement == found.agreement
    real = votes.votes_needed
    monkeypatch.setattr(votes, "votes_needed", lambda n: real(0) if n == 0 else 10_000)
    result = local_index.query(crop, tiers=LOCAL, **loose)
    assert not result.matches
    (why,) = [r.reason for r in result.rejected if Path(r.path) == KODAK[i].absolute()]
    assert "below the vote floor" in why and "of their overlap <" in why, why


def test_verification_rejects_shuffled_correspondences(local_index: Index) -> None:
    """Same patch-hash pairs, but the indexed side permuted: no consistent geometry remains.

    Descriptor matching is turned off (ratio 0 accepts none) so the shuffled pairs are all there is.
    """
    cfg, qp, image, pairs = _crop_candidate(local_index, 3, ratio=0.0)
    assert len(pairs) >= 3 * cfg.min_inliers
    verdict = local_index.local._fit(image, 0, qp, cfg, pairs)
    assert not isinstance(verdict, str), verdict  # the true pairs alone verify
    rng = np.random.default_rng(7)
    for _ in range(5):
        shuffled = pairs.copy()
        shuffled[:, 1] = rng.permutation(shuffled[:, 1])
        reason = local_index.local._fit(image, 0, qp, cfg, shuffled)
        assert isinstance(reason, str) and REASONS.fullmatch(reason), reason


def test_verification_rejects_shuffled_positions(local_index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    """The candidate's keypoint positions permuted among its keypoints, all else kept.

    Correspondences (patch hashes and descriptors) and orientations are unchanged, so the votes and
    the orientation filter pass as before: only RANSAC can tell, and it must.
    """
    cfg, qp, image, pairs = _crop_candidate(local_index, 3)
    fit = local_index.local._fit(image, 0, qp, cfg, pairs)
    assert not isinstance(fit, str), fit
    inliers = fit.inliers
    assert inliers >= 3 * cfg.min_inliers
    store = local_index.reader
    read_local = store.read_local

    def shuffled_positions(image_id: int, fields=LOCAL_FIELDS, limit=None) -> dict[str, np.ndarray]:
        data = dict(read_local(image_id, fields, limit))
        rows = data["keypoints"].copy()
        rows[:, :2] = rows[np.random.default_rng(11).permutation(len(rows)), :2]
        data["keypoints"] = rows
        return data

    monkeypatch.setattr(store, "read_local", shuffled_positions)
    reason = local_index.local._fit(image, 0, qp, cfg, pairs)
    assert isinstance(reason, str), reason
    assert re.fullmatch(
        r"\d+ RANSAC inliers < min_inliers \d+(; affine: .*)?|implausible scale .*", reason
    ), reason
    # Through the public query too: the copy is no longer found, and the reason is reported.
    rgb = kodak_rgb(3)
    x0, y0, w, h = crop_box(rgb.shape)
    result = local_index.query(rgb[y0 : y0 + h, x0 : x0 + w], tiers=LOCAL)
    assert result.matches == []
    assert any(Path(r.path) == KODAK[3].absolute() for r in result.rejected)


def test_every_rejected_candidate_says_why(shards: tuple[Index, Index]) -> None:
    """A photo absent from the shard, with every voted image verified (wide radius, min_votes 1)."""
    even, _ = shards
    result = even.query(
        kodak_rgb(3), tiers=LOCAL, patch_radius=16, min_votes=1, max_candidates=100
    )
    assert result.matches == []
    assert {r.path for r in result.rejected} == set(even.paths)  # radius 16: every image got votes
    for r in result.rejected:
        assert r.tier == "local"
        assert r.votes >= 1
        assert REASONS.fullmatch(r.reason), r.reason
    explained = result.to_dict(explain=True)
    assert len(explained["rejected"]) == len(result.rejected)
    assert "rejected" not in result.to_dict()


# -- the JSON contract and shards ------------------------------------------------------------
def test_local_match_json(local_index: Index) -> None:
    rgb = kodak_rgb(14)
    x0, y0, w, h = crop_box(rgb.shape)
    result = local_index.query(rgb[y0 : y0 + h, x0 : x0 + w], tiers=LOCAL)
    d = json.loads(json.dumps(result.to_dict(explain=True)))
    assert d["tiers_run"] == ["local"]
    assert isinstance(d["rejected"], list)
    match = d["matches"][0]
    assert match["tier"] == "local"
    assert match["path"] == str(KODAK[14].absolute())
    assert 0 < match["score"] <= 1
    assert match["votes"] >= 1 and match["inliers"] >= local_index.config.search.min_inliers
    geometry = match["geometry"]
    assert set(geometry) == {"rotation", "scale", "mirrored", "footprint", "model"}
    assert geometry["model"] == "similarity"
    assert geometry["mirrored"] is False
    assert isinstance(geometry["rotation"], float) and isinstance(geometry["scale"], float)
    assert len(geometry["footprint"]) == 4 and all(len(p) == 2 for p in geometry["footprint"])


def shard_query(name: str) -> np.ndarray:
    """The queries of the shard test, built when the test runs (not at collection)."""
    if name == "noise":
        return np.random.default_rng(2).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    kind, i = name.split("-")
    rgb = kodak_rgb(int(i))
    x0, y0, w, h = crop_box(rgb.shape)
    if kind == "crop":
        return rgb[y0 : y0 + h, x0 : x0 + w]
    if kind == "mirror":
        return np.ascontiguousarray(rgb[y0 : y0 + h, x0 : x0 + w][:, ::-1])
    if kind == "rotated":
        return rotate_expanded(rgb, 37.0)[0]
    return overlay(rgb)


@pytest.mark.parametrize(
    ("tiers", "overrides"),
    [
        (LOCAL, {}),
        (("exact", "global", "local"), {"keypoints": 4}),
        (LOCAL, {"keypoints": 4, "mirror": False}),
    ],
)
@pytest.mark.parametrize("name", ["crop-0", "rotated-5", "mirror-7", "overlay-12", "noise"])
def test_shards_merge_to_the_single_index(
    local_index: Index, shards: tuple[Index, Index], name: str, tiers: tuple[str, ...], overrides: dict
) -> None:
    """Matches and rejections (reason and pass) of the merged shards are the single index's: at the
    default K, and at K=4, where the full passes run, with and without the global tier's hints and
    the mirrored passes."""
    query = shard_query(name)
    single = local_index.query(query, tiers=tiers, **overrides)
    merged = merge_results([shard.query(query, tiers=tiers, **overrides) for shard in shards])

    def key(result):
        return [
            (m.path, m.tier, m.score, m.votes, m.inliers, m.search_pass, m.geometry) for m in result.matches
        ]

    def rejections(result):
        return sorted((r.path, r.tier, r.reason, r.votes or 0, r.search_pass or "") for r in result.rejected)

    assert key(merged) == key(single)
    assert rejections(merged) == rejections(single)
    if overrides.get("mirror", True):
        assert (name == "noise") == (single.matches == [])


def test_merge_keeps_the_direct_pass_like_one_index() -> None:
    """One index runs the mirrored pass only when the direct pass found nothing; a shard that found
    nothing directly and then a mirrored match must not add it to another shard's direct match."""
    from imgsearch import Geometry, Match, QueryResult, Rejection

    def local(path: str, mirrored: bool, inliers: int) -> Match:
        geometry = Geometry(0.0, 1.0, mirrored, ((0, 0), (1, 0), (1, 1), (0, 1)))
        name = "mirrored" if mirrored else "direct"
        score = inliers / (inliers + 10.0)
        return Match(path, score, "local", votes=5, inliers=inliers, geometry=geometry, search_pass=name)

    a = QueryResult("q", [local("a.jpg", False, 30)], [], ["exact", "global", "local"])
    b = QueryResult(
        "q",
        [local("b.jpg", True, 40)],
        [Rejection("c.jpg", "local", "mirrored pass: 2 votes < min_votes 3", search_pass="mirrored")],
        ["exact", "global", "local"],
    )
    merged = merge_results([a, b])
    assert [m.path for m in merged.matches] == ["a.jpg"] and merged.rejected == []
    only_mirrored = merge_results([QueryResult("q", [], [], ["exact", "global", "local"]), b])
    assert [m.path for m in only_mirrored.matches] == ["b.jpg"]


def test_merge_keeps_the_first_pass_like_one_index() -> None:
    """Passes run in the order of LOCAL_PASSES (direct, mirrored, full, full mirrored, zoomed, zoomed
    mirrored), each only when the ones before found nothing: a shard's later-pass match gives way
    to another's earlier one, and the rejections of the passes after the winning one go too."""
    from imgsearch import Geometry, Match, QueryResult, Rejection
    from imgsearch.results import LOCAL_PASSES

    tiers = ["exact", "global", "local"]
    misses = [
        Rejection(f"miss-{p}.jpg", "local", "2 votes < min_votes 3", search_pass=p) for p in LOCAL_PASSES
    ]

    def found_in(rank: int) -> QueryResult:
        """One shard whose pass ``rank`` found ``<pass>.jpg`` after the earlier passes missed."""
        name = LOCAL_PASSES[rank]
        geometry = Geometry(0.0, 1.0, "mirrored" in name, ((0, 0), (1, 0), (1, 1), (0, 1)))
        match = Match(f"{name}.jpg", 0.7, "local", votes=5, inliers=20, geometry=geometry, search_pass=name)
        return QueryResult("q", [match], misses[: rank + 1], tiers)

    for first in range(len(LOCAL_PASSES)):
        for later in range(first, len(LOCAL_PASSES)):
            merged = merge_results([found_in(later), found_in(first)])
            assert {m.path for m in merged.matches} == {f"{LOCAL_PASSES[first]}.jpg"}
            assert {x.path for x in merged.rejected} == {f"miss-{p}.jpg" for p in LOCAL_PASSES[: first + 1]}
    # A shard that found nothing: its rejections of every pass stay when the other found a copy late.
    empty = QueryResult("q", [], misses, tiers)
    merged = merge_results([found_in(len(LOCAL_PASSES) - 1), empty])
    assert [m.path for m in merged.matches] == ["zoomed mirrored.jpg"] and len(merged.rejected) == 12


def test_hashed_keypoints_are_the_first_of_each_image(tmp_path: Path) -> None:
    """With ``hashed=H`` only each image's first H stored keypoints vote: the postings hold those
    alone, and what they find is what the full postings find on those keypoints."""
    paths = list(KODAK[:6])
    full = _build(tmp_path / "full", paths, IndexConfig(keypoints=KeypointConfig(budget=120)))
    part = _build(tmp_path / "part", paths, IndexConfig(keypoints=KeypointConfig(budget=120, hashed=40)))
    (f,), (p,) = full.reader.parts, part.reader.parts
    counts = np.diff(f.segment.column("kp_offsets"))
    assert np.array_equal(counts, np.diff(p.segment.column("kp_offsets")))
    assert len(p.segment.postings()[0]) == int(np.minimum(counts, 40).sum()) < len(f.segment.postings()[0])
    cfg = full.search_config()
    rgb = kodak_rgb(2)
    x0, y0, w, h = crop_box(rgb.shape)
    small, ratio = kp_mod.downscale(cv2.cvtColor(rgb[y0 : y0 + h, x0 : x0 + w], cv2.COLOR_RGB2GRAY), 180)
    qp = passes.query_pass(small, False, ratio, cfg, full.config.keypoints)
    args = (postings.codes_of(qp.hashes), qp.margins, cfg.patch_radius, cfg.probes)
    all_hits = set(zip(*(a.tolist() for a in full.reader.patch_hits(*args)), strict=True))
    voter_hits = set(zip(*(a.tolist() for a in part.reader.patch_hits(*args)), strict=True))
    assert 0 < len(voter_hits) < len(all_hits) and voter_hits <= all_hits
    # And the cropped photo is still found, with all 120 keypoints in verification.
    assert only_match(part.query(rgb[y0 : y0 + h, x0 : x0 + w], tiers=LOCAL), 2).inliers >= 8
    full.close()
    part.close()


@pytest.mark.parametrize(("query_side", "at_least", "below"), [(None, 210, 400), (400, 400, 1001)])
def test_a_jpeg_query_is_decoded_for_its_query_side(
    local_index: Index, monkeypatch: pytest.MonkeyPatch, query_side: int | None, at_least: int, below: int
) -> None:
    """A large JPEG is decoded at reduced size for the index (210 px here), and again, larger, only
    when ``query_side`` asks for more: the local tier then detects at that size."""

    rgb = cv2.resize(kodak_rgb(5), (1000, 667), interpolation=cv2.INTER_CUBIC)
    data = encode_jpeg(rgb, 92)
    seen: list[tuple[int, ...]] = []
    search = LocalIndex.search

    def spy(self, gray, cfg, path_of, hints=(), **kwargs):
        seen.append(gray.shape)
        return search(self, gray, cfg, path_of, hints, **kwargs)

    monkeypatch.setattr(LocalIndex, "search", spy)
    result = local_index.query(data, tiers=LOCAL, query_side=query_side)
    assert len(seen) == 1 and at_least <= max(seen[0]) < below
    best = only_match(result, 5)
    # Per pixel of the 1000 px file, not of the smaller decode the keypoints came from.
    assert best.geometry.scale == pytest.approx(256 / 1000, rel=SCALE_RTOL)


@pytest.mark.parametrize("i", [1, 8, 19])
def test_stored_keypoints_hashes_and_descriptors_agree_in_spread_order(local_index: Index, i: int) -> None:
    """Each stored keypoint row, its patch hash and its descriptor describe the same keypoint (they
    were permuted together), and the rows are in grid-spread order (the first ``hashed`` vote)."""
    from imgsearch import descriptors, hashing, io
    from imgsearch.extract import quantise_descriptors
    from imgsearch.patches import extract_patches

    stored = local_index.reader.read_local(local_index.find(KODAK[i]), LOCAL_FIELDS)
    config = local_index.config.keypoints
    gray = io.decode_image(KODAK[i].read_bytes(), min_side=local_index.config.decode_side, gray=True)
    small, _ = kp_mod.downscale(gray, config.max_side)
    rows = stored["keypoints"]
    kps = kp_mod.Keypoints(
        xy=rows[:, :2], size=rows[:, 2], angle=rows[:, 3], response=rows[:, 4],
        descriptors=stored["descriptors"], shape=small.shape[:2],
    )  # fmt: skip
    patches = extract_patches(small, kps, config.patch_scales)
    np.testing.assert_array_equal(hashing.patch_hashes(patches), stored["patch_hash"].reshape(-1, 8))
    recomputed = quantise_descriptors(descriptors.patch_descriptors(patches))
    assert np.abs(recomputed.astype(int) - stored["descriptors"]).max() <= 1  # float summation order
    order = kp_mod.spread_order(kps.xy, kps.response, kps.shape, config.grid)
    np.testing.assert_array_equal(order, np.arange(len(kps)))


@pytest.fixture(scope="module")
def watermarked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Index, list[np.ndarray]]:
    """Photos 0-11 indexed and photos 12-23 as queries, all under one shared caption (15 % of the
    area, same words, place and colours): a catalogue whose images carry the same watermark."""
    from imgsearch.evaluate.overlays import text_overlay

    root = tmp_path_factory.mktemp("watermarked")

    def mark(i: int) -> np.ndarray:
        return text_overlay(kodak_rgb(i), np.random.default_rng(9), 0.15, 0.15)

    for i in range(12):
        (root / f"{i:04d}.jpg").write_bytes(encode_jpeg(mark(i), 92))
    index = _build(root / "ix", sorted(root.glob("*.jpg")))
    yield index, [mark(i) for i in range(12, 24)]
    index.close()


# The shared-part tests of imgsearch.decide off, to test an older guard on its own.
NO_SHARED_PART_TESTS = {"min_own_inliers": 0, "min_agreement": 0.0, "distinct_ratio": 0.0, "repeat_distance": 0.0}


def test_min_coverage_rejects_a_shared_caption(watermarked: tuple[Index, list[np.ndarray]]) -> None:
    """Distinct photos that share a caption match on it alone when the shared-part tests are off
    (so the test can fail: without the coverage test one does); with ``min_coverage`` the inliers
    cover too little of both images."""
    index, queries = watermarked
    loose = [index.query(q, tiers=LOCAL, min_coverage=0.0, **NO_SHARED_PART_TESTS) for q in queries]
    found = [m for r in loose for m in r.matches]
    assert found and all(m.coverage < 0.15 for m in found), [(m.path, m.coverage) for m in found]
    for q, before in zip(queries, loose, strict=True):
        result = index.query(q, tiers=LOCAL, min_coverage=0.15, **NO_SHARED_PART_TESTS)
        assert not result.matches, [(m.path, m.inliers, m.coverage) for m in result.matches]
        if before.matches:  # the caption match is now a rejection that says why
            assert any("min_coverage" in r.reason for r in result.rejected), result.rejected
    # A copy of a watermarked photo is still found, covering most of it.
    copy = index.query(
        encode_jpeg(kodak_rgb(3)[20:, 10:], 80), tiers=LOCAL, min_coverage=0.15, **NO_SHARED_PART_TESTS
    )
    assert copy.matches and copy.matches[0].coverage > 0.5


# Captions of these seeds, shared by all 24 photos. Whether one of them matches distinct photos in
# the zoomed pass depends on its glyphs, which OpenCV's text renderer draws differently from one
# release to the next (5.0: seeds 6, 7, 9, 12, 14 matched; 5.1: 10 and 12), so the test pools them.
CAPTION_SEEDS = range(6, 15)


def test_the_zoomed_pass_refuses_a_shared_caption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """For each caption seed, photos 0-11 indexed and 12-23 queried at 512 px under one caption (20 %
    of the area): at 225 px a caption can match in the zoomed pass, at the scale it has in both
    images (below 1), on few inliers. Without the scale test distinct photos match (so the test can
    fail); with it none does (below 1, a zoomed fit needs strong evidence: ``STRONG_OWN_INLIERS``
    own inliers), and the rejections say why. The shared-part tests (imgsearch.decide), which also
    refuse these matches, are off: this tests the scale rule on its own."""
    from imgsearch import local
    from imgsearch.evaluate.overlays import text_overlay

    loose, results = [], []
    for seed in CAPTION_SEEDS:

        def mark(i: int, seed: int = seed) -> np.ndarray:
            return text_overlay(kodak_rgb(i), np.random.default_rng(seed), 0.2, 0.2)

        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        for i in range(12):
            (folder / f"{i:04d}.jpg").write_bytes(encode_jpeg(mark(i), 92))
        index = _build(folder / "ix", sorted(folder.glob("*.jpg")))
        large = [
            cv2.resize(mark(i), None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC) for i in range(12, 24)
        ]
        with monkeypatch.context() as patch:
            patch.setattr(local, "ZOOM_MIN_SCALE", 0.0)
            loose += [
                m for q in large for m in index.query(q, tiers=LOCAL, min_coverage=0.0, **NO_SHARED_PART_TESTS).matches
            ]
        results += [index.query(q, tiers=LOCAL, min_coverage=0.0, **NO_SHARED_PART_TESTS) for q in large]
        index.close()
    zoomed = [m for m in loose if m.search_pass.startswith("zoomed")]
    assert zoomed and all(m.geometry.scale < 1.0 for m in zoomed), [(m.path, m.search_pass) for m in loose]
    assert all(m.inliers < decide.STRONG_OWN_INLIERS for m in zoomed), [m.inliers for m in zoomed]
    assert not any(m.search_pass.startswith("zoomed") for r in results for m in r.matches)
    refused = [x.reason for r in results for x in r.rejected]
    assert sum(r.startswith("zoomed pass: at scale ") and "not a copy too small" in r for r in refused) >= len(
        zoomed
    )


def _sheared(rgb: np.ndarray, k: float) -> np.ndarray:
    """``rgb`` enlarged twice, then sheared by ``k`` along y on a canvas that holds it all (black)."""
    big = cv2.resize(rgb, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
    h, w = big.shape[:2]
    shear = np.array([[1.0, 0.0, 0.0], [k, 1.0, 0.0]])
    return cv2.warpAffine(big, shear, (w, int(h + k * w)), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def test_the_zoomed_pass_finds_a_sheared_copy_on_strong_evidence(
    local_index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy sheared by 0.4 keeps too few of its keypoints' patches at query_side; zoomed, it is
    found at a keypoint-image scale below 1 (the whole photo, stretched, in a larger canvas), on
    a hundred inliers or more: strong evidence, which that scale does not refuse. Asking every
    zoomed fit below 1 for more own inliers than any has (so the test can fail) loses them, and
    the rejections say why."""
    queries = {i: _sheared(kodak_rgb(i), 0.4) for i in (2, 11, 13, 15, 20)}
    found = {i: local_index.query(q) for i, q in queries.items()}
    for i, result in found.items():
        assert result.matches and Path(result.matches[0].path) == KODAK[i].absolute(), (i, result.rejected)
        match = result.matches[0]
        assert match.search_pass == "zoomed" and match.inliers >= 2 * decide.STRONG_OWN_INLIERS, (i, match)
    with monkeypatch.context() as patch:
        patch.setattr(decide, "STRONG_OWN_INLIERS", 10**6)
        strict = {i: local_index.query(q) for i, q in queries.items()}
    lost = [i for i, r in strict.items() if not r.matches]
    assert len(lost) >= 3, {i: [m.search_pass for m in r.matches] for i, r in strict.items()}
    for i in lost:
        reasons = [x.reason for x in strict[i].rejected if Path(x.path) == KODAK[i].absolute()]
        assert any(r.startswith("zoomed pass: at scale 0.") for r in reasons), reasons


# -- the full pass: every described keypoint looks up when K found nothing ----------------------
def test_the_full_pass_finds_what_few_lookups_miss(
    local_index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At K=4 the direct and mirrored passes vote with 4 keypoints and miss some crops; the full
    pass, the same keypoints all looking up, finds them. Without it they are not found."""
    crops = []
    for i in range(24):
        rgb = kodak_rgb(i)
        h, w = rgb.shape[:2]
        crops.append(rgb[int(0.1 * h) : int(0.7 * h), int(0.3 * w) : int(0.9 * w)])
    results = [local_index.query(q, tiers=LOCAL, keypoints=4) for q in crops]
    for i, result in enumerate(results):
        assert result.matches and Path(result.matches[0].path) == KODAK[i].absolute(), result.rejected
    full = [i for i, r in enumerate(results) if r.matches[0].search_pass == "full"]
    assert len(full) >= 3, [r.matches[0].search_pass for r in results]
    for i in full:  # what the passes up to the full one turned down (often nothing had 2 votes)
        assert {x.search_pass for x in results[i].rejected} <= {"direct", "mirrored", "full"}
    monkeypatch.setattr(passes, "full_pass", lambda qp, small, cfg: None)
    assert not any(local_index.query(crops[i], tiers=LOCAL, keypoints=4).matches for i in full)


def test_the_full_pass_finds_a_superset_of_the_direct_hits(local_index: Index) -> None:
    """A full pass probes the direct pass's lookups exactly as the direct pass did (the probes of a
    hash depend on it alone), so it finds every hit the direct pass found, and more."""
    cfg = local_index.search_config(keypoints=40)
    kconfig = local_index.config.keypoints
    for i in (0, 8, 14):
        rgb = kodak_rgb(i)
        h, w = rgb.shape[:2]
        gray = cv2.cvtColor(rgb[int(0.1 * h) : int(0.8 * h), int(0.2 * w) : int(0.9 * w)], cv2.COLOR_RGB2GRAY)
        small, ratio = kp_mod.downscale(gray, 180)
        direct = passes.query_pass(small, False, ratio, cfg, kconfig)
        full = passes.full_pass(direct, small, cfg)
        assert full is not None and full.full and len(full.lookup) > len(direct.lookup) == 40
        few, many = (
            {(int(qp.lookup[q]), int(g)) for q, g, _ in zip(*local_index.reader.patch_hits(
                postings.codes_of(qp.hashes), qp.margins, cfg.patch_radius, cfg.probes), strict=True)}
            for qp in (direct, full)
        )  # fmt: skip
        assert few < many


@pytest.mark.parametrize("detector", ["sift", "orb"])
def test_the_full_mirrored_pass_finds_a_mirrored_crop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, detector: str
) -> None:
    """Mirrored crops at K=4: some are found only by the full mirrored pass (derived from the full
    pass for SIFT, from the mirrored detection for ORB), and none without it."""
    index = _build(
        tmp_path / detector, list(KODAK[:12]), IndexConfig(keypoints=KeypointConfig(detector=detector))
    )
    crops = []
    for i in range(12):
        rgb = kodak_rgb(i)
        h, w = rgb.shape[:2]
        crops.append(
            np.ascontiguousarray(rgb[int(0.1 * h) : int(0.8 * h), int(0.2 * w) : int(0.9 * w)][:, ::-1])
        )
    results = [index.query(q, tiers=LOCAL, keypoints=4) for q in crops]
    by_full = [i for i, r in enumerate(results) if r.matches and r.matches[0].search_pass == "full mirrored"]
    assert by_full, [r.matches[0].search_pass if r.matches else None for r in results]
    for i in by_full:
        best = results[i].matches[0]
        assert Path(best.path) == KODAK[i].absolute() and best.geometry.mirrored
    original = passes.full_pass

    def direct_only(qp, small, cfg):
        return None if qp.mirrored else original(qp, small, cfg)

    monkeypatch.setattr(passes, "full_pass", direct_only)
    if detector == "sift":  # its full mirrored pass is the mirror of the direct full pass
        monkeypatch.setattr(index.local, "_mirror_derived", False)
    assert not any(
        m.search_pass == "full mirrored"
        for i in by_full
        for m in index.query(crops[i], tiers=LOCAL, keypoints=4).matches
    )
    index.close()


def test_native_binary_descriptors_find_crops_with_the_unambiguity_test(tmp_path: Path) -> None:
    """An index of ORB's own (binary) descriptors: the verdict's unambiguity test runs on their
    Hamming distances (it once raised in OpenCV's batchDistance), and crops are found."""
    config = IndexConfig(keypoints=KeypointConfig(detector="orb", descriptor="native"))
    index = _build(tmp_path / "orb", list(KODAK[:6]), config)
    assert index.local is not None and index.local.binary_descriptors
    for i in range(6):
        rgb = kodak_rgb(i)
        h, w = rgb.shape[:2]
        result = index.query(rgb[int(0.1 * h) : int(0.8 * h), int(0.2 * w) : int(0.9 * w)], tiers=LOCAL)
        assert result.matches and Path(result.matches[0].path) == KODAK[i].absolute(), result.rejected
    index.close()


# -- the zoomed pass: a photo shrunk into another -------------------------------------------
PASTE_BACKGROUND = 5  # odd: in no index of these tests but local_index
PASTE_SCALE = 2.5  # the background, upscaled to 640 px
PASTE_FRACTION = 0.25  # of the background's width


def pasted(
    i: int, background: int = PASTE_BACKGROUND, mirrored: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Fixture ``i`` shrunk to a quarter of the width of another photo (``mirrored`` or not),
    pasted near its top-right.

    Returns the query and the expected footprint: the query's outer corners in ``i``'s pixels."""
    bg = kodak_rgb(background)
    bg = np.ascontiguousarray(bg[:, ::-1]) if mirrored else bg
    bg = cv2.resize(bg, None, fx=PASTE_SCALE, fy=PASTE_SCALE, interpolation=cv2.INTER_CUBIC)
    photo = kodak_rgb(i)
    h, w = photo.shape[:2]
    nw = round(bg.shape[1] * PASTE_FRACTION)
    nh = round(h * nw / w)
    x0, y0 = bg.shape[1] - nw - 40, 30
    bg[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(photo, (nw, nh), interpolation=cv2.INTER_AREA)
    s = w / nw  # photo pixels per query pixel; edges map to edges
    qh, qw = bg.shape[:2]
    corners = np.array([[0, 0], [qw, 0], [qw, qh], [0, qh]], np.float64)
    return bg, (corners - [x0, y0]) * s - 0.5


@pytest.mark.parametrize("i", [0, 4, 12, 20])
def test_a_photo_pasted_small_into_another_is_found_by_the_zoomed_pass(
    shards: tuple[Index, Index], i: int
) -> None:
    """At 180 px the pasted photo is 45 px wide and not found; the zoomed pass (225 px) finds it,
    with its scale and footprint, and says so. The query is a JPEG, decoded again, larger, for it."""
    even, _ = shards
    query, footprint = pasted(i)
    data = encode_jpeg(query)
    assert even.query(data, tiers=LOCAL, zoom_factor=None).matches == []
    result = even.query(data, tiers=LOCAL)
    best = only_match(result, i)
    assert best.search_pass == "zoomed" and best.searched_side == ZOOM_SIDE
    assert best.geometry.scale == pytest.approx(
        kodak_rgb(i).shape[1] / round(query.shape[1] * PASTE_FRACTION), rel=SCALE_RTOL
    )
    # The query's corners lie far outside the photo (up to 3x its size away): errors are extrapolated.
    np.testing.assert_allclose(best.geometry.footprint, footprint, atol=3 * ROTATED_CORNER_TOL)
    # The zoomed pass looks up all its described keypoints whatever K: K=10 finds the copy too.
    few = only_match(even.query(data, tiers=LOCAL, keypoints=10), i)
    assert few.search_pass == "zoomed"


@pytest.mark.parametrize(("encoding", "decodes"), [(".png", 1), (".jpg", 1), ("1720.jpg", 2)])
def test_the_zoomed_pass_decodes_again_only_when_it_needs_more(
    shards: tuple[Index, Index], monkeypatch: pytest.MonkeyPatch, encoding: str, decodes: int
) -> None:
    """The zoomed pass reuses the decoded query when it is large enough: a PNG decodes once, at
    full size; a 640 px JPEG once, at 1/2 (320 px, enough for 225); a 1720 px JPEG first at 1/8
    (215 px, enough for 210), then again at 1/4 for the zoomed pass."""
    from imgsearch import io

    even, _ = shards
    query = pasted(4)[0]
    if encoding == "1720.jpg":
        query = cv2.resize(
            query, (1720, round(1720 * query.shape[0] / query.shape[1])), interpolation=cv2.INTER_CUBIC
        )
    ok, buf = cv2.imencode(encoding[-4:], np.ascontiguousarray(query[:, :, ::-1]))
    assert ok
    calls: list[int | None] = []
    decode = io.decode_image

    def spy(data, **kwargs):
        calls.append(kwargs.get("min_side"))
        return decode(data, **kwargs)

    monkeypatch.setattr(io, "decode_image", spy)
    result = even.query(buf.tobytes(), tiers=LOCAL)
    assert result.matches and result.matches[0].search_pass == "zoomed"
    assert len(calls) == decodes, calls


def test_the_zoomed_pass_needs_a_large_enough_query(shards: tuple[Index, Index]) -> None:
    """A photo absent from the index: at 224 px (below 1.25x query_side) no zoomed pass runs, at
    400 px it does (its rejections say so), unless ``zoom_factor`` is None."""
    even, _ = shards

    def zoomed_rejections(query: np.ndarray, **overrides) -> int:
        # Radius 16 with 4 flips: every image gets votes, so every pass leaves rejections, and
        # those of the passes at 180 px are kept after a zoomed pass.
        result = even.query(query, tiers=LOCAL, min_votes=1, patch_radius=16, **overrides)
        assert result.matches == [] and result.rejected
        assert all(REASONS.fullmatch(r.reason) for r in result.rejected)
        zoomed = sum(r.reason.startswith("zoomed pass: ") for r in result.rejected)
        assert zoomed < len(result.rejected)
        return zoomed

    absent = kodak_rgb(PASTE_BACKGROUND)
    side = ZOOM_SIDE - 1
    smaller = cv2.resize(
        absent, (side, round(side * absent.shape[0] / absent.shape[1])), interpolation=cv2.INTER_AREA
    )
    larger = cv2.resize(
        absent, (400, round(400 * absent.shape[0] / absent.shape[1])), interpolation=cv2.INTER_CUBIC
    )
    assert max(absent.shape[:2]) > side  # the photo is landscape: its width is its long side
    assert zoomed_rejections(smaller) == 0
    assert zoomed_rejections(larger) > 0
    assert zoomed_rejections(larger, zoom_factor=None) == 0


def test_zoom_factor_is_validated() -> None:
    from imgsearch import SearchConfig
    from imgsearch.errors import ConfigError

    for bad in (1.0, 10.0, "2"):
        with pytest.raises(ConfigError, match="zoom_factor"):
            SearchConfig(zoom_factor=bad)
    assert SearchConfig(zoom_factor=None).zoom_factor is None
    with pytest.raises(ConfigError, match="wrong type"):  # a scalar for a tuple: TypeError inside
        SearchConfig().replace(query_scales=1.0)


@pytest.fixture(scope="module")
def even_shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Index, Index]:
    """The even photos split in two: KODAK[0::4] and KODAK[2::4]. Read-only."""
    yield from _index_pair(tmp_path_factory.mktemp("even_shards"), KODAK[0::4], KODAK[2::4])


@pytest.mark.parametrize(
    ("i", "background", "mirrored", "expected"),
    [
        (4, 5, False, (4, "zoomed")),
        (12, 5, False, (12, "zoomed")),  # direct: 8 inliers, 2 ambiguous
        (10, 4, True, (4, "mirrored")),
        (2, 0, True, (2, "direct")),
    ],
)
def test_shards_merge_to_the_single_index_after_a_zoomed_pass(
    shards: tuple[Index, Index],
    even_shards: tuple[Index, Index],
    i: int,
    background: int,
    mirrored: bool,
    expected: tuple[int, str],
) -> None:
    """Photo ``i`` pasted on another, mirrored or not. Photos 0 and 4 are in the first shard, 2 and 10
    in the second: on mirrored 4, the first shard finds 4 in its mirrored pass and the second 10 in
    its zoomed pass; on mirrored 0, the first finds 0 mirrored and the second 2 directly. One index
    stops at the earliest of those passes, and so must the merge, rejections included."""
    even, _ = shards
    query = pasted(i, background, mirrored)[0]
    explain = {"tiers": LOCAL, "min_votes": 1, "patch_radius": 12}
    single = even.query(query, **explain)
    merged = merge_results([shard.query(query, **explain) for shard in even_shards])

    def key(result):
        return [
            (m.path, m.score, m.inliers, m.search_pass, m.searched_side, m.geometry) for m in result.matches
        ]

    def rejections(result):
        return sorted((r.path, r.tier, r.reason, r.votes or 0) for r in result.rejected)

    assert key(merged) == key(single)
    assert rejections(merged) == rejections(single)
    assert (Path(single.matches[0].path), single.matches[0].search_pass) == (
        KODAK[expected[0]].absolute(),
        expected[1],
    )


def test_a_new_image_runs_the_zoomed_pass_but_not_its_mirror(tmp_path: Path) -> None:
    """A never-indexed photo at least 225 px large runs every pass but the zoomed mirrored one
    (``SearchConfig.zoom_mirrored``, off by default); asked for, that pass runs too."""
    index = _build(tmp_path / "ix", list(KODAK[:12]))
    new = cv2.resize(kodak_rgb(12), (384, 256), interpolation=cv2.INTER_CUBIC)
    default = index.query(new, tiers=("local",), keypoints=40)
    assert default.matches == []
    assert set(default.timings) >= {"direct", "mirrored", "full", "full mirrored", "zoomed"}
    assert "zoomed mirrored" not in default.timings
    both = index.query(new, tiers=("local",), keypoints=40, zoom_mirrored=True)
    assert both.matches == [] and "zoomed mirrored" in both.timings
    index.close()
