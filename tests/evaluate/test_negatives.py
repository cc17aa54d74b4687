"""Tests of imgsearch.evaluate.negatives (shared designs) on the Kodak fixture photos.

The central checks render each design on flat black and flat white photos of the fixture's size:
a pixel that comes out the same on both belongs to the shared element (opaque), and for marks the
two flat renders give each pixel's own opacity and colour, so the render of any photo is predicted
exactly. A design that changed with the photo fails them; one that drew its element from ``rng``
fails the tests that marks ignore ``rng`` and that a template's ``rng`` changes only its texts.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import kodak_rgb

from imgsearch.errors import ConfigError
from imgsearch.evaluate.negatives import KINDS, SharedDesign, design

MARKS = [k for k, (family, _) in KINDS.items() if family == "mark"]
OTHERS = [k for k in KINDS if k not in MARKS]
SEEDS = range(6)  # enough to meet most structural variants of each kind
# Fixture photos of one size, (171, 256, 3): two disjoint sets of four.
LANDSCAPE = [i for i in range(24) if kodak_rgb(i).shape[0] < kodak_rgb(i).shape[1]]
SET_A = [kodak_rgb(i) for i in LANDSCAPE[:4]]
SET_B = [kodak_rgb(i) for i in LANDSCAPE[4:8]]


PHOTOS = {
    "A": SET_A,
    "B": SET_B,
    "black": [np.zeros_like(p) for p in SET_A],
    "white": [np.full_like(p, 255) for p in SET_A],
}


@functools.cache
def _render(kind: str, seed: int, photos: str = "A", rng_seed: int = 0) -> np.ndarray:
    """The design of (kind, seed) on the photos ``PHOTOS[photos]``, as a read-only int array."""
    d = design(kind, seed)
    out = d.render(PHOTOS[photos][: d.photos], np.random.default_rng(rng_seed)).astype(int)
    out.flags.writeable = False
    return out


def _flats(kind: str, seed: int, rng_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The design rendered on flat black and on flat white photos."""
    return _render(kind, seed, "black", rng_seed), _render(kind, seed, "white", rng_seed)


def _element(kind: str, seed: int, rng_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) bool masks of the design's own pixels: where no photo shows through fully (a mark,
    its veil, a template's chrome, a box and its shadow), and where none shows at all (opaque)."""
    black, white = _flats(kind, seed, rng_seed)
    return (white - black < 255).any(axis=2), (white == black).all(axis=2)


# --------------------------------------------------------------------------- registry and arguments


def test_kinds_are_fixed_in_order_with_family_and_photo_count():
    assert list(KINDS) == [
        "corner_logo_opaque",
        "corner_logo_translucent",
        "tiled_text",
        "caption_band",
        "frame",
        "packaging",
        "shelf",
        "web_page",
        "social_post",
        "catalogue_sheet",
    ]
    assert {k: f for k, (f, _) in KINDS.items() if f != "mark"} == {
        "packaging": "packaging",
        "shelf": "packaging",
        "web_page": "template",
        "social_post": "template",
        "catalogue_sheet": "template",
    }
    assert [n for _, n in KINDS.values()] == [1, 1, 1, 1, 1, 2, 2, 1, 1, 4]
    assert design("shelf", 3) == SharedDesign("shelf", "packaging", 3, 2)


def test_unknown_kind_names_the_valid_kinds():
    with pytest.raises(ConfigError, match="no_such_kind") as info:
        design("no_such_kind", 0)
    assert all(kind in str(info.value) for kind in KINDS)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_seed_must_be_a_non_negative_integer(seed):
    with pytest.raises(ConfigError, match="seed"):
        design("frame", seed)


def test_family_and_photo_count_must_match_the_kind():
    with pytest.raises(ConfigError, match=r"design\(\)"):
        SharedDesign("frame", "template", 0, 1)
    with pytest.raises(ConfigError, match="2 photo"):
        SharedDesign("packaging", "packaging", 0, 1)


def test_render_checks_photos_and_rng():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="sequence of 2 photo"):
        design("packaging", 0).render([SET_A[0]], rng)
    with pytest.raises(ConfigError, match="an array of shape"):
        design("frame", 0).render(SET_A[0], rng)
    with pytest.raises(ConfigError, match="uint8"):
        design("frame", 0).render([SET_A[0].astype(np.float32)], rng)
    with pytest.raises(ConfigError, match="at least 16"):
        design("frame", 0).render([SET_A[0][:8]], rng)
    with pytest.raises(ConfigError, match="Generator"):
        design("frame", 0).render([SET_A[0]], 0)


# --------------------------------------------------------------------------- every kind


@pytest.mark.parametrize("kind", list(KINDS))
def test_output_is_a_new_contiguous_rgb_image_and_deterministic(kind):
    d = design(kind, 0)
    photos = [p.copy() for p in SET_A[: d.photos]]
    out = d.render(photos, np.random.default_rng(5))
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.flags.c_contiguous and min(out.shape[:2]) >= 16
    assert all(np.array_equal(p, q) for p, q in zip(photos, SET_A, strict=False)), "photos were modified"
    assert not any(np.may_share_memory(out, p) for p in photos)
    again = design(kind, 0).render(photos, np.random.default_rng(5))
    assert np.array_equal(out, again)
    h, w = SET_A[0].shape[:2]
    if KINDS[kind][0] == "mark":  # the photo's size; bands and outer frames add to it
        assert out.shape[0] >= h and out.shape[1] >= w
        assert out.shape[0] * out.shape[1] <= 1.6 * h * w
    elif KINDS[kind][0] == "packaging":  # the background's size
        assert out.shape == SET_A[1].shape
    else:
        assert 400 <= out.shape[1] <= 560


@pytest.mark.parametrize("kind", list(KINDS))
def test_per_image_parameters_come_from_rng_and_marks_have_none(kind):
    a, b = _render(kind, 1, "A", rng_seed=0), _render(kind, 1, "A", rng_seed=1)
    assert np.array_equal(a, b) == (kind in MARKS)


@pytest.mark.parametrize("kind", list(KINDS))
def test_another_design_seed_gives_another_design(kind):
    # Over the pixels of either design (in the part both images have: a design may fix the size),
    # two designs rendered on the same photos differ by tens of grey levels on average (measured
    # over seeds 0-8: 19-190; tiled text, a veil of alpha 0.15-0.4, 11-17).
    for seed in SEEDS:
        a, b = _render(kind, seed, "A"), _render(kind, seed + 1, "A")
        h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
        mask = _element(kind, seed)[0][:h, :w] | _element(kind, seed + 1)[0][:h, :w]
        assert np.abs(a[:h, :w] - b[:h, :w])[mask].mean() > 6, (kind, seed)


# --------------------------------------------------------------------------- the element is shared

# Share of the image a mark covers (pixels where the photo does not show through fully), and the
# largest opacity it reaches; measured on the fixtures over seeds 0-7: logos 1-11 %, tiled text
# 12-37 %, bands 10-15 %, frames 15-23 %.
MARK_SHARE = {
    "corner_logo_opaque": ((0.005, 0.25), (1.0, 1.0)),
    "corner_logo_translucent": ((0.005, 0.25), (0.3, 0.6)),
    "tiled_text": ((0.05, 0.6), (0.15, 0.4)),
    "caption_band": ((0.03, 0.25), (1.0, 1.0)),
    "frame": ((0.05, 0.3), (1.0, 1.0)),
}


@pytest.mark.parametrize("kind", MARKS)
def test_a_mark_is_one_fixed_layer_over_any_photo(kind):
    # The flat renders give each pixel its mark colour (on black) and how much of the photo shows
    # through (white - black, out of 255); with them the render of any photo is predicted to
    # within the one rounding of compositing. Inner frames shrink the photo into their window:
    # there only the opaque frame is compared.
    (lo, hi), (alpha_lo, alpha_hi) = MARK_SHARE[kind]
    for seed in range(8):
        black, white = _flats(kind, seed)
        element, opaque = _element(kind, seed)
        assert lo <= element.mean() <= hi, (kind, seed, element.mean())
        alpha = 1 - (white - black).min(axis=2) / 255
        assert alpha_lo - 0.01 <= alpha.max() <= alpha_hi + 0.01, (kind, seed, alpha.max())
        renders = [_render(kind, seed, "A"), _render(kind, seed, "B")]
        assert np.array_equal(renders[0][opaque], renders[1][opaque])
        h, w = SET_A[0].shape[:2]
        if black.shape[:2] == (h, w):
            if kind == "frame":  # drawn over the photo's edge, the photo shrunk into its window
                assert opaque[[0, -1]].all() and opaque[:, [0, -1]].all()
                continue
            y0 = x0 = 0
        else:  # a band or frame added: the photo is where it shows unchanged
            ys, xs = np.nonzero((white - black == 255).all(axis=2))
            y0, x0 = ys.min(), xs.min()
            assert (ys.max() + 1 - y0, xs.max() + 1 - x0) == (h, w), (kind, seed)
        for photos, out in zip((SET_A, SET_B), renders, strict=True):
            under = np.zeros_like(out)
            under[y0 : y0 + h, x0 : x0 + w] = photos[0]
            assert np.abs(black + (white - black) * under / 255 - out).max() <= 1, (kind, seed)


# Share of the image that is the exact same pixels on every photo: a template's chrome; a box's
# printed face outside its window and its sides. Measured on the fixtures over seeds 0-7: web
# pages 47-62 %, posts 29-46 %, catalogue sheets 45-52 %, packaging 18-29 %, shelves 20-42 %.
CHROME_SHARE = {
    "packaging": (0.08, 0.5),
    "shelf": (0.08, 0.6),
    "web_page": (0.3, 0.65),
    "social_post": (0.25, 0.6),
    "catalogue_sheet": (0.3, 0.6),
}


@pytest.mark.parametrize("kind", OTHERS)
def test_the_chrome_is_the_same_pixels_whatever_the_photos(kind):
    # With the same rng (per-image texts and placement), renders of other photos agree exactly
    # on the chrome. A box's face is warped: a pixel next to its window may mix in the window with
    # a weight too small to move flat black or white (under 1/255), so any photo moves it by 1 at most.
    tolerance = 1 if KINDS[kind][0] == "packaging" else 0
    for seed in range(8):
        chrome = _element(kind, seed)[1]
        lo, hi = CHROME_SHARE[kind]
        assert lo <= chrome.mean() <= hi, (kind, seed, chrome.mean())
        a, b = _render(kind, seed, "A"), _render(kind, seed, "B")
        assert np.abs(a - b)[chrome].max() <= tolerance, (kind, seed)


@pytest.mark.parametrize("kind", [k for k in OTHERS if KINDS[k][0] == "template"])
def test_another_rng_changes_only_the_per_image_text_of_a_template(kind):
    # Headlines, captions, names, prices and counts cover 2-4 % of the chrome (measured).
    for seed in range(4):
        chrome = _element(kind, seed)[1]
        a, b = _render(kind, seed, "A", rng_seed=0), _render(kind, seed, "A", rng_seed=1)
        assert a.shape == b.shape
        assert 0.9 <= (a == b).all(axis=2)[chrome].mean() < 1.0, (kind, seed)


@pytest.mark.parametrize("kind", ["packaging", "shelf"])
def test_the_product_photo_shows_in_the_box_windows(kind):
    # Only the product photo changes: the windows (and nothing else) change, 3-40 % of the image
    # (measured over seeds 0-7: 7-11 % for one box, 7-16 % for a shelf).
    for seed in range(4):
        background = np.zeros_like(SET_A[1])
        d, rng = design(kind, seed), np.random.default_rng
        dark = d.render([np.zeros_like(SET_A[0]), background], rng(0))
        light = d.render([np.full_like(SET_A[0], 255), background], rng(0))
        window = (dark != light).any(axis=2)
        assert 0.03 <= window.mean() <= 0.4, (kind, seed, window.mean())
        assert not (window & _element(kind, seed)[1]).any()


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_content_matters(kind):
    # Outside the opaque element, renders of the same design with other photos differ as much as
    # the photos do: two fixture photos differ by about 45 grey levels on average, and the renders
    # by 40-53 (measured over seeds 0-7; tiled text keeps 60 % of the photo at least).
    for seed in range(8):
        opaque = _element(kind, seed)[1]
        a, b = _render(kind, seed, "A"), _render(kind, seed, "B")
        assert np.abs(a - b)[~opaque].mean() > 20, (kind, seed)
